"""Reads. Users' queries go through `FileRecord.objects.visible_to`, which holds the access rule."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import Lower, TruncDate
from django.utils import timezone

from .errors import InvalidInput, UploadNotFound
from .models import FileRecord, expired_q
from .storage import StorageError, get_storage_handler
from .storage.base import MultipartUpload

STATUS_ALL = "all"
# Sort keys the portal offers, each with a unique tie-breaker so pages never overlap.
ORDERINGS: dict[str, tuple[Any, ...]] = {
    "-created": ("-created", "-pk"),
    "created": ("created", "pk"),
    # Case-insensitive, as people read names ("alpha" before "Beta").
    "name": (Lower("name"), "pk"),
    "-name": (Lower("name").desc(), "-pk"),
    "-file_size": ("-file_size", "-pk"),
    "file_size": ("file_size", "pk"),
    "upload_status": ("upload_status", "-created", "-pk"),
}


def file_get_for_user(*, user: AbstractBaseUser | AnonymousUser, file_id: UUID | str) -> FileRecord:
    try:
        return FileRecord.objects.visible_to(user).get(pk=file_id)
    except (FileRecord.DoesNotExist, ValidationError, ValueError) as exc:
        # The owner may come back to a file they deleted (Back, a bookmark): say it is gone.
        # Anyone else learns nothing, not even that the id exists.
        gone = None
        if isinstance(exc, FileRecord.DoesNotExist):
            own = FileRecord.objects.visible_to(user, staff_ok=False, deleted_ok=True)
            gone = own.deleted().filter(pk=file_id).first()
        if gone is not None:
            raise UploadNotFound(f"“{gone.name or gone.file_name}” was deleted.") from exc
        raise UploadNotFound() from exc


def file_list_for_user(
    *,
    user: AbstractBaseUser | AnonymousUser,
    status: str | None = FileRecord.Status.COMPLETED,
    parent_content_type: str | None = None,
    parent_object_id: str | None = None,
    search: str = "",
    ordering: str = "-created",
    owner_only: bool = False,
) -> QuerySet[FileRecord]:
    queryset = FileRecord.objects.visible_to(user, staff_ok=not owner_only)
    # An empty `?status=` must not silently turn the filter off.
    if status is None:
        status = FileRecord.Status.COMPLETED
    if status != STATUS_ALL:
        if status not in FileRecord.Status.values:
            choices = ", ".join([*FileRecord.Status.values, STATUS_ALL])
            raise InvalidInput(f"status must be one of: {choices}.", {"field": "status"})
        queryset = queryset.filter(upload_status=status)
    if parent_content_type is not None:
        app_label, _, model = parent_content_type.strip().lower().partition(".")
        # NUL never names a model, and PostgreSQL would fail the query on it (a 500).
        if not app_label or not model or "\x00" in parent_content_type:
            raise InvalidInput(
                "parent_content_type must look like 'app_label.model'.",
                {"field": "parent_content_type"},
            )
        queryset = queryset.filter(
            parent_content_type__app_label=app_label, parent_content_type__model=model
        )
    if parent_object_id is not None:
        if "\x00" in parent_object_id:
            raise InvalidInput("parent_object_id is not a valid id.", {"field": "parent_object_id"})
        queryset = queryset.filter(parent_object_id=parent_object_id.strip())
    if search.strip():
        term = search.strip()
        queryset = queryset.filter(Q(name__icontains=term) | Q(file_name__icontains=term))
    if ordering not in ORDERINGS:
        raise InvalidInput(
            f"ordering must be one of: {', '.join(ORDERINGS)}.", {"field": "ordering"}
        )
    return queryset.order_by(*ORDERINGS[ordering])


# --- Staff dashboard ------------------------------------------------------------------------


@dataclass(frozen=True)
class StaffFilters:
    user: str = ""
    status: str = STATUS_ALL
    content_type: str = ""
    parent_type: str = ""
    created_from: date | None = None
    created_to: date | None = None
    search: str = ""
    ordering: str = "-created"
    stale: bool = False
    failed_since: datetime | None = None
    # Deleted files awaiting their purge instead of the live ones.
    deleted: bool = False


def staff_file_list(filters: StaffFilters) -> QuerySet[FileRecord]:
    """Everyone's files, filtered for the staff table. Two queries per page: count and rows."""
    records = FileRecord.objects.deleted() if filters.deleted else FileRecord.objects.visible()
    queryset = records.select_related("created_by", "parent_content_type")
    if filters.user:
        queryset = queryset.filter(created_by__username=filters.user)
    if filters.status and filters.status != STATUS_ALL:
        queryset = queryset.filter(upload_status=filters.status)
    if filters.content_type:
        term = filters.content_type.strip().lower()
        # "image/*" matches a family; anything else matches exactly.
        if term.endswith("/*"):
            queryset = queryset.filter(file_content_type__startswith=term[:-1])
        else:
            queryset = queryset.filter(file_content_type=term)
    if filters.parent_type:
        app_label, _, model = filters.parent_type.strip().lower().partition(".")
        queryset = queryset.filter(
            parent_content_type__app_label=app_label, parent_content_type__model=model
        )
    if filters.created_from:
        queryset = queryset.filter(created__date__gte=filters.created_from)
    if filters.created_to:
        queryset = queryset.filter(created__date__lte=filters.created_to)
    if filters.search.strip():
        term = filters.search.strip()
        queryset = queryset.filter(Q(name__icontains=term) | Q(file_name__icontains=term))
    if filters.stale:
        queryset = queryset.expired(timezone.now())
    if filters.failed_since:
        queryset = queryset.filter(
            upload_status=FileRecord.Status.FAILED, modified__gte=filters.failed_since
        )
    return queryset.order_by(*ORDERINGS.get(filters.ordering, ORDERINGS["-created"]))


