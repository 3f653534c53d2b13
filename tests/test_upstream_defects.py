"""One test per defect known from the upstream project this product re-implements, each named
after the defect and asserting our behaviour through the real code (API, services, handlers).

Several are also covered elsewhere in more depth; here each has its own name, so a regression
of any of them is reported as that defect.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from botocore.client import BaseClient
from botocore.exceptions import ClientError
from django.conf import settings as django_settings
from django.core.files.storage import default_storage, storages
from django.db import models
from django.utils import timezone
from storages.backends.s3 import S3Storage

from tests.factories import FileRecordFactory
from tests.helpers import ApiClient, initiate, pin_local_disk
from tests.testapp.models import Comment, Post
from uploads.errors import (
    InvalidInput,
    InvalidTransition,
    UploadTooLarge,
    VerificationFailed,
)
from uploads.models import FileRecord
from uploads.selectors import file_list_for_user
from uploads.services import cleanup, completion, files, rules
from uploads.services import uploads as services
from uploads.storage import get_storage_handler
from uploads.storage.base import CompletedPart, MultipartUpload, PartsRejected, StoredPart
from uploads.storage.local import LocalStorageHandler
from uploads.storage.s3 import S3StorageHandler

pytestmark = pytest.mark.django_db

Status = FileRecord.Status
KIB = 1024
MIB = 1024 * KIB
TIB = 1024**4
PART = 1024  # tests/settings.py lowers the minimum part to 1 KiB on local disk
UPLOADS = "/v1/files/uploads"
KEY = re.compile(r"^uploads/\d{4}/\d{2}/\d{2}/[0-9a-f]{32}$")


def content_of(size: int) -> bytes:
    return bytes((i * 7 + i // 251) & 0xFF for i in range(size))


def put(api: ApiClient, upload: dict[str, Any], content: bytes, *, skip: tuple[int, ...] = (),
        override: dict[int, bytes] | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """PUT the parts of `content` (some skipped or replaced); return what complete expects."""
    size = upload["part_size"]
    parts = []
    for target in upload["presigned_urls"]:
        n = target["part_number"]
        body = (override or {}).get(n, content[(n - 1) * size : n * size])
        if n in skip:
            parts.append({"part_number": n, "etag": "0" * 32})
            continue
        response = api.put_part(target["url"], body)
        assert response.status_code == 200, response.content
        parts.append({"part_number": n, "etag": response["ETag"]})
    return parts


def stored(key: str) -> bool:
    return bool(key) and default_storage.exists(key)


def parts_dir(upload: dict[str, Any]) -> Path:
    return Path(django_settings.UPLOADS_LOCAL_PARTS_DIR) / upload["upload_id"]


# --- Storage selection and keys --------------------------------------------------------------


def test_storage_detection_not_fooled_by_lazy_default_storage(s3: Any, settings: Any) -> None:
    # The trap: the lazy wrapper's own type is never the S3 class.
    assert type(default_storage) is not S3Storage
    assert isinstance(storages["default"], S3Storage)
    handler = get_storage_handler()
    assert isinstance(handler, S3StorageHandler)
    assert handler.bucket == s3.bucket

    pin_local_disk(settings)
    assert isinstance(get_storage_handler(), LocalStorageHandler)


def test_s3_key_derived_once_not_per_call(
    s3: Any, user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The key is fixed at initiate; later calls on another day reuse it, never re-derive it."""
    derived: list[str] = []
    real_key = services.storage_key

    def counting(file_id: uuid.UUID) -> str:
        derived.append(real_key(file_id))
        return derived[-1]

    monkeypatch.setattr(services, "storage_key", counting)
    day_one = datetime(2031, 12, 31, 23, 59, tzinfo=UTC)
    monkeypatch.setattr(services.timezone, "now", lambda: day_one)
    content = content_of(5 * MIB + 100)
    api = ApiClient(user)
    upload = initiate(api, len(content), part_size=5 * MIB)
    key = FileRecord.objects.get(pk=upload["id"]).storage_key
    assert key.startswith("uploads/2031/12/31/")

    # The next calls happen "tomorrow": a re-derived key would name another day's folder.
    monkeypatch.setattr(services.timezone, "now", lambda: day_one + timedelta(days=1))
    signed = api.post(f"{UPLOADS}/{upload['id']}/presign", {"part_numbers": [1, 2]}).json()
    parts = []
    for target in signed["presigned_urls"]:
        assert f"/{s3.bucket}/{key}?" in target["url"], target["url"]
        n = target["part_number"]
        response = requests.put(
            target["url"], data=content[(n - 1) * 5 * MIB : n * 5 * MIB], timeout=60
        )
        parts.append({"part_number": n, "etag": response.headers["ETag"]})
    done = api.post(f"{UPLOADS}/{upload['id']}/complete", {"parts": parts})
    assert done.status_code == 200, done.content
    assert s3.client.head_object(Bucket=s3.bucket, Key=key)["ContentLength"] == len(content)
    assert FileRecord.objects.get(pk=upload["id"]).storage_key == key
    assert derived == [key]


