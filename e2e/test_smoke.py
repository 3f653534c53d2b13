"""Smoke: sign in, then run README's JavaScript client in the page, once per storage backend."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.core.management import call_command
from playwright.sync_api import Page, expect
from pytest_django.live_server_helper import LiveServer

KIB = 1024
MIB = 1024 * KIB
README = Path(__file__).resolve().parent.parent / "README.md"

# The same bytes in both languages: a 4 KiB ramp, shifted per 4 KiB block so that no two parts
# of these files are equal (a misplaced part cannot go unnoticed).
PATTERN_JS = """
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i++) {
    const block = i >> 12;
    bytes[i] = ((i & 4095) * 31 + block * 7 + (block >> 8) * 13) & 255;
  }
"""


def pattern_bytes(size: int) -> bytes:
    ramp = bytes((j * 31) & 0xFF for j in range(4096))
    tables = [bytes((x + shift) & 0xFF for x in range(256)) for shift in range(256)]
    out = bytearray()
    for block in range((size + 4095) // 4096):
        out += ramp.translate(tables[(block * 7 + (block >> 8) * 13) & 0xFF])
    return bytes(out[:size])


def readme_upload_function() -> str:
    """README's ```javascript block that defines uploadFileMultipart, as published."""
    blocks = re.findall(r"^```javascript\n(.*?)^```", README.read_text(), re.M | re.S)
    matching = [b for b in blocks if "function uploadFileMultipart" in b]
    assert len(matching) == 1, "README.md needs one ```javascript block with uploadFileMultipart"
    return str(matching[0])


def upload_in_page(page: Page, size: int) -> dict[str, Any]:
    """Build smoke.bin in the page and upload it with the README function; return its result."""
    script = f"""async (size) => {{
{readme_upload_function()}
{PATTERN_JS}
  const file = new File([bytes], "smoke.bin", {{ type: "application/octet-stream" }});
  // A stuck request fails the test with a reason instead of hanging it.
  const guard = new Promise((_, reject) =>
    setTimeout(() => reject(new Error("upload did not finish within 60 s")), 60000));
  return await Promise.race([uploadFileMultipart(file), guard]);
}}"""
    result: dict[str, Any] = page.evaluate(script, size)
    return result


def test_upload_from_page_with_readme_client(
    signed_in_page: Page,
    live_server: LiveServer,
    backend: str,
    settings: Any,
    request: pytest.FixtureRequest,
) -> None:
    page = signed_in_page
    if backend == "local":
        size, part_size, parts_origin = 200 * KIB, 64 * KIB, live_server.url
    else:
        # S3 refuses parts under 5 MiB but the last: 6 MiB is two parts.
        size, part_size = 6 * MIB, 5 * MIB
        parts_origin = request.getfixturevalue(backend).endpoint  # set up already by `backend`
        # Both S3 stores run without global CORS, like S3: allow this page's exact origin and
        # expose ETag.
        call_command("setup_bucket", "--origin", live_server.url)
    settings.UPLOADS_DEFAULT_PART_SIZE = part_size  # README's client lets the server choose
    expected_parts = -(-size // part_size)

    part_puts: list[str] = []
    page.on("request", lambda r: part_puts.append(r.url) if r.method == "PUT" else None)

    result = upload_in_page(page, size)

    assert result["upload_status"] == "completed", result
    assert (result["file_name"], result["file_size"]) == ("smoke.bin", size)
    # The parts really went from the browser to the store (S3 directly, or the app's local URLs).
    assert len(part_puts) == expected_parts, part_puts
    assert {_origin(url) for url in part_puts} == {_origin(parts_origin)}

    download = page.request.get(f"{live_server.url}/v1/files/{result['id']}/download")
    expect(download).to_be_ok()
    body = download.body()
    expected = pattern_bytes(size)
    assert (len(body), hashlib.sha256(body).hexdigest()) == (
        len(expected),
        hashlib.sha256(expected).hexdigest(),
    )


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
