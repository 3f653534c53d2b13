"""File operations on an uploaded file: edit, attach, download, delete, restore, purge."""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from uploads.errors import (
    InvalidInput,
    InvalidTransition,
    UploadNotFound,
)
from uploads.models import FileRecord
from uploads.services.cleanup import claim_for_purge, purge_from_store
from uploads.services.parents import resolve_parent
from uploads.services.rules import clean_description, clean_display_name
from uploads.services.shared import (
    User,
    abort_quietly,
    actor,
    locked,
    move,
    multipart,
    storage_failure,
)
from uploads.storage import StorageError, get_storage_handler

logger = logging.getLogger(__name__)

Status = FileRecord.Status


def file_delete(*, user: User, file_id: UUID | str) -> None:
    """Hide the file at once; its bytes stay (and count toward the quota) until purged.

    An upload still in flight is aborted: its parts go now, and a completion under way finds
    the row ended and removes whatever it stored.
    """
    with transaction.atomic():
        record = locked(user, file_id)
        record.deleted_at = timezone.now()
        record.save(update_fields=["deleted_at", "modified"])
        in_flight = move(record, Status.ABORTED, failure_reason="Deleted before it was completed.")
    # No lock across the store call. If the abort fails, the row keeps its upload id and
    # cleanup retries it: the delete itself is done.
    if in_flight and abort_quietly(get_storage_handler(), multipart(record)):
        FileRecord.objects.filter(pk=record.pk).update(upload_id="")
    logger.info("%s deleted file %s (%s)", actor(user), record.pk, record.file_name)


def _locked_deleted(user: User, file_id: UUID | str, action: str) -> FileRecord:
    """Staff only: the deleted file's row, locked. Call inside a transaction."""
    # Anyone else learns nothing, not even that the id exists.
    if not getattr(user, "is_staff", False):
        raise UploadNotFound()
    record = locked(user, file_id, deleted_ok=True)
    if not record.deleted_at:
        raise InvalidTransition(f"Only deleted files can be {action}; this one is not deleted.")
    return record


def file_restore(*, user: User, file_id: UUID | str) -> FileRecord:
    """Staff: bring a deleted file back before its purge."""
    with transaction.atomic():
        record = _locked_deleted(user, file_id, "restored")
        # A purge under way marks the row aborted first: its bytes may be gone already.
        if record.upload_status != Status.COMPLETED:
            raise InvalidTransition(
                f"Only completed files can be restored; this one is {record.upload_status}.",
                {"upload_status": record.upload_status},
            )
        record.deleted_at = None
        record.save(update_fields=["deleted_at", "modified"])
    logger.info("%s restored file %s (%s)", actor(user), record.pk, record.file_name)
    return record


def file_purge(*, user: User, file_id: UUID | str) -> None:
    """Staff: remove a deleted file's bytes and record now, before its retention ends."""
    with transaction.atomic():
        record = _locked_deleted(user, file_id, "purged")
        claim_for_purge([record.pk], timezone.now())
    try:
        purge_from_store(get_storage_handler(), record.storage_key, record.upload_id)
    except StorageError as exc:
        # The row stays deleted (and can no longer be restored); purging again finishes it.
        raise storage_failure(exc) from exc
    FileRecord.objects.deleted().filter(pk=record.pk).delete()
    logger.info("%s purged file %s (%s)", actor(user), record.pk, record.file_name)


def file_update(*, user: User, file_id: UUID | str, **changes: Any) -> FileRecord:
    unknown = set(changes) - {"name", "description"}
    if unknown:
        raise InvalidInput(f"Only name and description can be changed, not {sorted(unknown)}.")
    with transaction.atomic():
        record = locked(user, file_id)
        if changes.get("name") is not None:
            name = clean_display_name(changes["name"])
            if not name:
                raise InvalidInput("name cannot be empty.", {"field": "name"})
            record.name = name
        if changes.get("description") is not None:
            record.description = clean_description(changes["description"])
        record.save(update_fields=["name", "description", "modified"])
    return record


def file_set_parent(
    *, user: User, file_id: UUID | str, parent_content_type: str | None, parent_object_id: object
) -> FileRecord:
    content_type, object_id = resolve_parent(user, parent_content_type, parent_object_id)
    with transaction.atomic():
        record = locked(user, file_id)
        record.parent_content_type = content_type
        record.parent_object_id = object_id
        record.save(update_fields=["parent_content_type", "parent_object_id", "modified"])
    return record


def file_download_url(*, user: User, file_id: UUID | str) -> str:
    queryset = FileRecord.objects.visible_to(user)
    try:
        record = queryset.get(pk=file_id)
    except (FileRecord.DoesNotExist, ValidationError, ValueError) as exc:
        raise UploadNotFound() from exc
    if record.upload_status != Status.COMPLETED:
        raise InvalidTransition(
            f"This file is {record.upload_status}; only completed files can be downloaded.",
            {"upload_status": record.upload_status},
        )
    try:
        return get_storage_handler().download_url(
            record.storage_key,
            file_name=record.file_name,
            expires_in=settings.UPLOADS_DOWNLOAD_URL_EXPIRATION,
        )
    except StorageError as exc:
        raise storage_failure(exc) from exc