@dataclass(frozen=True)
class DashboardStats:
    by_status: dict[str, dict[str, int]]
    in_flight: int
    stale: int
    failed_24h: int
    top_users: Sequence[Mapping[str, Any]]
    per_day: list[tuple[date, int]]
    # Deleted files whose bytes are still stored, awaiting their purge.
    deleted: dict[str, int]

    @property
    def total_files(self) -> int:
        return sum(row["count"] for row in self.by_status.values())

    @property
    def total_bytes(self) -> int:
        return sum(row["bytes"] for row in self.by_status.values())


def dashboard_stats(*, now: datetime | None = None, days: int = 30) -> DashboardStats:
    """The overview's figures in a fixed number of queries, whatever the row count."""
    now = now or timezone.now()
    rows = (
        FileRecord.objects.visible()
        .values("upload_status")
        .annotate(count=Count("pk"), bytes=Sum("file_size"))
    )
    by_status = {status: {"count": 0, "bytes": 0} for status in FileRecord.Status.values}
    for row in rows.order_by():
        by_status[row["upload_status"]] = {"count": row["count"], "bytes": row["bytes"] or 0}
    deleted = Q(deleted_at__isnull=False)
    kept = deleted & Q(upload_status=FileRecord.Status.COMPLETED)
    flags = FileRecord.objects.aggregate(
        deleted=Count("pk", filter=deleted),
        deleted_bytes=Sum("file_size", filter=kept, default=0),
        stale=Count("pk", filter=expired_q(now)),
        failed_24h=Count(
            "pk",
            filter=~deleted
            & Q(upload_status=FileRecord.Status.FAILED, modified__gte=now - timedelta(hours=24)),
        ),
    )
    top_users = list(
        FileRecord.objects.filter(upload_status=FileRecord.Status.COMPLETED)
        .values("created_by__username")
        .annotate(bytes=Sum("file_size"), count=Count("pk"))
        .order_by("-bytes")[:10]
    )
    start = (now - timedelta(days=days - 1)).date()
    counts = dict(
        FileRecord.objects.filter(created__date__gte=start)
        .annotate(day=TruncDate("created"))
        .values("day")
        .annotate(count=Count("pk"))
        .order_by()
        .values_list("day", "count")
    )
    days_shown = [start + timedelta(days=i) for i in range(days)]
    per_day = [(day, counts.get(day, 0)) for day in days_shown]
    in_flight = sum(by_status[s]["count"] for s in FileRecord.OPEN_STATES)
    return DashboardStats(
        by_status=by_status,
        in_flight=in_flight,
        stale=flags["stale"],
        failed_24h=flags["failed_24h"],
        top_users=top_users,
        per_day=per_day,
        deleted={"count": flags["deleted"], "bytes": flags["deleted_bytes"]},
    )


@dataclass(frozen=True)
class UploadProgress:
    parts_stored: int
    total_parts: int
    bytes_stored: int
    last_part_at: datetime | None
    stalled: bool
    unavailable: bool = False

    @property
    def percent(self) -> int:
        return int(100 * self.parts_stored / self.total_parts) if self.total_parts else 0


def upload_progress(records: list[FileRecord]) -> dict[str, UploadProgress]:
    """What the store holds for each in-flight upload, cached briefly so polling stays cheap."""
    handler = get_storage_handler()
    now = timezone.now()
    stall_after = timedelta(minutes=settings.UPLOADS_STALLED_MINUTES)
    result: dict[str, UploadProgress] = {}
    for record in records:
        if not record.is_open or not record.upload_id:
            continue
        key = f"uploads:progress:{record.pk}:{record.upload_id}"
        summary = cache.get(key)
        if summary is None:
            try:
                parts = handler.list_parts(
                    MultipartUpload(str(record.pk), record.storage_key, record.upload_id)
                )
            except StorageError:
                result[str(record.pk)] = UploadProgress(0, record.total_parts, 0, None, False, True)
                continue
            stamps = [p.last_modified for p in parts if p.last_modified is not None]
            summary = (len(parts), sum(p.size for p in parts), max(stamps) if stamps else None)
            cache.set(key, summary, settings.UPLOADS_PROGRESS_CACHE_SECONDS)
        count, size, last = summary
        active_since = last or record.created
        result[str(record.pk)] = UploadProgress(
            parts_stored=count,
            total_parts=record.total_parts,
            bytes_stored=size,
            last_part_at=last,
            stalled=now - active_since > stall_after,
        )
    return result


def upload_accepts_part(*, file_id: str, upload_id: str, part_number: int) -> bool:
    """Whether a part link still leads to an open upload that has this part."""
    if part_number < 1:
        return False
    # Asked on every part PUT: the database answers yes or no, no row comes back.
    try:
        return FileRecord.objects.filter(
            pk=file_id,
            upload_id=upload_id,
            upload_status__in=FileRecord.OPEN_STATES,
            total_parts__gte=part_number,
        ).exists()
    except (ValidationError, ValueError):
        return False