def test_client_path_segments_and_extensions_never_reach_storage_key(
    user: Any, local_disk: None
) -> None:
    api = ApiClient(user)
    content = content_of(3000)
    for name in ("../../etc/passwd.exe", "..\\..\\boot.ini", "a/b/c.tar.gz", "evil\x00.php"):
        upload = initiate(api, len(content), file_name=name, file_content_type="image/png")
        done = api.post(f"{UPLOADS}/{upload['id']}/complete", {"parts": put(api, upload, content)})
        assert done.status_code == 200, done.content
        record = FileRecord.objects.get(pk=upload["id"])
        assert KEY.fullmatch(record.storage_key), record.storage_key
        assert record.storage_key.endswith(record.pk.hex)
        assert "/" not in record.file_name and "\\" not in record.file_name
        assert (Path(django_settings.MEDIA_ROOT) / record.storage_key).read_bytes() == content
    assert not list(Path(django_settings.MEDIA_ROOT).rglob("*.exe"))


# --- Complete, verification, state ----------------------------------------------------------


def test_failed_status_not_rolled_back_with_the_exception(user: Any, local_disk: None) -> None:
    api = ApiClient(user)
    content = content_of(2500)
    upload = initiate(api, len(content))
    parts = put(api, upload, content)
    listed = [CompletedPart(p["part_number"], p["etag"]) for p in parts]
    # The store lost the upload: it can never complete.
    shutil.rmtree(parts_dir(upload))

    with pytest.raises(VerificationFailed):
        completion.upload_complete(user=user, file_id=upload["id"], parts=listed)

    # Read back on a fresh query: the failed state was committed before the exception left.
    record = FileRecord.objects.get(pk=upload["id"])
    assert record.upload_status == Status.FAILED
    assert record.failure_reason == "The upload no longer exists in the store."


def test_abort_of_completed_file_refused(user: Any, local_disk: None) -> None:
    api = ApiClient(user)
    done = api.upload(content_of(1500), part_size=PART)
    with pytest.raises(InvalidTransition):
        services.upload_abort(user=user, file_id=done["id"])
    response = api.delete(f"{UPLOADS}/{done['id']}")
    assert response.status_code == 409
    assert response.json()["code"] == "invalid_state"
    record = FileRecord.objects.get(pk=done["id"])
    assert record.upload_status == Status.COMPLETED
    assert stored(record.storage_key)


def test_local_complete_does_not_skip_missing_parts(user: Any, local_disk: None) -> None:
    api = ApiClient(user)
    content = content_of(2500)
    upload = initiate(api, len(content))
    parts = put(api, upload, content, skip=(2,))

    # The handler itself refuses to complete around a hole ...
    handler = get_storage_handler()
    assert isinstance(handler, LocalStorageHandler)
    record = FileRecord.objects.get(pk=upload["id"])
    multipart = MultipartUpload(str(record.pk), record.storage_key, record.upload_id)
    with pytest.raises(PartsRejected):
        handler.complete(
            multipart, [CompletedPart(p["part_number"], p["etag"]) for p in parts],
            content_type="application/octet-stream",
        )  # fmt: skip
    assert not stored(record.storage_key)

    # ... and the service names the missing part, keeping the upload open for it.
    response = api.post(f"{UPLOADS}/{upload['id']}/complete", {"parts": parts})
    assert response.status_code == 400
    assert response.json()["code"] == "parts_mismatch"
    assert response.json()["extra"]["parts"] == [2]
    assert FileRecord.objects.get(pk=upload["id"]).upload_status == Status.UPLOADING
    assert not stored(record.storage_key)


