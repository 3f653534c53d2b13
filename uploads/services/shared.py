"""What lifecycle and file operations share: the locked lookup with the access rule, the
actor named in logs, and the store's failures as a client hears them."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any
from uuid import UUID

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import ValidationError
from django.utils import timezone

from uploads.errors import (
    InsufficientStorage,
    InvalidTransition,
    StorageUnavailable,
    UploadNotFound,
)
from uploads.models import FileRecord
from uploads.storage import StorageError
from uploads.storage.base import (
    MultipartUpload,
    StorageBusy,
    StorageFull,
    StorageHandler,
    StorageMisconfigured,
)

logger = logging.getLogger(__name__)

User = AbstractBaseUser | AnonymousUser

# Seconds a client is told to wait (Retry-After) when the store is busy or unreachable.
STORAGE_RETRY_AFTER = 5


def locked(
    user: User, file_id: UUID | str, *, staff_ok: bool = True, deleted_ok: bool = False
) -> FileRecord:
    return find(user, file_id, staff_ok=staff_ok, deleted_ok=deleted_ok, for_update=True)


def find(
    user: User,
    file_id: UUID | str,
    *,
    staff_ok: bool = True,
    deleted_ok: bool = False,
    for_update: bool = False,
) -> FileRecord:
    """The file `user` may see (404 otherwise), row-locked with `for_update`."""
    queryset = FileRecord.objects.visible_to(user, staff_ok=staff_ok, deleted_ok=deleted_ok)
    if for_update:
        queryset = queryset.select_for_update(of=("self",))
    try:
        return queryset.get(pk=file_id)
    except (FileRecord.DoesNotExist, ValidationError, ValueError) as exc:
        raise UploadNotFound() from exc


def actor(user: User) -> str:
    name = user.get_username() if user.is_authenticated else "anonymous"
    return f"staff {name}" if getattr(user, "is_staff", False) else f"user {name}"


def multipart(record: FileRecord) -> MultipartUpload:
    return MultipartUpload(
        file_id=str(record.pk),
        key=record.storage_key,
        upload_id=record.upload_id,
        checksum_algorithm=record.checksum_algorithm,
    )


def storage_failure(exc: StorageError) -> StorageUnavailable | InsufficientStorage:
    """What a client hears when the store failed: 503 (507 when it is full), never blamed on
    the upload."""
    if isinstance(exc, StorageFull):
        logger.error("storage full: %s", exc, exc_info=exc)
        return InsufficientStorage()
    if isinstance(exc, StorageMisconfigured):
        # Every call to the store will fail the same way until someone fixes the settings.
        logger.error(
            "STORAGE MISCONFIGURED (credentials, bucket, region or clock): %s", exc, exc_info=exc
        )
        return StorageUnavailable(
            "The storage service refused this server's request (a server configuration "
            "problem, now logged). Please try again later."
        )
    if isinstance(exc, StorageBusy):
        logger.warning("storage busy or unreachable, client told to retry: %s", exc)
        return StorageUnavailable(retry_after=STORAGE_RETRY_AFTER)
    logger.error("storage call failed (%s): %s", exc.kind, exc, exc_info=exc)
    return StorageUnavailable()


def move(
    record: FileRecord, to: str, *, allowed: Iterable[str] | None = None, **changes: Any
) -> bool:
    """Move one file to status `to` if it is still in one of `allowed` (the open states by
    default), keeping `record` in step; see `FileRecordQuerySet.transition`."""
    changes.setdefault("modified", timezone.now())
    if not FileRecord.objects.filter(pk=record.pk).transition(to, allowed=allowed, **changes):
        return False
    record.upload_status = to
    for field, value in changes.items():
        setattr(record, field, value)
    return True


def require_open(record: FileRecord, action: str) -> None:
    if record.deleted_at:
        raise InvalidTransition(
            f"This upload was deleted; it can no longer be {action}.",
            {"upload_status": record.upload_status},
        )
    if not record.is_open:
        raise InvalidTransition(
            f"This upload is {record.upload_status}; it can no longer be {action}.",
            {"upload_status": record.upload_status},
        )


def abort_quietly(handler: StorageHandler, upload: MultipartUpload) -> bool:
    if not upload.upload_id:
        return True
    try:
        handler.abort(upload)
    except StorageError:
        logger.exception("could not abort upload %s; cleanup will retry", upload.upload_id)
        return False
    return True


def delete_object_quietly(handler: StorageHandler, key: str) -> None:
    try:
        handler.delete(key)
    except StorageError:
        logger.exception("could not delete %s; reconcile will find it", key)
