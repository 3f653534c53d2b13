"""The upload lifecycle through the services alone, on the local disk and on S3 (moto): what
each state change does to the record and to the store. The HTTP view of the same steps is
tests/api/test_uploads_api.py; the races are in tests/unit/test_completion.py and
tests/postgres/."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import requests
from django.test import Client
from django.utils import timezone

from tests.helpers import Store
from uploads.errors import InvalidTransition, UploadNotFound
from uploads.models import FileRecord
from uploads.services.completion import upload_complete
from uploads.services.files import file_delete, file_purge, file_restore, file_update
from uploads.services.uploads import upload_abort, upload_initiate, upload_parts, upload_presign
from uploads.storage.base import CompletedPart, PartTarget

pytestmark = pytest.mark.django_db
Status = FileRecord.Status
MIB = 1024 * 1024


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, settings: Any) -> Store:
    """Each test runs on the local disk and on S3 (moto), whose parts are 5 MiB but the last."""
    if request.param == "local":
        request.getfixturevalue("local_disk")
    return Store.of(request.param, request)


@pytest.fixture
def content(settings: Any) -> bytes:
    # Two parts: one of the smallest size the store allows, and a short last one.
    return bytes(range(256)) * (settings.UPLOADS_MIN_PART_SIZE // 256) + b"tail"


def put(target: PartTarget, body: bytes) -> str:
    """PUT one part to its URL, as a client would; return its ETag."""
    if target.url.startswith("http"):
        response: Any = requests.put(
            target.url, data=body, headers=dict(target.headers), timeout=60
        )
        assert response.status_code == 200, response.text
        return str(response.headers["ETag"])
    response = Client().put(target.url, data=body, content_type="application/octet-stream")
    assert response.status_code == 200, response.content
    return str(response["ETag"])


def start(user: Any, content: bytes, settings: Any) -> tuple[FileRecord, list[CompletedPart]]:
    """An upload with every part stored, not yet completed."""
    part_size = settings.UPLOADS_MIN_PART_SIZE
    upload = upload_initiate(
        user=user, file_name="report.bin", file_size=len(content), part_size=part_size
    )
    parts = [
        CompletedPart(
            target.part_number,
            put(target, content[(target.part_number - 1) * part_size :][:part_size]),
        )
        for target in upload.presigned_urls
    ]
    return upload.file, parts


def test_initiate_opens_an_upload_in_the_store(user, store, content, settings):
    upload = upload_initiate(
        user=user,
        file_name="dir/report.bin",
        file_size=len(content),
        part_size=settings.UPLOADS_MIN_PART_SIZE,
        presign="none",
    )
    record = FileRecord.objects.get(pk=upload.file.pk)
    assert (record.upload_status, record.file_name, record.total_parts) == (
        Status.UPLOADING,
        "report.bin",
        2,
    )
    assert upload.presigned_urls == []
    assert store.upload_alive(record.upload_id)


def test_complete_assembles_the_parts_into_the_file(user, store, content, settings):
    record, parts = start(user, content, settings)
    done = upload_complete(user=user, file_id=record.pk, parts=list(reversed(parts)))
    assert (done.upload_status, done.uploaded_parts) == (Status.COMPLETED, 2)
    assert done.completed_at is not None and done.etag
    assert store.object_bytes(done.storage_key) == content
    assert not store.upload_alive(record.upload_id)
    # The same parts again are a no-op; other parts are a conflict.
    assert upload_complete(user=user, file_id=record.pk, parts=parts).pk == done.pk
    with pytest.raises(InvalidTransition):
        upload_complete(user=user, file_id=record.pk, parts=[parts[0], CompletedPart(2, "x")])


def test_parts_and_presign_resume_an_unfinished_upload(user, store, content, settings):
    record, parts = start(user, content, settings)
    stored = upload_parts(user=user, file_id=record.pk)
    assert [p.part_number for p in stored.parts] == [1, 2]
    assert stored.uploaded_bytes == len(content)
    FileRecord.objects.filter(pk=record.pk).update(upload_expires_at=timezone.now())
    fresh = upload_presign(user=user, file_id=record.pk, part_numbers=[2, 2])
    assert [t.part_number for t in fresh.presigned_urls] == [2]
    # Signing pushes the expiry past the new URLs' lifetime.
    expires = FileRecord.objects.get(pk=record.pk).upload_expires_at
    assert expires > timezone.now() + timedelta(seconds=fresh.expires_in - 5)


def test_abort_ends_the_upload_here_and_in_the_store(user, store, content, settings):
    record, parts = start(user, content, settings)
    aborted = upload_abort(user=user, file_id=record.pk)
    assert (aborted.upload_status, aborted.upload_id) == (Status.ABORTED, "")
    assert FileRecord.objects.get(pk=record.pk).upload_status == Status.ABORTED
    assert not store.upload_alive(record.upload_id)
    with pytest.raises(InvalidTransition):
        upload_complete(user=user, file_id=record.pk, parts=parts)


def test_delete_in_flight_aborts_it_and_hides_it(user, store, content, settings):
    record, _ = start(user, content, settings)
    file_delete(user=user, file_id=record.pk)
    current = FileRecord.objects.get(pk=record.pk)
    assert current.deleted_at is not None
    assert (current.upload_status, current.upload_id) == (Status.ABORTED, "")
    assert not store.upload_alive(record.upload_id)
    with pytest.raises(UploadNotFound):
        file_update(user=user, file_id=record.pk, name="again")


def test_deleted_file_keeps_its_bytes_until_staff_restore_or_purge(
    user, staff_user, store, content, settings
):
    record, parts = start(user, content, settings)
    done = upload_complete(user=user, file_id=record.pk, parts=parts)
    file_delete(user=user, file_id=done.pk)
    assert store.object_bytes(done.storage_key) == content
    restored = file_restore(user=staff_user, file_id=done.pk)
    assert (restored.deleted_at, restored.upload_status) == (None, Status.COMPLETED)
    file_delete(user=user, file_id=done.pk)
    file_purge(user=staff_user, file_id=done.pk)
    assert not FileRecord.objects.filter(pk=done.pk).exists()
    assert store.object_bytes(done.storage_key) is None


def test_update_changes_only_the_display_fields(user, local_disk):
    upload = upload_initiate(user=user, file_name="a.bin", file_size=3)
    updated = file_update(user=user, file_id=upload.file.pk, name=" New\x00 ", description="d")
    assert (updated.name, updated.description, updated.file_name) == ("New", "d", "a.bin")


# --- the QuerySet and the one transition ------------------------------------------------------


def test_transition_moves_only_rows_still_in_an_allowed_state(user, local_disk):
    open_one = upload_initiate(user=user, file_name="a.bin", file_size=3).file
    done = upload_initiate(user=user, file_name="b.bin", file_size=3).file
    FileRecord.objects.filter(pk=done.pk).update(upload_status=Status.COMPLETED)
    moved = FileRecord.objects.filter(pk__in=[open_one.pk, done.pk]).transition(
        Status.ABORTED, failure_reason="why"
    )
    assert moved == 1
    statuses = dict(FileRecord.objects.values_list("pk", "upload_status"))
    assert statuses == {open_one.pk: Status.ABORTED, done.pk: Status.COMPLETED}


def test_queryset_filters(user, other_user, staff_user, local_disk):
    mine = upload_initiate(user=user, file_name="a.bin", file_size=3).file
    theirs = upload_initiate(user=other_user, file_name="b.bin", file_size=3).file
    now = timezone.now()
    FileRecord.objects.filter(pk=theirs.pk).update(upload_expires_at=now - timedelta(seconds=1))
    files = FileRecord.objects
    assert list(files.expired(now)) == [theirs]
    assert set(files.open()) == {mine, theirs}
    assert list(files.visible_to(user)) == [mine]
    assert set(files.visible_to(staff_user)) == {mine, theirs}
    assert list(files.visible_to(staff_user, staff_ok=False)) == []
    file_delete(user=user, file_id=mine.pk)
    assert list(files.visible_to(user)) == []
    assert list(files.visible_to(user, deleted_ok=True)) == [mine]
    assert list(files.ended()) == [mine]
    assert list(files.holding_quota()) == [theirs]
