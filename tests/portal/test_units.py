"""Sizes read the same on every page (IEC units, as in the uploader and the CLI), and a part
plan is described as it is."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from tests.factories import FileRecordFactory
from uploads.units import describe_parts, format_bytes

MIB = 1024 * 1024


@pytest.fixture
def client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 bytes"),
        (1, "1 byte"),
        (71, "71 bytes"),
        (1023, "1023 bytes"),
        (1024, "1.0 KiB"),
        (60 * MIB, "60.0 MiB"),
        (62_914_560, "60.0 MiB"),
        (5 * 1024 * MIB, "5.0 GiB"),
    ],
)
def test_sizes_are_in_iec_units(size: int, text: str) -> None:
    assert format_bytes(size) == text


def test_part_plans_are_described_as_they_are() -> None:
    assert describe_parts(1, 8 * MIB, 71) == "1 part of 71 bytes"
    assert describe_parts(3, 5 * MIB, 12 * MIB) == "3 parts of 5.0 MiB (the last 2.0 MiB)"
    assert describe_parts(2, 5 * MIB, 10 * MIB) == "2 parts of 5.0 MiB"


@pytest.mark.django_db
def test_a_71_byte_file_is_one_part_of_71_bytes_on_its_page(client: Client, user: Any) -> None:
    record = FileRecordFactory(created_by=user, file_size=71, total_parts=1, part_size=8 * MIB)
    html = client.get(f"/files/{record.pk}/").content.decode()
    assert 'data-testid="parts">1 part of 71 bytes<' in html
    assert 'data-testid="size">71 bytes<' in html


@pytest.mark.django_db
def test_one_size_reads_the_same_on_the_list_and_the_page(client: Client, user: Any) -> None:
    record = FileRecordFactory(
        created_by=user, file_size=62_914_560, total_parts=8, part_size=8 * MIB
    )
    listed = client.get("/files/").content.decode()
    detail = client.get(f"/files/{record.pk}/").content.decode()
    assert "60.0 MiB" in listed
    assert "60.0 MiB (62914560 bytes)" in detail
    assert "8 parts of 8.0 MiB (the last 4.0 MiB)" in detail
    assert " MB" not in listed + detail
