from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.contenttypes.fields import GenericForeignKey
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.db.models import Q
from django.utils import timezone

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser
    from django.contrib.auth.models import AnonymousUser


class FileRecordQuerySet(models.QuerySet["FileRecord"]):
    """Each filter on files, written once."""

    def visible(self) -> FileRecordQuerySet:
        """Files not deleted: everything users (and the API) may see."""
        return self.filter(deleted_at__isnull=True)

    def deleted(self) -> FileRecordQuerySet:
        """Deleted files whose bytes are kept until the retention period ends."""
        return self.filter(deleted_at__isnull=False)

    def visible_to(
        self,
        user: AbstractBaseUser | AnonymousUser,
        *,
        staff_ok: bool = True,
        deleted_ok: bool = False,
    ) -> FileRecordQuerySet:
        """Owners see their own files; staff see everyone's unless the action is owner-only.

        Deleted files are hidden (404) unless the caller asks for them to say why it refuses.
        """
        queryset = self.select_related("created_by", "parent_content_type")
        if not deleted_ok:
            queryset = queryset.visible()
        if not user.is_authenticated:
            return queryset.none()
        if staff_ok and getattr(user, "is_staff", False):
            return queryset
        return queryset.filter(created_by_id=user.pk)

    def open(self) -> FileRecordQuerySet:
        """Uploads that may still complete or be aborted."""
        return self.filter(upload_status__in=FileRecord.OPEN_STATES)

    def expired(self, now: datetime) -> FileRecordQuerySet:
        """Open uploads past their expiry: cleanup aborts them."""
        return self.filter(expired_q(now))

    def ended(self) -> FileRecordQuerySet:
        """Uploads that failed or were aborted."""
        return self.filter(upload_status__in=FileRecord.ENDED_STATES)

    def holding_quota(self) -> FileRecordQuerySet:
        """Files whose size counts toward their owner's quota: completed or still uploading."""
        return self.filter(upload_status__in=[FileRecord.Status.COMPLETED, *FileRecord.OPEN_STATES])

    def transition(self, to: str, *, allowed: Iterable[str] | None = None, **changes: Any) -> int:
        """Move the rows here still in one of the `allowed` states (the open ones by default) to
        `to`; return how many moved. Every status change goes through here.

        One UPDATE: the database locks each row, re-checks its status and moves it, so a row that
        another request has moved meanwhile is left alone.
        """
        states = FileRecord.OPEN_STATES if allowed is None else tuple(allowed)
        changes.setdefault("modified", timezone.now())
        return self.filter(upload_status__in=states).update(upload_status=to, **changes)


def expired_q(now: datetime) -> Q:
    """The `expired()` filter as a condition, for aggregates that count it."""
    return Q(upload_status__in=FileRecord.OPEN_STATES, upload_expires_at__lt=now)


class FileRecord(models.Model):
    """One file uploaded (or being uploaded) through a multipart upload."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        UPLOADING = "uploading", "Uploading"
        COMPLETED = "completed", "Completed"
        ABORTED = "aborted", "Aborted"
        FAILED = "failed", "Failed"

    # States from which an upload may still complete or be aborted.
    OPEN_STATES = (Status.PENDING, Status.UPLOADING)
    # States of an upload that ended without a file.
    ENDED_STATES = (Status.FAILED, Status.ABORTED)

    # A random id: the API's 404 for other people's files must not be guessable by counting.
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=255, blank=True)
    description = models.TextField(blank=True)
    file_name = models.CharField(max_length=255)
    file_size = models.BigIntegerField()
    file_content_type = models.CharField(max_length=255, default="application/octet-stream")
    # Holds the storage key from initiate on; the key is derived once and never from user input.
    file = models.FileField(max_length=1024, blank=True)
    upload_status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    upload_id = models.CharField(max_length=1024, blank=True)
    total_parts = models.PositiveIntegerField(default=1)
    part_size = models.BigIntegerField()
    uploaded_parts = models.PositiveIntegerField(default=0)
    upload_expires_at = models.DateTimeField(null=True, blank=True)
    etag = models.CharField(max_length=255, blank=True)
    # SHA-256 of the completed part list: a repeated complete with the same parts is a no-op.
    etag_digest = models.CharField(max_length=64, blank=True, editable=False)
    # Per-part checksums the store verifies ("SHA256" / "CRC32"), and the whole-object one.
    checksum_algorithm = models.CharField(max_length=16, blank=True)
    checksum = models.CharField(max_length=128, blank=True)
    failure_reason = models.TextField(blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    # Set while one request completes the upload; a second complete meanwhile answers 409.
    completing_since = models.DateTimeField(null=True, blank=True, editable=False)
    # Set by delete: the file is hidden at once, its bytes kept (and counted toward the owner's
    # quota) until cleanup purges them after UPLOADS_DELETED_RETENTION_DAYS.
    deleted_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="uploaded_files"
    )
    created = models.DateTimeField(auto_now_add=True)
    modified = models.DateTimeField(auto_now=True)

    parent_content_type = models.ForeignKey(
        ContentType, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Text, so that parents with integer and UUID primary keys both fit.
    parent_object_id = models.CharField(max_length=64, blank=True)
    parent = GenericForeignKey("parent_content_type", "parent_object_id")

    objects = FileRecordQuerySet.as_manager()

    class Meta:
        ordering = ["-created"]
        indexes = [
            models.Index(
                fields=["created_by", "upload_status", "-created"], name="file_owner_status"
            ),
            models.Index(fields=["upload_status", "-created"], name="file_status_created"),
            # The API's list with ?status=all, and the staff table, in their default order.
            models.Index(fields=["created_by", "-created", "-id"], name="file_owner_created"),
            models.Index(fields=["-created", "-id"], name="file_created"),
            models.Index(fields=["upload_status", "upload_expires_at"], name="file_status_expiry"),
            models.Index(fields=["parent_content_type", "parent_object_id"], name="file_parent"),
            # Cleanup of old failed/aborted rows pages through them by age.
            models.Index(fields=["upload_status", "modified"], name="file_status_modified"),
            # COUNT(*) of a user's live files (page-number listing) from the index alone.
            models.Index(
                fields=["created_by", "upload_status"],
                name="file_owner_live",
                condition=models.Q(deleted_at__isnull=True),
            ),
            # Purge pages through deleted rows by age; only the few deleted rows are indexed.
            models.Index(
                fields=["deleted_at"],
                name="file_deleted",
                condition=models.Q(deleted_at__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name or self.file_name} ({self.upload_status})"

    @property
    def storage_key(self) -> str:
        return self.file.name or ""

    @property
    def is_open(self) -> bool:
        return self.upload_status in self.OPEN_STATES

    def expected_part_size(self, part_number: int) -> int:
        """The exact byte count part `part_number` must have."""
        if part_number < self.total_parts:
            return self.part_size
        return self.file_size - (self.total_parts - 1) * self.part_size