def test_local_complete_checks_etags(user: Any, local_disk: None) -> None:
    api = ApiClient(user)
    content = content_of(2500)
    upload = initiate(api, len(content))
    parts = put(api, upload, content)
    parts[1]["etag"] = parts[0]["etag"]

    response = api.post(f"{UPLOADS}/{upload['id']}/complete", {"parts": parts})

    assert response.status_code == 400
    assert response.json()["code"] == "parts_mismatch"
    assert response.json()["extra"]["parts"] == [2]
    record = FileRecord.objects.get(pk=upload["id"])
    assert record.upload_status == Status.UPLOADING
    assert not stored(record.storage_key)


def test_local_complete_checks_part_sizes(user: Any, local_disk: None) -> None:
    api = ApiClient(user)
    content = content_of(2500)
    upload = initiate(api, len(content))
    # A last part a byte short never reaches the store ...
    short = api.put_part(upload["presigned_urls"][2]["url"], content[2 * PART : -1])
    assert short.status_code == 400
    parts = put(api, upload, content)
    # ... and one already there (stored before sizes were checked at the PUT) is named at complete.
    short = content[2 * PART : -1]
    digest = hashlib.md5(short, usedforsecurity=False).hexdigest()
    # A part record as the local store writes one: a link naming a file of the part's bytes.
    record = f"00003.{time.time_ns():x}.{2 * PART}.{len(short)}.{digest}..s"
    (parts_dir(upload) / record).write_bytes(short)
    (parts_dir(upload) / "00003").unlink()
    (parts_dir(upload) / "00003").symlink_to(record)
    parts[2]["etag"] = digest

    response = api.post(f"{UPLOADS}/{upload['id']}/complete", {"parts": parts})

    assert response.status_code == 400
    assert response.json()["code"] == "parts_mismatch"
    assert response.json()["extra"]["parts"] == [3]
    record = FileRecord.objects.get(pk=upload["id"])
    assert record.upload_status == Status.UPLOADING
    assert not stored(record.storage_key)
    # Each part of its planned size is what makes the total: no other sum to check.
    record.total_parts, record.file_size = 2, 2 * PART - 1
    held = [StoredPart(1, PART, "e"), StoredPart(2, PART, "f")]
    wrong = completion.mismatched_parts(
        record, [CompletedPart(1, "e"), CompletedPart(2, "f")], held
    )
    assert wrong == [2]


def test_part_size_is_checked(user: Any, local_disk: None, settings: Any) -> None:
    api = ApiClient(user)
    # At initiate: below the minimum for a multi-part file, or above S3's 5 GiB.
    settings.UPLOADS_MIN_PART_SIZE = 5 * MIB
    small = api.post(UPLOADS, {"file_name": "a", "file_size": 10 * MIB, "part_size": 5 * MIB - 1})
    assert small.status_code == 400 and small.json()["extra"]["field"] == "part_size"
    huge = api.post(
        UPLOADS, {"file_name": "a", "file_size": 10 * MIB, "part_size": 5 * 1024**3 + 1}
    )
    assert huge.status_code == 400 and huge.json()["extra"]["field"] == "part_size"
    settings.UPLOADS_MIN_PART_SIZE = PART

    # At the PUT: a body larger than its part is refused before it is stored.
    content = content_of(2500)
    upload = initiate(api, len(content))
    too_big = api.put_part(upload["presigned_urls"][0]["url"], content[: PART + 1])
    assert too_big.status_code == 413
    # So is a non-last part shorter than part_size.
    too_short = api.put_part(upload["presigned_urls"][0]["url"], content[: PART - 1])
    assert too_short.status_code == 400
    assert too_short.json()["detail"] == (
        "Part 1 must be exactly 1.0 KiB (1,024 bytes); this request sends 1,023 bytes. "
        "Nothing was stored."
    )


def test_file_size_is_64_bit(user: Any) -> None:
    field = FileRecord._meta.get_field("file_size")
    assert isinstance(field, models.BigIntegerField)
    for size in (2**40, 6 * TIB, 2**63 - 1):
        record = FileRecordFactory(created_by=user, file_size=size)
        assert FileRecord.objects.get(pk=record.pk).file_size == size
    assert FileRecord.objects.filter(file_size__gt=2**40).count() == 2


