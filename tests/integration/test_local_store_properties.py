"""What the local store promises while each byte is written once, into its final place:
racing PUTs of one part, re-sent and cut-short parts, listed checksums, and a completion
killed (SIGKILL) at any step."""

from __future__ import annotations

import base64
import hashlib
import json
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from django.conf import settings
from django.utils import timezone

from tests.helpers import HttpApi
from uploads.models import FileRecord
from uploads.services.cleanup import reconcile_storage
from uploads.storage.local import handler as local_handler

from .support import MIB, local_parts, md5, payload

pytestmark = pytest.mark.usefixtures("transactional_db", "local_disk")

PART = 1 * MIB
RACERS = 4
TRIALS = 12


def object_bytes(file_id: str) -> bytes:
    record = FileRecord.objects.get(pk=file_id)
    return (Path(settings.MEDIA_ROOT) / record.storage_key).read_bytes()


def listed(api: HttpApi, file_id: str) -> dict[int, dict[str, Any]]:
    response = api.call("GET", f"/v1/files/uploads/{file_id}/parts")
    assert response.status_code == 200, response.text
    return {p["part_number"]: p for p in response.json()["parts"]}


def cut_short_put(url: str, body: bytes) -> bytes:
    """PUT `body` with its full Content-Length, send half, and hang up (a dropped connection)."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as conn:
        conn.sendall(
            f"PUT {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body[: len(body) // 2]
        )
        conn.shutdown(socket.SHUT_WR)
        # Reading to the end waits until the server has finished with the request.
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    return answer


def test_racing_puts_of_one_part_keep_one_whole_copy(http_api: HttpApi) -> None:
    """Several PUTs of one part with different bodies, at once: whatever the store then lists
    is one of the bodies, whole, under its own ETag, and completing gives exactly those bytes."""
    tail = payload(1000, seed=99)
    for trial in range(TRIALS):
        upload = http_api.initiate(PART + len(tail), part_size=PART)
        urls = {t["part_number"]: t["url"] for t in upload["presigned_urls"]}
        assert HttpApi.put(urls[2], tail).status_code == 200
        bodies = [payload(PART, seed=1000 * trial + n) for n in range(RACERS)]
        start = threading.Barrier(RACERS)
        answers: list[requests.Response] = []

        def send(url: str, body: bytes, start: threading.Barrier, answers: list[Any]) -> None:
            start.wait()
            answers.append(requests.put(url, data=body, timeout=60))

        threads = [
            threading.Thread(target=send, args=(urls[1], body, start, answers)) for body in bodies
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert [a.status_code for a in answers] == [200] * RACERS, [a.text for a in answers]
        etags = {a.headers["ETag"].strip('"') for a in answers}
        assert etags == {md5(body) for body in bodies}
        kept = listed(http_api, upload["id"])[1]["etag"].strip('"')
        assert kept in etags, "the store lists a part nobody sent"
        done = http_api.complete(
            upload["id"],
            [{"part_number": 1, "etag": kept}, {"part_number": 2, "etag": md5(tail)}],
        )
        assert done.status_code == 200, done.text
        stored = object_bytes(upload["id"])
        assert md5(stored[:PART]) == kept, f"trial {trial}: bytes differ from their ETag"
        assert stored[PART:] == tail


def test_a_resent_part_replaces_the_earlier_one(http_api: HttpApi) -> None:
    first, second = payload(PART, seed=1), payload(PART, seed=2)
    upload = http_api.initiate(2 * PART, part_size=PART)
    urls = {t["part_number"]: t["url"] for t in upload["presigned_urls"]}
    assert HttpApi.put(urls[1], first).status_code == 200
    assert HttpApi.put(urls[2], second).status_code == 200
    assert HttpApi.put(urls[1], second).status_code == 200

    assert listed(http_api, upload["id"])[1]["etag"].strip('"') == md5(second)
    stale = http_api.complete(
        upload["id"],
        [{"part_number": 1, "etag": md5(first)}, {"part_number": 2, "etag": md5(second)}],
    )
    assert stale.status_code == 400 and stale.json()["code"] == "parts_mismatch", stale.text
    done = http_api.complete(
        upload["id"],
        [{"part_number": 1, "etag": md5(second)}, {"part_number": 2, "etag": md5(second)}],
    )
    assert done.status_code == 200, done.text
    assert object_bytes(upload["id"]) == second + second
    assert not (Path(settings.UPLOADS_LOCAL_PARTS_DIR) / upload["upload_id"]).exists()


@pytest.mark.parametrize("earlier", [1, 2], ids=["one-copy", "two-copies"])
def test_a_cut_short_resend_keeps_the_stored_part(http_api: HttpApi, earlier: int) -> None:
    """A re-send that breaks off mid-body stores nothing: the part stored before stays whole.

    With two earlier copies the newest lives in a file of its own, so the broken re-send is the
    one writing into the object's bytes, which no record vouches for.
    """
    bodies = [payload(PART, seed=n) for n in range(1, earlier + 1)]
    upload = http_api.initiate(PART, part_size=PART)
    url = upload["presigned_urls"][0]["url"]
    for body in bodies:
        assert HttpApi.put(url, body).status_code == 200

    answer = cut_short_put(url, payload(PART, seed=77))

    assert not answer.startswith(b"HTTP/1.1 200"), answer
    assert local_parts(upload["upload_id"]) == [(1, md5(bodies[-1]))]
    done = http_api.complete(upload["id"], [{"part_number": 1, "etag": md5(bodies[-1])}])
    assert done.status_code == 200, done.text
    assert object_bytes(upload["id"]) == bodies[-1]


def test_a_cut_short_first_put_stores_nothing(http_api: HttpApi) -> None:
    upload = http_api.initiate(PART, part_size=PART)

    answer = cut_short_put(upload["presigned_urls"][0]["url"], payload(PART, seed=5))

    assert not answer.startswith(b"HTTP/1.1 200"), answer
    assert listed(http_api, upload["id"]) == {}


@pytest.mark.parametrize("algorithm", ["SHA256", "CRC32"])
def test_parts_are_listed_with_their_checksums(http_api: HttpApi, algorithm: str) -> None:
    """As S3 does: the browser's verified resume keeps a part only if its checksum matches."""
    content = payload(2 * PART + 10, seed=3)
    chunks = [content[:PART], content[PART : 2 * PART], content[2 * PART :]]

    def checksum(data: bytes) -> str:
        if algorithm == "SHA256":
            digest = hashlib.sha256(data).digest()
        else:
            import zlib

            digest = zlib.crc32(data).to_bytes(4, "big")
        return base64.b64encode(digest).decode()

    sums = {str(n): checksum(chunk) for n, chunk in enumerate(chunks, 1)}
    upload = http_api.initiate(
        len(content), part_size=PART, checksum_algorithm=algorithm, checksums=sums
    )
    for target in upload["presigned_urls"][:2]:
        n = target["part_number"]
        put = requests.put(target["url"], data=chunks[n - 1], headers=target["headers"], timeout=60)
        assert put.status_code == 200, put.text

    parts = listed(http_api, upload["id"])
    assert {n: p["checksum"] for n, p in parts.items()} == {1: sums["1"], 2: sums["2"]}
    assert {n: p["etag"].strip('"') for n, p in parts.items()} == {
        1: md5(chunks[0]),
        2: md5(chunks[1]),
    }


