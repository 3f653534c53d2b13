"""Cleanup of abandoned uploads: expired ones aborted, old failures deleted, the store reconciled.

Batched: each batch is one locked select and one update; the store calls of a batch run in a
bounded thread pool; one failing call is logged and counted while the rest go on. Each run has
a time budget and simply continues next time (the queries select what is still left to do).

Race-safe against completion: a batch takes its rows with `select_for_update(skip_locked=True)`
and re-checks the state in the same query, marks them aborted, commits, and only then calls the
store. A completion that was storing the object meanwhile finds the row aborted when it locks it
and deletes what it stored, so a file ends completed with its bytes or aborted with nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from uploads.models import FileRecord
from uploads.storage import StorageError, get_storage_handler
from uploads.storage.base import MultipartUpload, StorageHandler

logger = logging.getLogger(__name__)
Status = FileRecord.Status

BATCH_SIZE = 500
STORE_WORKERS = 8
TIME_BUDGET_SECONDS = 300
# An aborted row whose store abort failed is retried after this pause.
RETRY_AFTER = timedelta(minutes=5)

Progress = Callable[[int], None]


@dataclass
class CleanupResult:
    examined: int = 0
    aborted: int = 0
    deleted: int = 0
    errors: int = 0
    finished: bool = True

    def as_dict(self) -> dict[str, int | bool]:
        return asdict(self)


def _abort_all(
    handler: StorageHandler, uploads: Iterable[MultipartUpload], workers: int
) -> tuple[list[str], int]:
    """Abort uploads in the store concurrently; return the file ids done and the error count."""

    def abort(upload: MultipartUpload) -> str | None:
        try:
            handler.abort(upload)
        except StorageError:
            logger.exception("cleanup: could not abort upload %s", upload.upload_id)
            return None
        return upload.file_id

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(pool.map(abort, uploads))
    done = [file_id for file_id in results if file_id is not None]
    return done, len(results) - len(done)


def _uploads(rows: Iterable[tuple[object, str, str]]) -> list[MultipartUpload]:
    return [
        MultipartUpload(file_id=str(pk), key=key, upload_id=upload_id)
        for pk, key, upload_id in rows
        if upload_id
    ]


def cleanup_expired_uploads(
    *,
    batch_size: int = BATCH_SIZE,
    workers: int = STORE_WORKERS,
    time_budget: float = TIME_BUDGET_SECONDS,
    now: datetime | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> CleanupResult:
    """Abort uploads still pending/uploading past `upload_expires_at`, in the store and here."""
    now = now or timezone.now()
    deadline = time.monotonic() + time_budget
    handler = get_storage_handler()
    result = CleanupResult()
    expired = FileRecord.objects.filter(
        upload_status__in=FileRecord.OPEN_STATES, upload_expires_at__lt=now
    )
    if dry_run:
        # What a real run would do now: every expired row would be aborted.
        result.examined = result.aborted = expired.count()
        return result
    while True:
        if time.monotonic() > deadline:
            result.finished = False
            break
        with transaction.atomic():
            rows = list(
                expired.select_for_update(skip_locked=True)
                .order_by("upload_expires_at")
                .values_list("pk", "file", "upload_id")[:batch_size]
            )
            if not rows:
                break
            FileRecord.objects.filter(
                pk__in=[row[0] for row in rows], upload_status__in=FileRecord.OPEN_STATES
            ).update(
                upload_status=Status.ABORTED,
                failure_reason="Expired before it was completed.",
                modified=now,
            )
        result.examined += len(rows)
        result.aborted += len(rows)
        _abort_in_store(handler, rows, workers, result)
        if progress:
            progress(len(rows))
    # Rows whose store abort failed earlier (here, or in an API abort) keep their upload id.
    _retry_store_aborts(handler, now, workers, result, deadline, batch_size)
    return result


def _abort_in_store(
    handler: StorageHandler,
    rows: list[tuple[object, str, str]],
    workers: int,
    result: CleanupResult,
) -> None:
    done, errors = _abort_all(handler, _uploads(rows), workers)
    result.errors += errors
    without_upload = [row[0] for row in rows if not row[2]]
    FileRecord.objects.filter(pk__in=[*done, *without_upload]).update(upload_id="")


def _retry_store_aborts(
    handler: StorageHandler,
    now: datetime,
    workers: int,
    result: CleanupResult,
    deadline: float,
    batch_size: int = BATCH_SIZE,
) -> None:
    stale = FileRecord.objects.filter(
        upload_status__in=[Status.ABORTED, Status.FAILED], modified__lt=now - RETRY_AFTER
    ).exclude(upload_id="")
    last_pk = None
    while time.monotonic() <= deadline:
        page = stale.order_by("pk")
        if last_pk is not None:
            page = page.filter(pk__gt=last_pk)
        rows = list(page.values_list("pk", "file", "upload_id")[:batch_size])
        if not rows:
            return
        last_pk = rows[-1][0]
        result.examined += len(rows)
        _abort_in_store(handler, rows, workers, result)
    result.finished = False


def cleanup_failed_uploads(
    days_old: int = 7,
    *,
    batch_size: int = BATCH_SIZE,
    workers: int = STORE_WORKERS,
    time_budget: float = TIME_BUDGET_SECONDS,
    now: datetime | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> CleanupResult:
    """Delete failed and aborted records older than `days_old`, with any parts left in the store."""
    now = now or timezone.now()
    deadline = time.monotonic() + time_budget
    handler = get_storage_handler()
    result = CleanupResult()
    old = FileRecord.objects.filter(
        upload_status__in=[Status.FAILED, Status.ABORTED],
        modified__lt=now - timedelta(days=days_old),
    )
    if dry_run:
        result.examined = result.deleted = old.count()
        return result
    # Keyset paging: a row whose parts could not be removed stays behind the cursor, so it is
    # tried once per run instead of again in every batch that follows.
    after: tuple[datetime, object] | None = None
    while True:
        if time.monotonic() > deadline:
            result.finished = False
            break
        page = old.order_by("modified", "pk")
        if after is not None:
            page = page.filter(Q(modified__gt=after[0]) | Q(modified=after[0], pk__gt=after[1]))
        keyed = list(page.values_list("modified", "pk", "file", "upload_id")[:batch_size])
        if not keyed:
            break
        after = (keyed[-1][0], keyed[-1][1])
        rows = [row[1:] for row in keyed]
        result.examined += len(rows)
        done, errors = _abort_all(handler, _uploads(rows), workers)
        result.errors += errors
        # Keep rows whose parts could not be removed: deleting them would orphan the parts.
        deletable = {*done, *(str(row[0]) for row in rows if not row[2])}
        deleted, _ = FileRecord.objects.filter(pk__in=deletable).delete()
        result.deleted += deleted
        if progress:
            progress(len(rows))
        if errors == len(rows):
            # Nothing could be cleaned in this batch: the store is down; try next run.
            result.finished = False
            break
    return result


def reconcile_storage(
    *,
    older_than: timedelta | None = None,
    workers: int = STORE_WORKERS,
    now: datetime | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> CleanupResult:
    """Abort multipart uploads the store holds but no open record knows, once they are old.

    This is what stops silent storage bills: parts of uploads whose record was lost (a crash
    between the store's initiate and our commit, a restored database, a deleted row).
    """
    now = now or timezone.now()
    if older_than is None:
        older_than = timedelta(seconds=settings.UPLOADS_EXPIRATION_SECONDS)
    cutoff = now - older_than
    handler = get_storage_handler()
    result = CleanupResult()
    batch: list[MultipartUpload] = []

    def flush() -> None:
        ids = [upload.upload_id for upload in batch]
        known = set(
            FileRecord.objects.filter(
                upload_id__in=ids, upload_status__in=FileRecord.OPEN_STATES
            ).values_list("upload_id", flat=True)
        )
        orphans = [upload for upload in batch if upload.upload_id not in known]
        result.examined += len(batch)
        if orphans and not dry_run:
            done, errors = _abort_all(handler, orphans, workers)
            result.aborted += len(done)
            result.errors += errors
        elif dry_run:
            result.aborted += len(orphans)
        if progress:
            progress(len(batch))
        batch.clear()

    try:
        for stored in handler.list_uploads(initiated_before=cutoff):
            batch.append(stored)
            if len(batch) >= BATCH_SIZE:
                flush()
    except StorageError:
        logger.exception("reconcile: listing the store's uploads failed")
        result.errors += 1
        result.finished = False
    if batch:
        flush()
    return result
