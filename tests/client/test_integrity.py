"""The Python client's integrity checks against a live server, on local disk and S3 (moto):
a resume with other bytes under the same name ends with exactly the new bytes, a part altered
on the wire is refused and sent again, complete's "parts_mismatch" is repaired, and
`Client.verify` tells a matching file from one differing by a byte."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.support import KIB
from uploads.client import ClientError, ResumeState
from uploads.client.digests import composite_checksum
from uploads.client.state import resume_key
from uploads.client.transfer import part_specs
from uploads.models import FileRecord

from .conftest import Recording, part_number, sha256_b64


class Crash(Exception):
    """The process dying midway: nothing retries it."""


def crash_after(parts: int) -> Recording:
    """A part transport that lets `parts` PUTs through, then dies."""
    recording = Recording()

    def fault(request: httpx.Request, attempt: int) -> None:
        if len(recording.parts_put()) > parts:
            raise Crash()

    recording.fault = fault
    return recording


def start_then_crash(make_client, path: Path, part_size: int, parts: int) -> str:
    client = make_client(part_transport=crash_after(parts))
    with pytest.raises(Crash):
        client.upload(path, part_size=part_size, concurrency=1)
    file_id = client.state.get(resume_key(client.server, path, path.stat()))
    assert file_id is not None
    assert len(client.parts(file_id).parts) == parts
    return str(file_id)


def rewrite_keeping_mtime(path: Path, content: bytes) -> None:
    """Other bytes, same size and modification time: what the resume state cannot tell apart."""
    stat = path.stat()
    path.write_bytes(content)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_resume_with_other_bytes_of_the_same_size_ends_with_the_new_bytes(
    backend, make_client, part_size, write_file, tmp_path
):
    path, first = write_file(5 * part_size + 77, seed=20)  # 6 parts
    file_id = start_then_crash(make_client, path, part_size, parts=3)
    # Another file now: part 2 differs by one byte, parts 1 and 3 are the same.
    second = bytearray(first)
    second[part_size + 10] ^= 0xFF
    rewrite_keeping_mtime(path, bytes(second))

    parts = Recording()
    client = make_client(part_transport=parts)
    result = client.upload(path, concurrency=2)

    assert result.file.id == file_id and result.resumed
    assert (result.parts_reused, result.parts_replaced) == (2, 1)
    assert sorted(parts.parts_put()) == [2, 4, 5, 6]
    assert client.download(file_id, tmp_path / "copy.bin").read_bytes() == bytes(second)


def test_resume_with_an_entirely_different_file_sends_every_part(
    local_disk, make_client, write_file, tmp_path
):
    part = 4 * KIB
    path, _ = write_file(3 * part + 5, seed=21)
    file_id = start_then_crash(make_client, path, part, parts=2)
    other = os.urandom(3 * part + 5)
    rewrite_keeping_mtime(path, other)

    parts = Recording()
    client = make_client(part_transport=parts)
    result = client.upload(path)

    assert result.file.id == file_id
    assert (result.parts_reused, result.parts_replaced) == (0, 2)
    assert sorted(parts.parts_put()) == [1, 2, 3, 4]
    assert client.download(file_id, tmp_path / "copy.bin").read_bytes() == other


def test_resume_of_an_upload_without_checksums_compares_md5_with_etag(
    backend, make_client, part_size, write_file, tmp_path
):
    path, first = write_file(2 * part_size + 9, seed=22)  # 3 parts
    crashing = make_client(part_transport=crash_after(2))
    with pytest.raises(Crash):
        crashing.upload(path, part_size=part_size, concurrency=1, checksums=False)
    second = bytearray(first)
    second[3] ^= 0x01  # part 1 differs, part 2 is the same
    rewrite_keeping_mtime(path, bytes(second))

    parts = Recording()
    client = make_client(part_transport=parts)
    result = client.upload(path)

    assert result.file.checksum_algorithm == ""  # the upload it resumed had none
    assert (result.parts_reused, result.parts_replaced) == (1, 1)
    assert sorted(parts.parts_put()) == [1, 3]
    assert client.download(result.file.id, tmp_path / "copy.bin").read_bytes() == bytes(second)


def altering_part_once(number: int) -> Recording:
    """A part transport that flips one byte of part `number`'s body on its first PUT."""

    def tamper(request: httpx.Request, attempt: int) -> httpx.Response | None:
        if part_number(request) != number or attempt != 1:
            return None
        body = bytearray(request.read())
        body[100] ^= 0xFF
        altered = httpx.Request(
            request.method, request.url, headers=request.headers, content=bytes(body)
        )
        return recording.inner.handle_request(altered)

    recording = Recording(fault=tamper)
    return recording