def test_size_upper_bound_enforced_in_service_not_only_serializer(
    user: Any, local_disk: None, settings: Any
) -> None:
    settings.MAX_FILE_UPLOAD_SIZE = 10 * MIB
    with pytest.raises(UploadTooLarge) as refused:
        services.upload_initiate(user=user, file_name="big.bin", file_size=10 * MIB + 1)
    assert refused.value.extra == {"max_file_size": 10 * MIB}
    # Even S3's own ceiling holds when the setting is set above it.
    settings.MAX_FILE_UPLOAD_SIZE = 10 * TIB
    with pytest.raises(UploadTooLarge):
        services.upload_initiate(user=user, file_name="big.bin", file_size=6 * TIB)
    assert not FileRecord.objects.exists()


def test_true_is_not_part_number_one(user: Any, local_disk: None) -> None:
    api = ApiClient(user)
    content = content_of(900)  # one part
    upload = initiate(api, len(content))
    parts = put(api, upload, content)

    as_json = api.post(
        f"{UPLOADS}/{upload['id']}/complete",
        {"parts": [{"part_number": True, "etag": parts[0]["etag"]}]},
    )
    assert as_json.status_code == 422
    with pytest.raises(InvalidInput):
        completion.upload_complete(
            user=user, file_id=upload["id"], parts=[CompletedPart(True, parts[0]["etag"])]
        )
    with pytest.raises(InvalidInput):
        services.upload_presign(user=user, file_id=upload["id"], part_numbers=[True])
    presign = api.post(f"{UPLOADS}/{upload['id']}/presign", {"part_numbers": [True]})
    assert presign.status_code == 422
    with pytest.raises(InvalidInput):
        rules.plan_parts(file_size=10, num_parts=True)
    assert FileRecord.objects.get(pk=upload["id"]).upload_status == Status.UPLOADING
    # The real part 1 still completes it.
    assert api.post(f"{UPLOADS}/{upload['id']}/complete", {"parts": parts}).status_code == 200


def test_empty_status_filter_does_not_disable_filter(user: Any) -> None:
    FileRecordFactory(created_by=user)
    FileRecordFactory(created_by=user, upload_status=Status.UPLOADING)
    FileRecordFactory(created_by=user, upload_status=Status.FAILED)
    api = ApiClient(user)

    empty = api.get("/v1/files?status=")
    assert empty.status_code == 400, empty.content
    assert empty.json()["extra"]["field"] == "status"
    default = api.get("/v1/files").json()
    assert [row["upload_status"] for row in default["results"]] == ["completed"]
    listed = file_list_for_user(user=user, status=None)
    assert set(listed.values_list("upload_status", flat=True)) == {"completed"}
    with pytest.raises(InvalidInput):
        file_list_for_user(user=user, status="")


