"""A slow-loris part PUT on the local part endpoint: headers and a few bytes, then a stall.

While such a request hangs, it must hold no database row lock and no open transaction, so the
owner can still abort or complete the same upload. Proved on PostgreSQL with real concurrent
connections (the live server's request threads); SQLite has no row locks to prove anything with.
In production nginx buffers the body and drops a client that stops sending (README, Production;
tests/production); what is tested here is that nothing else waits on such a request meanwhile.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.db import connection, transaction

from tests.helpers import HttpApi
from uploads.models import FileRecord

pytestmark = [
    pytest.mark.serial,  # its time bounds are about its own requests, not a neighbour's load
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("local_disk"),
]

PART = 4 * 1024
STALL_WAIT_S = 10


@pytest.fixture(autouse=True)
def _needs_postgresql() -> None:
    if connection.vendor != "postgresql":
        pytest.skip(
            "needs PostgreSQL: row locks held across a stalled request can only be observed "
            f"there (the database is {connection.vendor}). Run with "
            "DATABASE_URL=postgres://postgres@127.0.0.1:5432/test"
        )


@pytest.fixture
def http_api(live_server: Any, user: Any) -> Iterator[HttpApi]:
    api = HttpApi(live_server.url, user)
    yield api
    api.session.close()


class SlowPut:
    """A PUT whose body arrives a few bytes at a time, on a raw socket we control."""

    def __init__(self, url: str, length: int) -> None:
        parts = urlsplit(url)
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
        head = (
            f"PUT {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {length}\r\n"
            "Connection: close\r\n\r\n"
        )
        self.sock.sendall(head.encode())

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def response_status(self) -> int:
        answer = b""
        while b"\r\n" not in answer:
            chunk = self.sock.recv(4096)
            if not chunk:
                break
            answer += chunk
        return int(answer.split(b" ", 2)[1])

    def close(self) -> None:
        self.sock.close()


def wait_for(condition: Any, what: str, timeout: float = STALL_WAIT_S) -> None:
    """Poll a state change made by another thread; fail with `what` if it never comes."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


def receiving(upload_id: str, part_number: int) -> bool:
    """The part endpoint has opened its temp file: the request is inside the body read."""
    directory = Path(settings.UPLOADS_LOCAL_PARTS_DIR) / upload_id
    return any(directory.glob(f".{part_number:05d}.*.tmp"))


def open_transactions() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%%'"
        )
        return int(cursor.fetchone()[0])


def stalled_part(http_api: HttpApi, content: bytes) -> tuple[dict[str, Any], list, SlowPut]:
    """An upload with every part stored, and a retry of part 1 stalled mid-body."""
    upload = http_api.initiate(len(content), part_size=PART)
    parts = []
    for target in upload["presigned_urls"]:
        n = target["part_number"]
        put = HttpApi.put(target["url"], content[(n - 1) * PART : n * PART])
        assert put.status_code == 200, put.text
        parts.append({"part_number": n, "etag": put.headers["ETag"]})
    slow = SlowPut(upload["presigned_urls"][0]["url"], PART)
    slow.send(content[:10])
    wait_for(lambda: receiving(upload["upload_id"], 1), "the slow PUT to reach the body")
    return upload, parts, slow


def assert_row_is_free(file_id: str) -> None:
    # NOWAIT: if the stalled request held the row, this would fail at once instead of waiting.
    with transaction.atomic():
        FileRecord.objects.select_for_update(nowait=True).get(pk=file_id)
    assert open_transactions() == 0


def test_abort_succeeds_while_a_part_body_stalls(http_api: HttpApi) -> None:
    content = bytes(range(256)) * 40  # 10,240 bytes: 3 parts
    upload, _, slow = stalled_part(http_api, content)
    try:
        assert_row_is_free(upload["id"])
        started = time.monotonic()
        aborted = http_api.call("DELETE", f"/v1/files/uploads/{upload['id']}")
        assert aborted.status_code == 204, aborted.text
        assert time.monotonic() - started < STALL_WAIT_S
        assert FileRecord.objects.get(pk=upload["id"]).upload_status == FileRecord.Status.ABORTED

        # The stalled body finally arrives: the upload is gone, so nothing is kept.
        slow.send(content[10:PART])
        assert slow.response_status() == 403
    finally:
        slow.close()
    assert not (Path(settings.UPLOADS_LOCAL_PARTS_DIR) / upload["upload_id"]).exists()


def test_complete_succeeds_while_a_part_body_stalls(http_api: HttpApi) -> None:
    content = bytes(range(256)) * 40
    upload, parts, slow = stalled_part(http_api, content)
    try:
        assert_row_is_free(upload["id"])
        started = time.monotonic()
        done = http_api.complete(upload["id"], parts)
        assert done.status_code == 200, done.text
        assert time.monotonic() - started < STALL_WAIT_S
        assert done.json()["upload_status"] == "completed"

        slow.send(content[10:PART])
        assert slow.response_status() == 403
    finally:
        slow.close()
    record = FileRecord.objects.get(pk=upload["id"])
    assert (Path(settings.MEDIA_ROOT) / record.storage_key).read_bytes() == content


def test_a_client_that_gives_up_mid_body_leaves_nothing(http_api: HttpApi) -> None:
    content = bytes(range(256)) * 40
    upload, _, slow = stalled_part(http_api, content)
    slow.close()
    wait_for(lambda: not receiving(upload["upload_id"], 1), "the temp file to be removed")
    assert_row_is_free(upload["id"])