def send_with_one_part_altered(make_client, path: Path, part: int, number: int) -> Any:
    parts = altering_part_once(number)
    client = make_client(part_transport=parts)
    result = client.upload(path, part_size=part)
    # Refused by the store as not matching its signed checksum, then sent again as it is.
    assert [status for r, status in parts.statuses if part_number(r) == number] == [400, 200]
    assert result.file.upload_status == "completed"
    return client, result


def test_a_part_altered_on_the_wire_is_refused_and_sent_again(
    local_disk, make_client, write_file, tmp_path
):
    """The local store verifies the checksum signed into the URL (moto does not)."""
    part = 4 * KIB
    path, content = write_file(3 * part + 1, seed=23)

    client, result = send_with_one_part_altered(make_client, path, part, 2)

    assert client.download(result.file.id, tmp_path / "copy.bin").read_bytes() == content


def parts_mismatch(*numbers: int) -> httpx.Response:
    """Complete's answer when the store's parts disagree and the upload stays open."""
    return httpx.Response(
        400,
        json={
            "detail": f"Parts {list(numbers)} do not match what the store holds.",
            "code": "parts_mismatch",
            "extra": {"parts": list(numbers), "upload_status": "uploading"},
        },
    )


def is_complete(request: httpx.Request) -> bool:
    return request.method == "POST" and request.url.path.endswith("/complete")


def test_parts_named_by_a_refused_complete_are_sent_again(
    local_disk, make_client, write_file, tmp_path
):
    part = 4 * KIB
    path, content = write_file(3 * part + 1, seed=24)
    api = Recording(
        fault=lambda r, attempt: parts_mismatch(2) if is_complete(r) and attempt == 1 else None
    )
    parts = Recording()
    client = make_client(transport=api, part_transport=parts)

    result = client.upload(path, part_size=part)

    assert result.file.upload_status == "completed"
    assert sorted(parts.parts_put()) == [1, 2, 2, 3, 4]
    assert len(api.calls("POST", "/complete")) == 2
    # Fresh URL for part 2, with its checksum computed again.
    last_sign = Recording.body(api.calls("POST", "/presign")[-1])
    assert last_sign == {
        "part_numbers": [2],
        "checksums": {"2": sha256_b64(content[part : 2 * part])},
    }
    assert client.download(result.file.id, tmp_path / "copy.bin").read_bytes() == content


def test_a_complete_refused_again_and_again_ends_with_a_clear_error(
    local_disk, make_client, write_file, state_path
):
    part = 4 * KIB
    path, _ = write_file(2 * part, seed=25)
    api = Recording(fault=lambda r, _attempt: parts_mismatch(1) if is_complete(r) else None)
    client = make_client(transport=api)

    with pytest.raises(ClientError) as failure:
        client.upload(path, part_size=part)

    assert failure.value.code == "parts_mismatch"
    assert "still disagrees about part(s) 1 after 3 re-sends" in failure.value.detail
    assert len(api.calls("POST", "/complete")) == 4
    # Still open, still remembered: the next run resumes it.
    file_id = ResumeState(state_path).get(resume_key(client.server, path, path.stat()))
    assert file_id is not None and client.get(file_id).upload_status == "uploading"


