"""The Django admin shows file records but cannot break their rules: nothing is editable or
added there, and delete and abort go through the services."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from tests.factories import FileRecordFactory
from uploads.models import FileRecord

Status = FileRecord.Status
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("local_disk")]


@pytest.fixture
def local_disk(settings: Any, tmp_path: Any) -> None:
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    }
    settings.MEDIA_ROOT = tmp_path


@pytest.fixture
def admin_client() -> Client:
    admin = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client = Client()
    client.force_login(admin)
    return client


def test_no_add_and_no_field_editable(admin_client: Client, user: Any) -> None:
    record = FileRecordFactory(created_by=user, file_size=10)
    assert admin_client.get("/admin/uploads/filerecord/add/").status_code == 403
    page = admin_client.get(f"/admin/uploads/filerecord/{record.pk}/change/").content.decode()
    for field in ("upload_status", "file_size", "file", "checksum_algorithm", "created_by"):
        assert f'name="{field}"' not in page, field

    admin_client.post(
        f"/admin/uploads/filerecord/{record.pk}/change/",
        {"upload_status": "failed", "file_size": "999", "name": "changed"},
    )
    record.refresh_from_db()
    assert (record.upload_status, record.file_size) == (Status.COMPLETED, 10)


def test_delete_hides_the_file_as_the_service_does(admin_client: Client, user: Any) -> None:
    record = FileRecordFactory(created_by=user)
    response = admin_client.post(f"/admin/uploads/filerecord/{record.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    record.refresh_from_db()  # kept, hidden, awaiting the purge: the service's delete
    assert record.deleted_at is not None
    assert not FileRecord.objects.visible().filter(pk=record.pk).exists()


def test_abort_action_runs_the_service_and_refuses_a_completed_file(
    admin_client: Client, user: Any
) -> None:
    open_one = FileRecordFactory(
        created_by=user, upload_status=Status.UPLOADING, completed_at=None, upload_id=""
    )
    done = FileRecordFactory(created_by=user)
    response = admin_client.post(
        "/admin/uploads/filerecord/",
        {"action": "abort_uploads", "_selected_action": [str(open_one.pk), str(done.pk)]},
        follow=True,
    )
    open_one.refresh_from_db()
    done.refresh_from_db()
    assert open_one.upload_status == Status.ABORTED
    assert done.upload_status == Status.COMPLETED
    text = response.content.decode()
    assert "1 file(s) aborted." in text
    assert done.file_name in text  # named with the service's refusal
