"""Cleanup of abandoned uploads: expired ones aborted, old failures deleted, deleted files purged
after their retention period, the store reconciled.

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
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from uuid import UUID

from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet
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
Row = tuple[UUID, str, str]
PURGED_REASON = "Deleted, and purged from the store."


@dataclass
class CleanupResult:
    examined: int = 0
    aborted: int = 0
    deleted: int = 0
    errors: int = 0
    finished: bool = True

    def as_dict(self) -> dict[str, int | bool]:
        return asdict(self)


def _in_store[T](
    work: Callable[[T], str | None], items: Iterable[T], workers: int
) -> tuple[list[str], int]:
    """Run `work` on each item concurrently; return the file ids it did and the error count."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(pool.map(work, items))
    done = [file_id for file_id in results if file_id is not None]
    return done, len(results) - len(done)


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

    return _in_store(abort, uploads, workers)


def _uploads(rows: Iterable[Row]) -> list[MultipartUpload]:
    return [
        MultipartUpload(file_id=str(pk), key=key, upload_id=upload_id)
        for pk, key, upload_id in rows
        if upload_id
    ]


def old_failures(now: datetime, days_old: int) -> QuerySet[FileRecord]:
    """Failed and aborted uploads older than `days_old`, which cleanup deletes.

    Deleted rows wait for their own retention period and purge (which also removes objects).
    """
    return FileRecord.objects.visible().ended().filter(modified__lt=now - timedelta(days=days_old))


def purge_due(now: datetime, retention_days: int | None = None) -> QuerySet[FileRecord]:
    """Deleted files past their retention period (UPLOADS_DELETED_RETENTION_DAYS by default)."""
    if retention_days is None:
        retention_days = settings.UPLOADS_DELETED_RETENTION_DAYS
    return FileRecord.objects.deleted().filter(deleted_at__lt=now - timedelta(days=retention_days))


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
    expired = FileRecord.objects.expired(now)
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
            FileRecord.objects.filter(pk__in=[row[0] for row in rows]).transition(
                Status.ABORTED, failure_reason="Expired before it was completed.", modified=now
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
    rows: Sequence[Row],
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
    stale = FileRecord.objects.ended().filter(modified__lt=now - RETRY_AFTER).exclude(upload_id="")
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
    handler = get_storage_handler()

    def abort(row: Row) -> None:
        pk, key, upload_id = row
        if upload_id:
            handler.abort(MultipartUpload(file_id=str(pk), key=key, upload_id=upload_id))

    return _delete_rows(
        old_failures(now, days_old),
        "modified",
        abort,
        "cleanup: could not abort an upload",
        batch_size=batch_size,
        workers=workers,
        time_budget=time_budget,
        dry_run=dry_run,
        progress=progress,
    )


def _delete_rows(
    rows: QuerySet[FileRecord],
    order: str,
    remove: Callable[[Row], None],
    failure: str,
    *,
    batch_size: int,
    workers: int,
    time_budget: float,
    dry_run: bool,
    progress: Progress | None,
    claim: Callable[[list[UUID]], None] | None = None,
) -> CleanupResult:
    """Delete `rows` once `remove` has taken what the store holds of each (logged with
    `failure` and kept when it cannot); a dry run only counts them."""
    result = CleanupResult()
    if dry_run:
        result.examined = result.deleted = rows.count()
        return result

    def work(row: Row) -> str | None:
        try:
            remove(row)
        except StorageError:
            logger.exception("%s (file %s, upload %s)", failure, row[0], row[2] or "none")
            return None
        return str(row[0])

    deadline = time.monotonic() + time_budget
    _delete_after_store(rows, order, work, batch_size, workers, deadline, result, progress, claim)
    return result


def _delete_after_store(
    rows: QuerySet[FileRecord],
    order: str,
    work: Callable[[Row], str | None],
    batch_size: int,
    workers: int,
    deadline: float,
    result: CleanupResult,
    progress: Progress | None,
    claim: Callable[[list[UUID]], None] | None = None,
) -> None:
    """Page through `rows`, run `work` on each in the store, delete the rows it finished.

    A row `work` could not finish is kept: deleting it would orphan what the store holds. Keyset
    paging by (`order`, pk) leaves it behind the cursor, so it is tried once per run instead of
    again in every batch that follows. With `claim`, each batch is locked and claimed first.
    """
    after: tuple[object, object] | None = None
    while True:
        if time.monotonic() > deadline:
            result.finished = False
            return
        with transaction.atomic():
            page = rows.order_by(order, "pk")
            if claim is not None:
                page = page.select_for_update(skip_locked=True)
            if after is not None:
                page = page.filter(
                    Q(**{f"{order}__gt": after[0]}) | Q(**{order: after[0], "pk__gt": after[1]})
                )
            keyed = list(page.values_list(order, "pk", "file", "upload_id")[:batch_size])
            if not keyed:
                return
            if claim is not None:
                claim([row[1] for row in keyed])
        after = (keyed[-1][0], keyed[-1][1])
        batch: list[Row] = [(pk, key, upload_id) for _, pk, key, upload_id in keyed]
        result.examined += len(batch)
        done, errors = _in_store(work, batch, workers)
        result.errors += errors
        deleted, _ = rows.filter(pk__in=done).delete()
        result.deleted += deleted
        if progress:
            progress(len(batch))
        if errors == len(batch):
            # Nothing could be cleaned in this batch: the store is down; try next run.
            result.finished = False
            return


def purge_from_store(handler: StorageHandler, key: str, upload_id: str) -> None:
    """Remove all the store holds for one deleted file: its unfinished upload and its object.

    Both calls succeed when there is nothing left, so a purge that failed halfway just runs again.
    """
    if upload_id:
        handler.abort(MultipartUpload(file_id="", key=key, upload_id=upload_id))
    if key:
        handler.delete(key)


def claim_for_purge(pks: Sequence[UUID], now: datetime) -> None:
    """Mark deleted rows as being purged, inside the transaction that locked them.

    A restore refuses anything not completed, so none can come back while its bytes go.
    """
    FileRecord.objects.filter(pk__in=pks).transition(
        Status.ABORTED, allowed=[Status.COMPLETED], failure_reason=PURGED_REASON, modified=now
    )


def purge_deleted_files(
    *,
    retention_days: int | None = None,
    batch_size: int = BATCH_SIZE,
    workers: int = STORE_WORKERS,
    time_budget: float = TIME_BUDGET_SECONDS,
    now: datetime | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> CleanupResult:
    """Delete the objects and rows of files deleted more than `retention_days` ago."""
    now = now or timezone.now()
    handler = get_storage_handler()
    return _delete_rows(
        purge_due(now, retention_days),
        "deleted_at",
        lambda row: purge_from_store(handler, row[1], row[2]),
        "purge: could not remove file from the store",
        batch_size=batch_size,
        workers=workers,
        time_budget=time_budget,
        dry_run=dry_run,
        progress=progress,
        claim=lambda pks: claim_for_purge(pks, now),
    )


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
    between the store's initiate and our commit, a restored database, a deleted row). A real
    run also removes what completions set aside in the store; a dry run changes nothing.
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
            FileRecord.objects.open().filter(upload_id__in=ids).values_list("upload_id", flat=True)
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
        if not dry_run:
            handler.remove_set_aside()
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