@pytest.mark.parametrize("checksums", [True, False], ids=["sha256", "no-checksums"])
def test_verify_tells_the_same_file_from_one_differing_by_a_byte(
    backend, make_client, part_size, write_file, tmp_path, checksums
):
    path, content = write_file(2 * part_size + 3, seed=26)
    client = make_client()
    uploaded = client.upload(path, part_size=part_size, checksums=checksums).file

    same = client.verify(path, uploaded.id)
    changed = bytearray(content)
    changed[-1] ^= 0x01
    other = tmp_path / "other.bin"
    other.write_bytes(bytes(changed))
    differs = client.verify(other, uploaded.id)
    shorter = tmp_path / "shorter.bin"
    shorter.write_bytes(content[:-1])

    assert same.matches and same.local == same.stored
    assert not differs.matches and differs.method == same.method
    assert same.method in ("sha256", "etag")
    assert not client.verify(shorter, uploaded.id).matches


def test_the_composite_checksum_is_s3s(s3, make_client, write_file, tmp_path):
    """moto records no checksum at complete, but computes S3's composite one on HEAD: the
    client's is the same, and verify compares it where the file has one (as on AWS, which
    writes it "<base64>-<parts>"; moto leaves the count off)."""
    part_size = 5 * 1024 * 1024
    path, content = write_file(2 * part_size + 3, seed=27)
    client = make_client()
    uploaded = client.upload(path, part_size=part_size).file
    record = FileRecord.objects.get(pk=uploaded.id)
    head = s3.client.head_object(Bucket=s3.bucket, Key=record.file.name, ChecksumMode="ENABLED")
    stores = head["ChecksumSHA256"]
    ours = composite_checksum(path, part_specs(len(content), part_size, 3))
    assert ours == f"{stores}-3"

    other = tmp_path / "other.bin"
    other.write_bytes(content[:-1] + bytes([content[-1] ^ 1]))
    for recorded in (stores, ours):
        FileRecord.objects.filter(pk=record.pk).update(checksum=recorded)
        same, differs = client.verify(path, uploaded.id), client.verify(other, uploaded.id)
        assert (same.method, same.matches, same.stored) == ("sha256", True, recorded)
        assert (differs.method, differs.matches) == ("sha256", False)


def test_a_wrong_etag_at_complete_is_refused_then_repaired(
    backend, make_client, part_size, write_file, tmp_path
):
    """End to end: the server answers `parts_mismatch` naming part 2, whose ETag reached the
    client wrong (a proxy, a quoting bug); the upload stays open, the client sends part 2 again
    and completes with exactly its file."""
    path, content = write_file(2 * part_size + 99, seed=31)

    def wrong_etag(request: httpx.Request, attempt: int) -> httpx.Response | None:
        if part_number(request) != 2 or attempt != 1:
            return None
        real = parts.inner.handle_request(request)
        real.read()
        headers = {**real.headers, "etag": f'"{"0" * 32}"'}
        return httpx.Response(real.status_code, headers=headers, content=real.content)

    parts, api = Recording(fault=wrong_etag), Recording()
    client = make_client(part_transport=parts, transport=api)
    result = client.upload(path, part_size=part_size)

    completes = [status for r, status in api.statuses if is_complete(r)]
    assert completes == [400, 200]
    assert sorted(parts.parts_put()) == [1, 2, 2, 3]
    assert result.file.upload_status == "completed"
    assert client.download(result.file.id, tmp_path / "copy.bin").read_bytes() == content


def test_a_part_altered_on_the_wire_is_refused_by_s3_and_sent_again(
    verifying, make_client, write_file, tmp_path
):
    """The verifying S3 store checks the SHA-256 signed into each part URL (moto does not)."""
    part = 5 * 1024 * 1024
    path, content = write_file(part + 1000, seed=32)

    client, result = send_with_one_part_altered(make_client, path, part, 1)

    assert client.download(result.file.id, tmp_path / "copy.bin").read_bytes() == content
