"""Sizes as every surface shows them (portal, staff, CLI, the uploader's units.js): IEC units,
1 KiB = 1,024 bytes, one decimal; a size under 1 KiB in bytes."""

from __future__ import annotations

UNITS = ("KiB", "MiB", "GiB", "TiB")


def format_bytes(size: int | float | None) -> str:
    n = max(0, round(size or 0))
    if n < 1024:
        return "1 byte" if n == 1 else f"{n} bytes"
    value = n / 1024
    unit = 0
    while value >= 1024 and unit < len(UNITS) - 1:
        value /= 1024
        unit += 1
    return f"{value:.1f} {UNITS[unit]}"


def describe_parts(total_parts: int, part_size: int, file_size: int) -> str:
    """`3 parts of 8.0 MiB (the last 1.2 MiB)`; a one-part file is one part of its own size."""
    if total_parts <= 1:
        return f"1 part of {format_bytes(file_size)}"
    last = file_size - (total_parts - 1) * part_size
    text = f"{total_parts} parts of {format_bytes(part_size)}"
    return text if last == part_size else f"{text} (the last {format_bytes(last)})"
