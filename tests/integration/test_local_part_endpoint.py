"""The local handler's part endpoint over real HTTP: the signed token is the only credential,
bodies are checked against the expected part size, and parts stream to disk."""

from __future__ import annotations

import base64
import hashlib
import json
import random
import re
import socket
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from django.conf import settings

from tests.helpers import HttpApi, assert_error, local_part_files
from uploads.models import FileRecord
from uploads.storage.local import tokens as local_tokens
from uploads.storage.local.tokens import DOWNLOAD_SALT, PART_SALT, sign

from .support import KIB, MIB, local_parts, md5, payload, put_parts

pytestmark = pytest.mark.usefixtures("transactional_db", "local_disk")

Status = FileRecord.Status
PART = 4 * KIB


def parts_dir(upload: dict[str, Any]) -> Path:
    return Path(settings.UPLOADS_LOCAL_PARTS_DIR) / str(upload["upload_id"])


def stored_files(upload: dict[str, Any]) -> list[str]:
    """Part records and temp files in the upload's directory."""
    return [p.name for p in local_part_files(parts_dir(upload))]


def url_of(upload: dict[str, Any], part_number: int) -> str:
    return str(next(t["url"] for t in upload["presigned_urls"] if t["part_number"] == part_number))


def with_token(url: str, token: str) -> str:
    base, _, _ = url.rstrip("/").rpartition("/")
    return f"{base}/{token}"


def token_of(url: str) -> str:
    return url.rstrip("/").rpartition("/")[2]


@pytest.fixture
def content() -> bytes:
    return payload(2 * PART + 100, seed=7)


@pytest.fixture
def upload(http_api: HttpApi, content: bytes) -> dict[str, Any]:
    return http_api.initiate(len(content), part_size=PART)


def test_part_put_answers_with_the_md5_etag(upload: dict[str, Any], content: bytes) -> None:
    body = content[:PART]

    response = HttpApi.put(url_of(upload, 1), body)

    assert response.status_code == 200, response.text
    assert response.headers["ETag"] == f'"{md5(body)}"'
    assert local_parts(upload["upload_id"]) == [(1, md5(body))]
    assert len(stored_files(upload)) == 1, "one record, no temp files"


def test_tampered_token_is_refused(upload: dict[str, Any], content: bytes) -> None:
    url = url_of(upload, 1)
    data, stamp, signature = token_of(url).split(":")
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    claims = json.loads(base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)))
    claims["p"] = 2  # The same signature over another part number.
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")

    for token in (f"{data}:{stamp}:{flipped}", f"{forged}:{stamp}:{signature}", "garbage"):
        response = HttpApi.put(with_token(url, token), content[:PART])
        assert_error(response, 403, "forbidden")
    assert stored_files(upload) == []