# --- SIGKILL during complete -------------------------------------------------------------------

# Runs the local store's complete in a process of its own that kills itself (SIGKILL, no
# cleanup of any kind) just before its N-th file-system step: every step is a place to die.
CHILD = textwrap.dedent(
    """
    import json, os, shutil, signal, sys

    import django
    from django.conf import settings

    args = json.loads(sys.argv[1])
    settings.configure(MEDIA_ROOT=args["media"], UPLOADS_LOCAL_PARTS_DIR=args["parts_dir"])
    django.setup()

    from django.core.files.storage import FileSystemStorage
    from uploads.storage.base import CompletedPart, MultipartUpload
    from uploads.storage.local import LocalStorageHandler

    steps = [0]

    def dying(name, real):
        def step(*a, **k):
            steps[0] += 1
            if steps[0] == args["die_at"]:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(*a, **k)
        return step

    for name in ("open", "pwrite", "ftruncate", "fsync", "link", "unlink", "rmdir"):
        setattr(os, name, dying(name, getattr(os, name)))
    handler = LocalStorageHandler(FileSystemStorage(location=args["media"]))
    upload = MultipartUpload(args["file_id"], args["key"], args["upload_id"])
    parts = [CompletedPart(n, etag) for n, etag in args["parts"]]
    handler.complete(upload, parts, content_type="application/octet-stream")
    print(steps[0])
    """
)


def complete_in_a_dying_process(upload: dict[str, Any], parts: list[list[Any]], die_at: int) -> int:
    """The return code of a store-level complete killed at step `die_at` (0 if it finished)."""
    record = FileRecord.objects.get(pk=upload["id"])
    args = {
        "media": str(settings.MEDIA_ROOT),
        "parts_dir": str(settings.UPLOADS_LOCAL_PARTS_DIR),
        "file_id": str(record.pk),
        "key": record.storage_key,
        "upload_id": record.upload_id,
        "parts": parts,
        "die_at": die_at,
    }
    done = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=settings.BASE_DIR,
    )
    assert done.returncode in (0, -signal.SIGKILL), done.stderr
    return done.returncode