def test_cleanup_does_not_race_complete(
    user: Any, local_disk: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The interleaving, made deterministic at the service seam: complete has stored the object,
    cleanup then aborts the expired row, and complete's final locked check must see that, delete
    the object and answer 409 — never a completed record without its bytes, nor bytes kept for
    an aborted one. (tests/postgres/test_cleanup_race.py runs the real race on PostgreSQL.)"""
    api = ApiClient(user)
    content = content_of(2500)
    upload = initiate(api, len(content))
    parts = put(api, upload, content)
    FileRecord.objects.filter(pk=upload["id"]).update(
        upload_expires_at=timezone.now() - timedelta(seconds=1)
    )
    real_complete = LocalStorageHandler.complete
    cleanups: list[Any] = []

    def complete_then_cleanup(self: LocalStorageHandler, *args: Any, **kwargs: Any) -> Any:
        info = real_complete(self, *args, **kwargs)
        cleanups.append(cleanup.cleanup_expired_uploads())  # lands between store and lock
        return info

    monkeypatch.setattr(LocalStorageHandler, "complete", complete_then_cleanup)

    response = api.post(f"{UPLOADS}/{upload['id']}/complete", {"parts": parts})

    assert len(cleanups) == 1 and cleanups[0].aborted == 1
    assert response.status_code == 409, response.content
    assert response.json()["code"] == "invalid_state"
    record = FileRecord.objects.get(pk=upload["id"])
    assert record.upload_status == Status.ABORTED
    assert not stored(record.storage_key)
    assert not parts_dir(upload).exists()


def test_deleting_in_flight_upload_aborts_multipart(s3: Any, user: Any) -> None:
    api = ApiClient(user)
    content = content_of(5 * MIB + 10)
    upload = initiate(api, len(content), part_size=5 * MIB)
    first = upload["presigned_urls"][0]["url"]
    assert requests.put(first, data=content[: 5 * MIB], timeout=60).status_code == 200
    listed = s3.client.list_multipart_uploads(Bucket=s3.bucket).get("Uploads", [])
    assert [item["UploadId"] for item in listed] == [upload["upload_id"]]

    response = api.delete(f"/v1/files/{upload['id']}")

    assert response.status_code == 204
    assert s3.client.list_multipart_uploads(Bucket=s3.bucket).get("Uploads", []) == []
    assert not FileRecord.objects.visible().filter(pk=upload["id"]).exists()


def test_parent_attach_checks_policy(user: Any, settings: Any) -> None:
    settings.UPLOADS_PARENT_MODELS = ["testapp.post"]
    post = Post.objects.create(title="p")
    comment = Comment.objects.create(post=post, body="c")
    file = FileRecordFactory(created_by=user)
    api = ApiClient(user)
    url = f"/v1/files/{file.pk}/set-parent"

    for parent_type, object_id in [
        ("testapp.comment", comment.pk),  # a real model, not allowed by the setting
        ("auth.user", user.pk),  # never attach files to users unless configured
        ("testapp.post", 999_999),  # allowed type, no such object
        ("nosuch.model", 1),
    ]:
        refused = api.post(url, {"parent_content_type": parent_type, "parent_object_id": object_id})
        assert refused.status_code == 400, (parent_type, refused.content)
    initiate_refused = api.post(
        UPLOADS, {"file_name": "a", "file_size": 5, "parent_content_type": "testapp.comment",
                  "parent_object_id": comment.pk},
    )  # fmt: skip
    assert initiate_refused.status_code == 400
    assert FileRecord.objects.get(pk=file.pk).parent_content_type is None

    allowed = api.post(url, {"parent_content_type": "testapp.post", "parent_object_id": post.pk})
    assert allowed.status_code == 200, allowed.content
    assert allowed.json()["parent_content_type"] == "testapp.post"
    assert allowed.json()["parent_object_id"] == str(post.pk)


def test_storage_exception_text_not_returned(
    s3: Any, user: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "AccessDenied for arn:aws:iam::123456789012:role/uploader on bucket internal-x"
    real = BaseClient._make_api_call

    def failing(self: Any, operation: str, params: Any) -> Any:
        if operation == "CreateMultipartUpload":
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": secret}}, operation)
        return real(self, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", failing)
    with caplog.at_level(logging.WARNING):
        response = ApiClient(user).post(UPLOADS, {"file_name": "a.bin", "file_size": 10})

    assert response.status_code == 503
    body = response.json()
    assert body["code"] == "storage_unavailable"
    for leak in (secret, "AccessDenied", "arn:aws", s3.bucket, "CreateMultipartUpload", "botocore"):
        assert leak not in response.content.decode(), leak
    assert secret in caplog.text  # the operator still learns why
    assert not FileRecord.objects.exists()


def test_patch_cannot_change_file_name_or_content_type(user: Any) -> None:
    file = FileRecordFactory(
        created_by=user, file_name="x.pdf", file_content_type="application/pdf"
    )
    api = ApiClient(user)
    for change in ({"file_name": "x.exe"}, {"file_content_type": "text/html"},
                   {"name": "ok", "file_name": "x.exe"}, {"file_size": 1},
                   {"upload_status": "completed"}):  # fmt: skip
        response = api.patch(f"/v1/files/{file.pk}", change)
        assert response.status_code == 422, (change, response.content)
    with pytest.raises(InvalidInput):
        files.file_update(user=user, file_id=file.pk, file_name="x.exe")
    record = FileRecord.objects.get(pk=file.pk)
    assert (record.file_name, record.file_content_type, record.name) == (
        "x.pdf", "application/pdf", file.name,
    )  # fmt: skip