def test_expired_token_is_refused(
    upload: dict[str, Any], content: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = url_of(upload, 1)
    # The server's clock moves past the link's expiry; nothing else changes.
    later = time.time() + int(settings.FILE_UPLOAD_PRESIGNED_URL_EXPIRATION or 0) + 1
    monkeypatch.setattr(local_tokens, "time", SimpleNamespace(time=lambda: later))

    body = assert_error(HttpApi.put(url, content[:PART]), 403, "forbidden")
    assert "expired" in body["detail"]
    assert stored_files(upload) == []

    monkeypatch.undo()
    assert HttpApi.put(url, content[:PART]).status_code == 200


def test_foreign_tokens_are_refused(
    http_api: HttpApi, upload: dict[str, Any], content: bytes
) -> None:
    other = http_api.initiate(len(content), part_size=PART)
    expires = int(time.time()) + 600
    url = url_of(upload, 1)
    part = {"s": PART, "o": 0, "e": expires}
    foreign = [
        # Signed by us, but binding this file to another upload's id.
        sign({"f": upload["id"], "u": other["upload_id"], "p": 1, **part}, PART_SALT),
        # A part number this upload does not have.
        sign({"f": upload["id"], "u": upload["upload_id"], "p": 4, **part}, PART_SALT),
        # A file that does not exist.
        sign(
            {"f": "00000000-0000-0000-0000-000000000000", "u": upload["upload_id"], "p": 1} | part,
            PART_SALT,
        ),
        # A token without the part's size and offset (as signed before they were bound).
        sign({"f": upload["id"], "u": upload["upload_id"], "p": 1, "e": expires}, PART_SALT),
        # A valid token of another kind (a download link) is no part token.
        sign({"k": "uploads/x", "n": "x.bin", "e": expires}, DOWNLOAD_SALT),
    ]
    for token in foreign:
        assert_error(HttpApi.put(with_token(url, token), content[:PART]), 403, "forbidden")
    assert stored_files(upload) == []
    assert stored_files(other) == []


def test_token_is_dead_after_complete(
    http_api: HttpApi, upload: dict[str, Any], content: bytes
) -> None:
    parts = put_parts(upload, content)
    assert http_api.complete(upload["id"], parts).status_code == 200

    replay = HttpApi.put(url_of(upload, 1), content[:PART])

    assert_error(replay, 403, "forbidden")
    assert not parts_dir(upload).exists()
    record = FileRecord.objects.get(pk=upload["id"])
    assert (Path(settings.MEDIA_ROOT) / record.storage_key).read_bytes() == content


def test_token_is_dead_after_abort(
    http_api: HttpApi, upload: dict[str, Any], content: bytes
) -> None:
    assert http_api.call("DELETE", f"/v1/files/uploads/{upload['id']}").status_code == 204

    replay = HttpApi.put(url_of(upload, 1), content[:PART])

    assert_error(replay, 403, "forbidden")
    assert not parts_dir(upload).exists()


@pytest.mark.parametrize("part_number", [1, 3], ids=["full-part", "last-part"])
def test_body_over_the_part_size_is_refused(
    upload: dict[str, Any], content: bytes, part_number: int
) -> None:
    expected = PART if part_number == 1 else len(content) - 2 * PART

    response = HttpApi.put(url_of(upload, part_number), payload(expected + 1, seed=9))

    assert_error(response, 413, "too_large")
    assert stored_files(upload) == []
    assert FileRecord.objects.get(pk=upload["id"]).upload_status == Status.UPLOADING


def test_body_without_content_length_is_refused(upload: dict[str, Any], content: bytes) -> None:
    # A generator body makes requests send `Transfer-Encoding: chunked` and no Content-Length.
    def body() -> Iterator[bytes]:
        yield content[:100]
        yield content[100:200]

    response = requests.put(url_of(upload, 1), data=body(), timeout=30)

    assert_error(response, 411, "length_required")
    assert stored_files(upload) == []


class StreamedBody:
    """A request body produced chunk by chunk; `__len__` lets requests send a Content-Length."""

    def __init__(self, size: int, chunk: int = MIB) -> None:
        self.size = size
        self.chunk = chunk
        self.digest = hashlib.md5(usedforsecurity=False)

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[bytes]:
        rng = random.Random(64)
        sent = 0
        while sent < self.size:
            block = rng.randbytes(min(self.chunk, self.size - sent))
            self.digest.update(block)
            sent += len(block)
            yield block


def file_md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(MIB):
            digest.update(block)
    return digest.hexdigest()


def test_a_64_mib_part_streams_to_disk_in_flat_memory(http_api: HttpApi, settings: Any) -> None:
    size = 64 * MIB
    budget = 20 * MIB
    settings.MAX_FILE_UPLOAD_SIZE = max(settings.MAX_FILE_UPLOAD_SIZE, size)
    upload = http_api.initiate(size, part_size=size)
    assert upload["total_parts"] == 1
    body = StreamedBody(size)

    # tracemalloc sees every thread of this process: the live server's request thread included.
    tracemalloc.start()
    try:
        start, _ = tracemalloc.get_traced_memory()
        response = requests.put(url_of(upload, 1), data=body, timeout=120)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert response.status_code == 200, response.text
    assert peak - start < budget, f"the part PUT grew memory by {(peak - start) / MIB:.1f} MiB"
    expected = body.digest.hexdigest()
    assert response.headers["ETag"] == f'"{expected}"'
    assert local_parts(upload["upload_id"]) == [(1, expected)]
    assert file_md5(parts_dir(upload) / "object") == expected

    # Completing the upload streams too.
    tracemalloc.start()
    try:
        start, _ = tracemalloc.get_traced_memory()
        done = http_api.complete(upload["id"], [{"part_number": 1, "etag": expected}])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert done.status_code == 200, done.text
    assert peak - start < budget, f"complete grew memory by {(peak - start) / MIB:.1f} MiB"
    record = FileRecord.objects.get(pk=upload["id"])
    assert file_md5(Path(settings.MEDIA_ROOT) / record.storage_key) == expected


def test_body_cut_short_keeps_no_part(upload: dict[str, Any], content: bytes) -> None:
    # The client promises a full part, sends half, and stops sending (a dropped connection).
    url = urlsplit(url_of(upload, 1))
    body = content[:PART]
    with socket.create_connection((url.hostname, url.port), timeout=30) as conn:
        conn.sendall(
            f"PUT {url.path} HTTP/1.1\r\nHost: {url.netloc}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body[: PART // 2]
        )
        conn.shutdown(socket.SHUT_WR)
        # Reading to the end waits until the server has finished with the request.
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk

    assert not answer.startswith(b"HTTP/1.1 200"), answer
    assert stored_files(upload) == []


@pytest.mark.parametrize(("delta", "status"), [(1, 413), (-1, 400)], ids=["longer", "shorter"])
def test_a_wrong_length_is_refused_before_the_body_is_read(
    upload: dict[str, Any], delta: int, status: int
) -> None:
    # Headers only: a Content-Length one byte off the part's, and not one byte of body sent.
    # The answer comes at once, so a 5 GiB body for an 8 MiB part is never taken in.
    url = urlsplit(url_of(upload, 1))
    with socket.create_connection((url.hostname, url.port), timeout=10) as conn:
        conn.sendall(
            f"PUT {url.path} HTTP/1.1\r\nHost: {url.netloc}\r\n"
            f"Content-Length: {PART + delta}\r\nConnection: close\r\n\r\n".encode()
        )
        # The whole answer arrives with no body sent. (The development server then waits to
        # drain the body it refused: read the answer by its own length, not to the end.)
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += conn.recv(65536)
        head, _, body = answer.partition(b"\r\n\r\n")
        length = re.search(rb"Content-Length: (\d+)", head)
        assert length is not None, head
        while len(body) < int(length.group(1)):
            body += conn.recv(65536)

    assert head.startswith(f"HTTP/1.1 {status}".encode()), head
    assert b"must be exactly 4.0 KiB (4,096 bytes)" in body
    assert stored_files(upload) == []
