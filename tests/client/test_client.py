"""The Python client against a live server, on local disk and on S3 (moto, the verifying store):
round trip, resume, retries, re-signing, lazy signing, token renewal and typed errors."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from ninja_jwt.tokens import AccessToken

from tests.factories import FileRecordFactory
from tests.integration.support import KIB, MIB
from uploads.auth import refresh_token_for
from uploads.client import Client, ClientError, ResumeState, auto_part_size
from uploads.client.state import resume_key
from uploads.models import FileRecord

from .conftest import Recording, part_number, sha256_b64


class Crash(Exception):
    """Stands for the process dying midway: not a network error, so nothing retries it."""


def s3_error(status: int, code: str, message: str) -> httpx.Response:
    body = f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    return httpx.Response(status, content=body, headers={"Content-Type": "application/xml"})


def test_upload_then_download_gives_the_same_bytes(
    backend, make_client, part_size, write_file, tmp_path, live_server, request
):
    path, content = write_file(2 * part_size + 1234, seed=1)
    parts = Recording()
    client = make_client(part_transport=parts)
    seen: list[tuple[int, int]] = []

    result = client.upload(
        path, part_size=part_size, concurrency=4, progress=lambda d, t: seen.append((d, t))
    )

    assert result.file.upload_status == "completed"
    assert (result.file.file_size, result.file.file_name) == (len(content), "data.bin")
    assert (result.parts_sent, result.parts_reused, result.resumed) == (3, 0, False)
    assert sorted(parts.parts_put()) == [1, 2, 3]
    # Parts go straight to the store, with the signed URL as the only credential.
    if backend == "local":
        store_url = f"{live_server.url}/local/parts/"
    else:
        s3 = request.getfixturevalue(backend)
        store_url = f"{s3.endpoint}/{s3.bucket}/"
    for put in parts.requests:
        assert str(put.url).startswith(store_url)
        assert "authorization" not in put.headers
    assert seen[0] == (0, len(content)) and seen[-1] == (len(content), len(content))

    copy = client.download(result.file.id, tmp_path / "copy.bin")
    assert copy.read_bytes() == content
    into_dir = tmp_path / "downloads"
    into_dir.mkdir()
    assert client.download(result.file.id, into_dir) == into_dir / "data.bin"
    assert (into_dir / "data.bin").read_bytes() == content
    assert client.get(result.file.id).upload_status == "completed"


def test_resume_after_a_crash_sends_only_the_missing_parts(
    backend, make_client, part_size, write_file, state_path
):
    path, content = write_file(5 * part_size + 77, seed=2)  # 6 parts

    def crash_at_fourth_part(request: httpx.Request, attempt: int) -> None:
        if len(first_parts.parts_put()) == 4:
            raise Crash()

    first_parts = Recording(fault=crash_at_fourth_part)
    first = make_client(part_transport=first_parts)
    with pytest.raises(Crash):
        first.upload(path, part_size=part_size, concurrency=1)

    key = resume_key(first.server, path, path.stat())
    file_id = ResumeState(state_path).get(key)
    assert file_id is not None
    assert [p.part_number for p in first.parts(file_id).parts] == [1, 2, 3]

    # A new process: a new client, the same state file.
    api, parts = Recording(), Recording()
    second = make_client(transport=api, part_transport=parts)
    result = second.upload(path, concurrency=3)

    assert result.file.id == file_id and result.file.upload_status == "completed"
    assert (result.resumed, result.parts_reused, result.parts_sent) == (True, 3, 3)
    assert sorted(parts.parts_put()) == [4, 5, 6]
    assert api.calls("POST", "/v1/files/uploads") == []
    assert ResumeState(state_path).get(key) is None
    assert second.download(file_id, path.with_name("copy.bin")).read_bytes() == content


def test_no_resume_starts_a_new_upload(local_disk, make_client, write_file):
    path, _ = write_file(3 * 4 * KIB, seed=3)

    def crash(request: httpx.Request, attempt: int) -> None:
        if request.method == "PUT":
            raise Crash()

    with pytest.raises(Crash):
        make_client(part_transport=Recording(fault=crash)).upload(path, part_size=4 * KIB)
    client = make_client()
    (unfinished,) = client.list(status="uploading")

    result = client.upload(path, resume=False)

    assert result.file.id != unfinished.id and not result.resumed and result.parts_sent == 1
    assert client.get(unfinished.id).upload_status == "uploading"


def test_a_stale_resume_entry_starts_over(local_disk, make_client, write_file, tmp_path):
    path, content = write_file(3 * 4 * KIB, seed=4)

    def crash(request: httpx.Request, attempt: int) -> None:
        raise Crash()

    with pytest.raises(Crash):
        make_client(part_transport=Recording(fault=crash)).upload(path, part_size=4 * KIB)
    client = make_client()
    (unfinished,) = client.list(status="uploading")
    # Aborted elsewhere (another machine, cleanup): this state file still points at it.
    make_client(state_path=tmp_path / "elsewhere.json").abort(unfinished.id)

    result = client.upload(path, part_size=4 * KIB)

    assert result.file.id != unfinished.id and not result.resumed and result.parts_sent == 3
    assert client.download(result.file.id, tmp_path / "copy.bin").read_bytes() == content


def test_part_puts_are_retried_through_network_errors_and_5xx(
    backend, make_client, part_size, write_file, tmp_path
):
    path, content = write_file(3 * part_size + 10, seed=5)  # 4 parts

    def fault(request: httpx.Request, attempt: int) -> httpx.Response | None:
        number = part_number(request)
        if attempt == 1 and number == 2:
            raise httpx.ConnectError("connection refused")
        if attempt == 1 and number == 3:
            return s3_error(503, "SlowDown", "Please reduce your request rate.")
        return None

    def lose_response(request: httpx.Request, response: httpx.Response, attempt: int) -> None:
        # Part 1 reaches the store, but the answer never comes back: the PUT is sent again.
        if attempt == 1 and part_number(request) == 1:
            raise httpx.ReadError("connection reset by peer")

    parts = Recording(fault=fault, after=lose_response)
    client = make_client(part_transport=parts)

    result = client.upload(path, part_size=part_size, concurrency=4)

    assert result.file.upload_status == "completed"
    assert Counter(parts.parts_put()) == {1: 2, 2: 2, 3: 2, 4: 1}
    assert result.bytes_sent == len(content)
    assert client.download(result.file.id, tmp_path / "copy.bin").read_bytes() == content


def test_a_part_that_keeps_failing_gives_up_and_stays_resumable(
    local_disk, make_client, write_file, state_path
):
    path, _ = write_file(3 * 4 * KIB, seed=6)

    def always_busy(request: httpx.Request, attempt: int) -> httpx.Response | None:
        return s3_error(503, "SlowDown", "busy") if part_number(request) == 2 else None

    parts = Recording(fault=always_busy)
    client = make_client(part_transport=parts)

    with pytest.raises(ClientError) as failure:
        client.upload(path, part_size=4 * KIB, concurrency=1)

    assert (failure.value.status, failure.value.code) == (503, "SlowDown")
    assert Counter(parts.parts_put())[2] == client.retry.attempts
    file_id = ResumeState(state_path).get(resume_key(client.server, path, path.stat()))
    assert file_id is not None and client.get(file_id).upload_status == "uploading"


def test_an_expired_url_is_signed_again(
    backend, make_client, part_size, write_file, tmp_path, monkeypatch
):
    path, content = write_file(2 * part_size + 5, seed=7)  # 3 parts

    if backend == "local":
        clock = "uploads.storage.local.tokens.time"

        def fault(request: httpx.Request, attempt: int) -> None:
            if part_number(request) == 2 and attempt == 1:
                # The server's clock passes the link's expiry: it answers a real 403.
                later = time.time() + 7200
                monkeypatch.setattr(clock, SimpleNamespace(time=lambda: later))

        def after(request: httpx.Request, response: httpx.Response, attempt: int) -> None:
            monkeypatch.setattr(clock, time)

        parts = Recording(fault=fault, after=after)
    else:
        # Answer what S3 answers for an expired URL (moto would take it), at a moment we choose.
        def expired(request: httpx.Request, attempt: int) -> httpx.Response | None:
            if part_number(request) == 2 and attempt == 1:
                return s3_error(403, "AccessDenied", "Request has expired")
            return None

        parts = Recording(fault=expired)
    api = Recording()
    client = make_client(transport=api, part_transport=parts)

    result = client.upload(path, part_size=part_size, concurrency=1)

    assert result.file.upload_status == "completed"
    assert [status for r, status in parts.statuses if part_number(r) == 2] == [403, 200]
    # Signed once, then once more after the 403, with the same checksum. Which other parts
    # share either call depends on how far the hashing thread has got (part 3 may or may not
    # be hashed yet): not asserted.
    signed = [Recording.body(r) for r in api.calls("POST", "/presign")]
    with_two = [body for body in signed if 2 in body["part_numbers"]]
    assert len(with_two) == 2, signed
    checksum = sha256_b64(content[part_size : 2 * part_size])
    assert with_two[0]["checksums"]["2"] == with_two[1]["checksums"]["2"] == checksum
    assert client.download(result.file.id, tmp_path / "copy.bin").read_bytes() == content


def test_part_urls_are_signed_lazily_in_batches(local_disk, make_client, write_file, tmp_path):
    part = 1 * KIB
    path, content = write_file(250 * part - 100, seed=8)  # 250 parts
    api, parts = Recording(), Recording()
    client = make_client(transport=api, part_transport=parts)

    result = client.upload(path, part_size=part, concurrency=8, checksums=False)

    assert result.file.total_parts == 250
    (initiate,) = api.calls("POST", "/v1/files/uploads")
    assert Recording.body(initiate)["presign"] == 100
    assert sorted(b["part_numbers"] for b in signed_batches(api)) == [
        list(range(101, 201)),
        list(range(201, 251)),
    ]
    assert sorted(parts.parts_put()) == list(range(1, 251))
    assert client.download(result.file.id, tmp_path / "copy.bin").read_bytes() == content


def test_parts_are_hashed_then_signed_in_batches(local_disk, make_client, write_file, tmp_path):
    part = 1 * KIB
    path, content = write_file(250 * part - 100, seed=8)  # 250 parts
    api, parts = Recording(), Recording()
    client = make_client(transport=api, part_transport=parts)

    result = client.upload(path, part_size=part, concurrency=8)

    assert (result.file.total_parts, result.file.checksum_algorithm) == (250, "SHA256")
    (initiate,) = api.calls("POST", "/v1/files/uploads")
    # The part size is known only once the upload exists: no part is signed by initiate.
    assert Recording.body(initiate)["checksum_algorithm"] == "SHA256"
    assert "checksums" not in Recording.body(initiate)
    batches = signed_batches(api)
    numbers = [n for b in batches for n in b["part_numbers"]]
    assert sorted(numbers) == list(range(1, 251))  # each part signed once
    assert all(len(b["part_numbers"]) <= 100 for b in batches)
    assert len(batches) <= 25, "hashing did not run ahead of the senders"
    for batch in batches:
        for n in batch["part_numbers"]:
            chunk = content[(n - 1) * part : n * part]
            assert batch["checksums"][str(n)] == sha256_b64(chunk)
    # Each PUT carries its checksum, as signed.
    for put in (r for r in parts.requests if r.method == "PUT"):
        n = part_number(put)
        assert put.headers["x-amz-checksum-sha256"] == sha256_b64(
            content[(n - 1) * part : n * part]
        )
    assert client.download(result.file.id, tmp_path / "copy.bin").read_bytes() == content


def signed_batches(api: Recording) -> list[dict[str, Any]]:
    # A call the server refused (a locked test database) is sent again: count it once.
    return [
        Recording.body(r)
        for r, status in api.statuses
        if r.url.path.endswith("/presign") and status == 200
    ]


def expired_access_token(user: Any) -> str:
    token = AccessToken.for_user(user)  # type: ignore[misc]
    token.set_exp(lifetime=timedelta(seconds=-5))  # type: ignore[call-arg]
    return str(token)


def test_an_expired_access_token_is_refreshed(server, user, make_client):
    api = Recording()
    refresh = str(refresh_token_for(user))
    client = make_client(token=expired_access_token(user), refresh_token=refresh, transport=api)

    assert list(client.list(status="all")) == []

    assert [status for _, status in api.statuses] == [401, 200, 200]
    assert len(api.calls("POST", "/v1/auth/token/refresh")) == 1
    first, _, retried = api.requests
    assert first.headers["Authorization"] != retried.headers["Authorization"]


def test_signing_in_again_when_there_is_nothing_to_refresh_with(server, user, make_client):
    with pytest.raises(ClientError) as failure:
        list(make_client(token=expired_access_token(user)).list())
    assert (failure.value.status, failure.value.code) == (401, "token_not_valid")

    with pytest.raises(ClientError) as failure:
        list(make_client(password="wrong").list())
    assert (failure.value.status, failure.value.code) == (401, "authentication_failed")


def test_errors_are_typed(local_disk, make_client, write_file, other_user):
    client = make_client()
    with pytest.raises(ClientError) as failure:
        client.get(str(uuid.uuid4()))
    assert (failure.value.status, failure.value.code) == (404, "not_found")

    path, _ = write_file(10 * KIB, seed=9)
    done = client.upload(path)
    with pytest.raises(ClientError) as failure:
        client.abort(done.file.id)
    assert (failure.value.status, failure.value.code) == (409, "invalid_state")

    others = make_client(username="bob", password="bob-pass")
    with pytest.raises(ClientError) as failure:
        others.get(done.file.id)
    assert failure.value.status == 404

    client.delete(done.file.id)
    with pytest.raises(ClientError) as failure:
        client.get(done.file.id)
    assert failure.value.code == "not_found"


def test_abort_ends_an_unfinished_upload(local_disk, make_client, write_file):
    path, _ = write_file(3 * 4 * KIB, seed=10)

    def crash(request: httpx.Request, attempt: int) -> None:
        raise Crash()

    client = make_client(part_transport=Recording(fault=crash))
    with pytest.raises(Crash):
        client.upload(path, part_size=4 * KIB)
    (unfinished,) = client.list(status="uploading")

    client.abort(unfinished.id)

    assert client.get(unfinished.id).upload_status == "aborted"
    assert FileRecord.objects.get(pk=unfinished.id).upload_status == FileRecord.Status.ABORTED


def test_list_walks_every_page(local_disk, make_client, write_file):
    api = Recording()
    client = make_client(transport=api)
    paths = [write_file(100 + n, seed=n, name=f"f{n}.bin")[0] for n in range(3)]
    ids = {client.upload(path).file.id for path in paths}

    listed = list(client.list(page_size=2))

    assert {f.id for f in listed} == ids
    cursors = [r.url.params["cursor"] for r in api.calls("GET", "/v1/files")]
    assert len(cursors) == 2 and cursors[0] == "" and cursors[1]
    assert list(client.list(status="aborted")) == []


def test_list_shows_each_file_once_while_files_are_added(make_client, user):
    before = FileRecordFactory.create_batch(5, created_by=user)
    client = make_client()

    listed = []
    for remote in client.list(page_size=2):
        listed.append(remote.id)
        FileRecordFactory(created_by=user)  # a new upload lands at the top meanwhile

    assert sorted(listed) == sorted(str(record.pk) for record in before)


def test_an_empty_file_is_one_empty_part(local_disk, make_client, write_file, tmp_path):
    path, _ = write_file(0)
    parts = Recording()
    client = make_client(part_transport=parts)

    result = client.upload(path)

    assert (result.file.file_size, result.file.upload_status) == (0, "completed")
    assert parts.parts_put() == [1]
    assert client.download(result.file.id, tmp_path / "copy.bin").read_bytes() == b""


def test_name_description_and_parent_are_sent(local_disk, make_client, write_file):
    from tests.testapp.models import Post

    post = Post.objects.create(title="launch")
    client = make_client()
    attached = client.upload(
        write_file(100, seed=11, name="a.bin")[0],
        name="Launch video",
        description="final cut",
        parent=("testapp.post", post.pk),
    ).file
    client.upload(write_file(100, seed=12, name="b.bin")[0])

    assert (attached.name, attached.description) == ("Launch video", "final cut")
    assert attached.parent_content_type == "testapp.post"
    assert attached.parent_object_id == str(post.pk)
    assert [f.id for f in client.list(parent=("testapp.post", post.pk))] == [attached.id]


@pytest.mark.parametrize(
    ("file_size", "expected"),
    [
        (0, None),
        (1 * 1024 * MIB, None),
        (10_000 * 5 * MIB, None),  # 5 MiB parts still fit: the server's default applies
        (10_000 * 5 * MIB + 1, 6 * MIB),
        (100 * 1024 * MIB, 11 * MIB),  # 10.24 MiB needed, rounded up to whole MiB
        (5 * 1024 * 1024 * MIB, 525 * MIB),  # S3's largest object
    ],
)
def test_auto_part_size(file_size: int, expected: int | None) -> None:
    chosen = auto_part_size(file_size)
    assert chosen == expected
    if chosen is not None:
        assert chosen % MIB == 0 and chosen >= 5 * MIB
        assert -(-file_size // chosen) <= 10_000


def test_client_needs_both_username_and_password() -> None:
    with pytest.raises(ValueError):
        Client("http://127.0.0.1:1", username="alice")


def test_server_urls_are_normalised(tmp_path: Path) -> None:
    from uploads.client import normalize_server

    assert normalize_server("http://h:8000/v1/") == "http://h:8000"
    assert normalize_server("h:8000") == "http://h:8000"
    assert normalize_server("https://h/") == "https://h"