def test_a_complete_killed_at_any_step_leaves_the_upload_completable(http_api: HttpApi) -> None:
    # Part 2 is sent twice, so its newest copy lives in a file of its own and complete copies
    # it into place: the slowest path, with the most steps to die at.
    part = 64 * 1024
    content = payload(2 * part + 333, seed=11)
    chunks = [content[:part], content[part : 2 * part], content[2 * part :]]
    die_at = 1
    while True:
        upload = http_api.initiate(len(content), part_size=part)
        urls = {t["part_number"]: t["url"] for t in upload["presigned_urls"]}
        for n, chunk in enumerate(chunks, 1):
            assert HttpApi.put(urls[n], chunk).status_code == 200
        assert HttpApi.put(urls[2], chunks[1]).status_code == 200
        parts = [[n, md5(chunk)] for n, chunk in enumerate(chunks, 1)]
        record = FileRecord.objects.get(pk=upload["id"])
        key = Path(settings.MEDIA_ROOT) / record.storage_key

        code = complete_in_a_dying_process(upload, parts, die_at)

        # Never a truncated object at the key: nothing, or every byte.
        assert not key.exists() or key.read_bytes() == content, f"died at step {die_at}"
        # After the "restart", the client's complete finishes the upload with every byte.
        done = http_api.complete(
            upload["id"], [{"part_number": n, "etag": etag} for n, etag in parts]
        )
        assert done.status_code == 200, f"died at step {die_at}: {done.text}"
        assert key.read_bytes() == content, f"died at step {die_at}"
        assert not (Path(settings.UPLOADS_LOCAL_PARTS_DIR) / record.upload_id).exists()
        if code == 0:
            break
        die_at += 1
    assert die_at > 5, "the child finished before it reached the steps of complete"


def test_a_claim_left_by_a_killed_complete_lapses_within_a_minute(http_api: HttpApi) -> None:
    """A server killed mid-complete leaves the row claimed; the local store's complete takes no
    time that grows with the file, so the next server lets the client finish within a minute."""
    content = payload(PART + 10, seed=21)
    upload = http_api.initiate(len(content), part_size=PART)
    parts = http_api.put_parts(upload, content)
    claimed = FileRecord.objects.filter(pk=upload["id"])

    claimed.update(completing_since=timezone.now())
    live = http_api.complete(upload["id"], parts)
    assert live.status_code == 409, live.text  # a live claim: another request is completing

    claimed.update(completing_since=timezone.now() - timedelta(minutes=1))
    done = http_api.complete(upload["id"], parts)
    assert done.status_code == 200, done.text
    assert object_bytes(upload["id"]) == content


def test_what_complete_sets_aside_goes_with_the_next_reconcile(http_api: HttpApi) -> None:
    content = payload(PART + 10, seed=8)
    upload = http_api.initiate(len(content), part_size=PART)
    parts = http_api.put_parts(upload, content)
    assert http_api.complete(upload["id"], parts).status_code == 200
    parts_dir = Path(settings.UPLOADS_LOCAL_PARTS_DIR)
    assert not (parts_dir / upload["upload_id"]).exists()
    assert (parts_dir / f".done-{upload['upload_id']}").is_dir()

    reconcile_storage()

    assert list(parts_dir.iterdir()) == []
    assert object_bytes(upload["id"]) == content


def test_a_dry_run_reconcile_keeps_what_complete_set_aside(http_api: HttpApi) -> None:
    content = payload(PART + 10, seed=9)
    upload = http_api.initiate(len(content), part_size=PART)
    parts = http_api.put_parts(upload, content)
    assert http_api.complete(upload["id"], parts).status_code == 200
    set_aside = Path(settings.UPLOADS_LOCAL_PARTS_DIR) / f".done-{upload['upload_id']}"
    assert set_aside.is_dir()

    result = reconcile_storage(dry_run=True)

    assert (result.aborted, result.errors) == (0, 0)
    assert set_aside.is_dir(), "a dry run must change nothing in the store"


@pytest.mark.parametrize("write_behind", [True, False], ids=["sync_file_range", "fdatasync"])
@pytest.mark.parametrize("part_size", [3 * MIB, 3 * MIB + 5])
def test_parts_at_any_offset_and_length_are_stored_whole(
    http_api: HttpApi, part_size: int, write_behind: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parts of several write buffers, at offsets aligned or not, arrive byte for byte: with
    each buffer's writeback started as it is written (Linux), and with the final sync alone
    (where sync_file_range is missing)."""
    if write_behind:
        assert local_handler._sync_file_range is not None, "Linux offers sync_file_range"
    else:
        monkeypatch.setattr(local_handler, "_sync_file_range", None)
    content = payload(2 * part_size + 12345, seed=23)
    upload = http_api.initiate(len(content), part_size=part_size)
    parts = http_api.put_parts(upload, content)
    assert [p["etag"].strip('"') for p in parts] == [
        md5(content[i : i + part_size]) for i in range(0, len(content), part_size)
    ]
    assert http_api.complete(upload["id"], parts).status_code == 200
    assert object_bytes(upload["id"]) == content
