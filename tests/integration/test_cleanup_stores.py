"""Cleanup against real stores, once per handler: uploads started through the API with a part in
the store (local part directories; S3 multipart uploads on moto and the verifying store), then
expired, failed or orphaned. What the store holds afterwards is checked around the application."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from io import StringIO
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.core import signing
from django.core.management import call_command
from django.utils import timezone

from tests.helpers import ApiClient, Store
from uploads.models import FileRecord
from uploads.services import cleanup
from uploads.storage import StorageError, get_storage_handler
from uploads.storage.local.tokens import PART_SALT

from .support import payload

pytestmark = pytest.mark.django_db
Status = FileRecord.Status
UPLOADS = "/v1/files/uploads"


def put_part(api: ApiClient, backend: str, body: dict[str, Any], content: bytes) -> str:
    """PUT the one part to its URL (the app's through the test client, S3's over HTTP)."""
    url = body["presigned_urls"][0]["url"]
    if backend == "local":
        response: Any = api.put_part(url, content)
    else:
        response = requests.put(url, data=content, timeout=30)
    assert response.status_code == 200
    return str(response.headers["ETag"])


def start(api: ApiClient, backend: str, content: bytes, *, send: bool = True) -> dict[str, Any]:
    """Initiate a one-part upload and (with `send`) PUT its part, so the store holds bytes."""
    response = api.post(UPLOADS, {"file_name": "data.bin", "file_size": len(content)})
    assert response.status_code == 201, response.content
    body: dict[str, Any] = response.json()
    if send:
        put_part(api, backend, body, content)
    return body


def finish(api: ApiClient, backend: str, content: bytes) -> dict[str, Any]:
    """A completed upload whose object the store holds."""
    body = start(api, backend, content, send=False)
    parts = [{"part_number": 1, "etag": put_part(api, backend, body, content)}]
    done = api.post(f"{UPLOADS}/{body['id']}/complete", {"parts": parts})
    assert done.status_code == 200, done.content
    return body


def expire(*uploads: dict[str, Any]) -> None:
    FileRecord.objects.filter(pk__in=[u["id"] for u in uploads]).update(
        upload_expires_at=timezone.now() - timedelta(minutes=1)
    )


def record(upload: dict[str, Any]) -> FileRecord:
    return FileRecord.objects.get(pk=upload["id"])


@pytest.fixture
def content() -> bytes:
    return payload(3000, seed=7)


def test_expired_uploads_are_aborted_in_the_store(api, backend, store: Store, content):
    expired = [start(api, backend, content) for _ in range(3)]
    fresh = start(api, backend, content)
    done = finish(api, backend, content)
    expire(*expired)
    FileRecord.objects.filter(pk=done["id"]).update(
        upload_expires_at=timezone.now() - timedelta(days=1)
    )
    assert all(store.upload_alive(u["upload_id"]) for u in expired)

    result = cleanup.cleanup_expired_uploads()

    assert result.as_dict() == {
        "examined": 3,
        "aborted": 3,
        "deleted": 0,
        "errors": 0,
        "finished": True,
    }
    for upload in expired:
        current = record(upload)
        assert (current.upload_status, current.upload_id) == (Status.ABORTED, "")
        assert not store.upload_alive(upload["upload_id"])
        if backend == "local":
            assert store.local_part_files(upload["upload_id"]) == []
    assert (record(fresh).upload_status, record(fresh).upload_id) == (
        Status.UPLOADING,
        fresh["upload_id"],
    )
    assert store.upload_alive(fresh["upload_id"])
    assert record(done).upload_status == Status.COMPLETED
    assert store.object_bytes(record(done).storage_key) == content


def test_a_failing_store_abort_keeps_the_upload_id_for_a_later_run(
    api, backend, store: Store, content, monkeypatch, caplog
):
    uploads = [start(api, backend, content) for _ in range(3)]
    expire(*uploads)
    bad = uploads[1]
    handler_class = type(get_storage_handler())
    real_abort = handler_class.abort

    def abort(self: Any, upload: Any) -> None:
        if upload.upload_id == bad["upload_id"]:
            raise StorageError("injected: the store refused")
        real_abort(self, upload)

    monkeypatch.setattr(handler_class, "abort", abort)
    with caplog.at_level(logging.ERROR, logger="uploads.services.cleanup"):
        result = cleanup.cleanup_expired_uploads(batch_size=2)

    assert (result.aborted, result.errors) == (3, 1)
    assert any(bad["upload_id"] in message for message in caplog.messages)
    assert (record(bad).upload_status, record(bad).upload_id) == (
        Status.ABORTED,
        bad["upload_id"],
    )
    assert store.upload_alive(bad["upload_id"])
    for upload in (uploads[0], uploads[2]):
        assert record(upload).upload_id == ""
        assert not store.upload_alive(upload["upload_id"])

    monkeypatch.undo()
    later = cleanup.cleanup_expired_uploads(now=timezone.now() + cleanup.RETRY_AFTER * 2)
    assert later.errors == 0
    assert record(bad).upload_id == ""
    assert not store.upload_alive(bad["upload_id"])


def test_failed_cleanup_removes_leftover_parts_with_old_records(api, backend, store, content):
    old = start(api, backend, content)
    recent = start(api, backend, content)
    # Both failed while the store was down: their upload ids (and parts) are still there.
    FileRecord.objects.filter(pk__in=[old["id"], recent["id"]]).update(upload_status=Status.FAILED)
    FileRecord.objects.filter(pk=old["id"]).update(modified=timezone.now() - timedelta(days=8))

    result = cleanup.cleanup_failed_uploads(7)

    assert (result.deleted, result.errors) == (1, 0)
    assert not FileRecord.objects.filter(pk=old["id"]).exists()
    assert not store.upload_alive(old["upload_id"])
    assert record(recent).upload_status == Status.FAILED
    assert store.upload_alive(recent["upload_id"])


def test_reconcile_aborts_only_old_uploads_no_open_record_knows(api, backend, store, content):
    orphan = start(api, backend, content)
    known = start(api, backend, content)
    FileRecord.objects.filter(pk=orphan["id"]).delete()  # the record was lost

    if backend != "s3":
        # moto reports every multipart upload as initiated in 2010 (a constant in its
        # ListMultipartUploads response), so the age cutoff can only be seen on the other stores.
        young = cleanup.reconcile_storage(older_than=timedelta(hours=1))
        assert (young.aborted, young.errors) == (0, 0)
        assert store.upload_alive(orphan["upload_id"])

    later = timezone.now() + timedelta(hours=2)
    dry = cleanup.reconcile_storage(older_than=timedelta(hours=1), now=later, dry_run=True)
    assert (dry.examined, dry.aborted) == (2, 1)
    assert store.upload_alive(orphan["upload_id"])

    result = cleanup.reconcile_storage(older_than=timedelta(hours=1), now=later)
    assert (result.examined, result.aborted, result.errors) == (2, 1, 0)
    assert not store.upload_alive(orphan["upload_id"])
    assert store.upload_alive(known["upload_id"])
    assert record(known).upload_status == Status.UPLOADING


def test_dry_runs_change_nothing_in_the_store(api, backend, store, content):
    expired = start(api, backend, content)
    failed = start(api, backend, content)
    expire(expired)
    FileRecord.objects.filter(pk=failed["id"]).update(
        upload_status=Status.FAILED, modified=timezone.now() - timedelta(days=30)
    )
    assert cleanup.cleanup_expired_uploads(dry_run=True).aborted == 1
    assert cleanup.cleanup_failed_uploads(7, dry_run=True).deleted == 1
    assert record(expired).upload_status == Status.UPLOADING
    assert record(failed).upload_status == Status.FAILED
    assert store.upload_alive(expired["upload_id"])
    assert store.upload_alive(failed["upload_id"])


def test_command_runs_every_step_against_the_store(api, backend, store, content):
    expired = start(api, backend, content)
    expire(expired)
    out = StringIO()
    call_command("cleanup_uploads", "--expired", stdout=out, stderr=StringIO())
    assert out.getvalue().startswith("expired: done — examined 1, aborted 1,")
    assert not store.upload_alive(expired["upload_id"])
    assert record(expired).upload_status == Status.ABORTED


# --- completion meeting cleanup at each step (deterministic interleavings) --------------------
# Cleanup runs inside a completion at a chosen point; no lock is held across store calls, so
# these are the states the threaded race in tests/postgres/test_cleanup_race.py can reach.


def ready(api: ApiClient, backend: str, content: bytes) -> tuple[dict[str, Any], list[Any]]:
    body = start(api, backend, content, send=False)
    parts = [{"part_number": 1, "etag": put_part(api, backend, body, content)}]
    expire(body)
    return body, parts


def assert_aborted_with_nothing_stored(store: Store, body: dict[str, Any]) -> None:
    current = record(body)
    assert (current.upload_status, current.upload_id) == (Status.ABORTED, "")
    assert store.object_bytes(current.storage_key) is None, "an aborted upload kept its object"
    assert not store.upload_alive(body["upload_id"]), "an aborted upload kept its parts"


def run_cleanup_inside(monkeypatch: pytest.MonkeyPatch, method: str, *, after: bool) -> list[Any]:
    """Run expiry cleanup inside the handler's `method`, before or after the real call."""
    handler_class = type(get_storage_handler())
    real = getattr(handler_class, method)
    results: list[Any] = []

    def wrapped(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not after:
            results.append(cleanup.cleanup_expired_uploads())
        value = real(self, *args, **kwargs)
        if after:
            results.append(cleanup.cleanup_expired_uploads())
        return value

    monkeypatch.setattr(handler_class, method, wrapped)
    return results


def test_cleanup_before_completion_asks_the_store_for_parts(
    api, backend, store, content, monkeypatch
):
    body, parts = ready(api, backend, content)
    runs = run_cleanup_inside(monkeypatch, "list_parts", after=False)
    response = api.post(f"{UPLOADS}/{body['id']}/complete", {"parts": parts})
    assert response.status_code == 409, response.content
    assert [run.aborted for run in runs] == [1]
    assert_aborted_with_nothing_stored(store, body)


def test_cleanup_after_the_store_completed_but_before_the_row_is_marked(
    api, backend, store, content, monkeypatch
):
    body, parts = ready(api, backend, content)
    runs = run_cleanup_inside(monkeypatch, "complete", after=True)
    response = api.post(f"{UPLOADS}/{body['id']}/complete", {"parts": parts})
    assert response.status_code == 409, response.content
    assert [run.aborted for run in runs] == [1]
    # The object the store had just assembled is deleted again.
    assert_aborted_with_nothing_stored(store, body)


def test_completed_first_cleanup_leaves_the_file_alone(api, backend, store, content):
    body, parts = ready(api, backend, content)
    response = api.post(f"{UPLOADS}/{body['id']}/complete", {"parts": parts})
    assert response.status_code == 200, response.content
    assert cleanup.cleanup_expired_uploads().aborted == 0
    assert record(body).upload_status == Status.COMPLETED
    assert store.object_bytes(record(body).storage_key) == content


# --- An upload lives at least as long as the URLs signed for it --------------------------------


def url_expiry(url: str) -> datetime:
    """When a part URL stops working: S3's X-Amz-Date + X-Amz-Expires, or the local token's."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    if "X-Amz-Date" in query:
        signed = datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        return signed + timedelta(seconds=int(query["X-Amz-Expires"][0]))
    token = parts.path.rsplit("/", 1)[-1]
    return datetime.fromtimestamp(signing.loads(token, salt=PART_SALT)["e"], tz=UTC)


def test_cleanup_leaves_an_upload_whose_urls_still_work_alone(
    api, backend, store: Store, content, settings
):
    # Uploads expire after a minute, but part URLs live ten.
    settings.UPLOADS_EXPIRATION_SECONDS = 60
    settings.FILE_UPLOAD_PRESIGNED_URL_EXPIRATION = 600
    upload = start(api, backend, content, send=False)
    signed = url_expiry(upload["presigned_urls"][0]["url"])
    assert record(upload).upload_expires_at >= signed

    # Past the upload's own window, within its URL's lifetime: cleanup leaves it be.
    later = timezone.now() + timedelta(seconds=120)
    assert cleanup.cleanup_expired_uploads(now=later).aborted == 0
    assert record(upload).upload_status == Status.UPLOADING
    assert store.upload_alive(upload["upload_id"])
    # A fresh URL pushes the expiry past its own end too.
    fresh = api.post(f"{UPLOADS}/{upload['id']}/presign", {"part_numbers": [1]})
    assert fresh.status_code == 200, fresh.content
    assert record(upload).upload_expires_at >= url_expiry(fresh.json()["presigned_urls"][0]["url"])
    # The client is still sending: its part goes in and the file completes.
    parts = [{"part_number": 1, "etag": put_part(api, backend, upload, content)}]
    done = api.post(f"{UPLOADS}/{upload['id']}/complete", {"parts": parts})
    assert done.status_code == 200, done.content


def test_cleanup_aborts_the_upload_once_its_urls_are_dead(
    api, backend, store: Store, content, settings
):
    settings.UPLOADS_EXPIRATION_SECONDS = 60
    settings.FILE_UPLOAD_PRESIGNED_URL_EXPIRATION = 600
    upload = start(api, backend, content)
    dead = url_expiry(upload["presigned_urls"][0]["url"]) + timedelta(seconds=1)

    assert cleanup.cleanup_expired_uploads(now=dead).aborted == 1

    assert record(upload).upload_status == Status.ABORTED
    assert not store.upload_alive(upload["upload_id"])


# --- Deleted files: kept for their retention period, then purged -------------------------------


def test_purge_removes_deleted_files_from_the_store_after_their_retention(
    api, backend, store: Store, content
):
    kept = finish(api, backend, content)
    gone = finish(api, backend, content)
    in_flight = start(api, backend, content)
    for upload in (kept, gone, in_flight):
        assert api.delete(f"/v1/files/{upload['id']}").status_code == 204
    FileRecord.objects.filter(pk__in=[gone["id"], in_flight["id"]]).update(
        deleted_at=timezone.now() - timedelta(days=8)
    )
    gone_key = record(gone).storage_key

    result = cleanup.purge_deleted_files()

    assert (result.examined, result.deleted, result.errors) == (2, 2, 0)
    assert not FileRecord.objects.filter(pk__in=[gone["id"], in_flight["id"]]).exists()
    assert store.object_bytes(gone_key) is None
    assert not store.upload_alive(in_flight["upload_id"])
    # Still within its retention: hidden, but its bytes are there to restore.
    assert store.object_bytes(record(kept).storage_key) == content


def test_a_purge_the_store_refuses_keeps_the_row_for_the_next_run(
    api, backend, store: Store, content, monkeypatch, caplog
):
    upload = finish(api, backend, content)
    assert api.delete(f"/v1/files/{upload['id']}").status_code == 204
    key = record(upload).storage_key
    handler_class = type(get_storage_handler())

    def refuse(self: Any, key: str) -> None:
        raise StorageError("delete refused")

    with monkeypatch.context() as patch, caplog.at_level(logging.ERROR):
        patch.setattr(handler_class, "delete", refuse)
        result = cleanup.purge_deleted_files(retention_days=0)

    assert (result.examined, result.deleted, result.errors, result.finished) == (1, 0, 1, False)
    assert "could not remove file" in caplog.text
    # Claimed for the purge: no longer restorable, still recorded, bytes still there.
    assert record(upload).upload_status == Status.ABORTED
    assert store.object_bytes(key) == content
    assert cleanup.purge_deleted_files(retention_days=0).deleted == 1
    assert store.object_bytes(key) is None
