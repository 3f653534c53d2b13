"""Cleanup services and the `cleanup_uploads` command, on the local handler with records made in
bulk: counts, batching and query cost, the time budget, dry runs, store failures.

The same behaviour against real stores (local parts written through the API, and S3 on the moto
server) is in tests/integration/test_cleanup_stores.py.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from uploads.models import FileRecord
from uploads.services import cleanup
from uploads.storage import StorageError
from uploads.storage.local import LocalStorageHandler

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("local_disk")]
Status = FileRecord.Status


def parts_dir() -> Path:
    return Path(settings.UPLOADS_LOCAL_PARTS_DIR)


def make_records(
    owner: Any,
    count: int,
    *,
    status: str = Status.UPLOADING,
    expires_in: timedelta = timedelta(hours=-1),
    with_parts: bool = True,
    upload_id: bool = True,
) -> list[FileRecord]:
    """`count` records in one insert, each with a real part directory in the local store."""
    now = timezone.now()
    records = []
    for index in range(count):
        ident = secrets.token_hex(16) if upload_id else ""
        if with_parts and ident:
            directory = parts_dir() / ident
            directory.mkdir(parents=True)
            (directory / f"00001.{'0' * 32}").write_bytes(b"part")
        file_id = uuid.uuid4()
        records.append(
            FileRecord(
                id=file_id,
                name=f"bulk {index}",
                file_name=f"bulk-{index}.bin",
                file_size=4,
                file=f"uploads/test/{file_id.hex}",
                upload_status=status,
                upload_id=ident,
                total_parts=1,
                part_size=1024,
                upload_expires_at=now + expires_in,
                created_by=owner,
            )
        )
    FileRecord.objects.bulk_create(records)
    return records


def backdate(records: list[FileRecord], *, days: float) -> None:
    # QuerySet.update leaves auto_now alone, so `modified` keeps the value given here.
    FileRecord.objects.filter(pk__in=[r.pk for r in records]).update(
        modified=timezone.now() - timedelta(days=days)
    )


def states(records: list[FileRecord]) -> dict[str, tuple[str, str]]:
    rows = FileRecord.objects.filter(pk__in=[r.pk for r in records])
    return {
        str(pk): (status, upload_id)
        for pk, status, upload_id in rows.values_list("pk", "upload_status", "upload_id")
    }


def alive(record: FileRecord) -> bool:
    return (parts_dir() / record.upload_id).exists()


def fail_abort_for(monkeypatch: pytest.MonkeyPatch, upload_ids: set[str]) -> list[str]:
    """Make the local handler's abort raise StorageError for these upload ids; returns the calls."""
    real = LocalStorageHandler.abort
    calls: list[str] = []

    def abort(self: LocalStorageHandler, upload: Any) -> None:
        calls.append(upload.upload_id)
        if upload.upload_id in upload_ids:
            raise StorageError(f"injected failure for {upload.upload_id}")
        real(self, upload)

    monkeypatch.setattr(LocalStorageHandler, "abort", abort)
    return calls


class FakeClock:
    """Stands in for `time` inside the cleanup module; `advance` moves it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# --- cleanup_expired_uploads ------------------------------------------------------------------


def test_expired_open_uploads_are_aborted_and_others_untouched(user):
    expired = make_records(user, 3)
    pending = make_records(user, 1, status=Status.PENDING)
    never_started = make_records(user, 1, status=Status.PENDING, upload_id=False)
    fresh = make_records(user, 2, expires_in=timedelta(hours=1))
    completed = make_records(user, 1, status=Status.COMPLETED)

    result = cleanup.cleanup_expired_uploads()

    assert result.as_dict() == {
        "examined": 5,
        "aborted": 5,
        "deleted": 0,
        "errors": 0,
        "finished": True,
    }
    for record in [*expired, *pending, *never_started]:
        current = FileRecord.objects.get(pk=record.pk)
        assert (current.upload_status, current.upload_id) == (Status.ABORTED, "")
        assert current.failure_reason == "Expired before it was completed."
    assert not any(alive(r) for r in [*expired, *pending])
    assert states(fresh) == {str(r.pk): (Status.UPLOADING, r.upload_id) for r in fresh}
    assert all(alive(r) for r in fresh)
    assert states(completed) == {str(r.pk): (Status.COMPLETED, r.upload_id) for r in completed}
    # A completed record's upload id is not the cleaner's business, even if it looks expired.
    assert all(alive(r) for r in completed)


def test_nothing_to_do_returns_zero_counts(user):
    make_records(user, 2, expires_in=timedelta(hours=1))
    assert cleanup.cleanup_expired_uploads().as_dict() == {
        "examined": 0,
        "aborted": 0,
        "deleted": 0,
        "errors": 0,
        "finished": True,
    }


def test_a_failing_store_abort_is_counted_logged_kept_and_retried_later(user, monkeypatch, caplog):
    records = make_records(user, 5)
    bad = records[2]
    calls = fail_abort_for(monkeypatch, {bad.upload_id})

    with caplog.at_level(logging.ERROR, logger="uploads.services.cleanup"):
        result = cleanup.cleanup_expired_uploads(batch_size=2)

    assert (result.examined, result.aborted, result.errors) == (5, 5, 1)
    assert calls.count(bad.upload_id) == 1
    assert any(bad.upload_id in message for message in caplog.messages)
    after = states(records)
    # The row is aborted (no client may complete it) but keeps the id a retry needs.
    assert after[str(bad.pk)] == (Status.ABORTED, bad.upload_id)
    assert alive(bad)
    for record in records:
        if record is not bad:
            assert after[str(record.pk)] == (Status.ABORTED, "")
            assert not alive(record)

    # Right away the store is not hammered again; once RETRY_AFTER has passed it is.
    monkeypatch.undo()
    again = cleanup.cleanup_expired_uploads()
    assert (again.examined, again.errors) == (0, 0)
    assert states([bad])[str(bad.pk)] == (Status.ABORTED, bad.upload_id)
    later = cleanup.cleanup_expired_uploads(now=timezone.now() + cleanup.RETRY_AFTER * 2)
    assert (later.examined, later.aborted, later.errors) == (1, 0, 0)
    assert states([bad])[str(bad.pk)] == (Status.ABORTED, "")
    assert not alive(bad)


def test_the_store_being_down_fails_no_row_silently(user, monkeypatch):
    records = make_records(user, 4)
    fail_abort_for(monkeypatch, {r.upload_id for r in records})
    result = cleanup.cleanup_expired_uploads(batch_size=3)
    assert (result.aborted, result.errors) == (4, 4)
    assert states(records) == {str(r.pk): (Status.ABORTED, r.upload_id) for r in records}
    assert all(alive(r) for r in records)


def test_time_budget_stops_a_run_and_the_next_run_continues(user, monkeypatch):
    records = make_records(user, 5)
    clock = FakeClock()
    monkeypatch.setattr(cleanup, "time", clock)
    batches: list[int] = []

    def progress(step: int) -> None:
        batches.append(step)
        clock.advance(60)  # each batch "takes" a minute

    first = cleanup.cleanup_expired_uploads(batch_size=2, time_budget=90, progress=progress)

    # Batch one ends at 60 s (within budget), batch two at 120 s: no third batch starts.
    assert batches == [2, 2]
    assert (first.aborted, first.finished) == (4, False)
    assert sum(status == Status.UPLOADING for status, _ in states(records).values()) == 1

    second = cleanup.cleanup_expired_uploads(batch_size=2, time_budget=90, progress=progress)
    assert (second.aborted, second.finished) == (1, True)
    assert {status for status, _ in states(records).values()} == {Status.ABORTED}
    assert not any(alive(r) for r in records)


def test_dry_run_changes_nothing(user):
    records = make_records(user, 3)
    before = states(records)
    result = cleanup.cleanup_expired_uploads(dry_run=True)
    assert (result.examined, result.aborted, result.errors) == (3, 3, 0)
    assert states(records) == before
    assert all(alive(r) for r in records)


def expired_run_queries(owner: Any, rows: int, batch_size: int) -> int:
    FileRecord.objects.all().delete()
    make_records(owner, rows, with_parts=False)
    with CaptureQueriesContext(connection) as queries:
        result = cleanup.cleanup_expired_uploads(batch_size=batch_size)
    assert (result.aborted, result.errors) == (rows, 0)
    return len(queries)


def test_expired_query_count_grows_with_batches_not_rows(user, django_assert_max_num_queries):
    one_batch = expired_run_queries(user, 50, 100)
    two_batches = expired_run_queries(user, 200, 100)
    four_batches = expired_run_queries(user, 400, 100)
    per_batch = two_batches - one_batch
    assert 1 <= per_batch <= 6
    assert four_batches - two_batches == 2 * per_batch
    # 200 rows in two batches: a fixed handful of queries, nowhere near one per row.
    FileRecord.objects.all().delete()
    make_records(user, 200, with_parts=False)
    with django_assert_max_num_queries(2 * per_batch + one_batch):
        cleanup.cleanup_expired_uploads(batch_size=100)


# --- cleanup_failed_uploads -------------------------------------------------------------------


def test_failed_and_aborted_records_older_than_n_days_are_deleted(user):
    old_failed = make_records(user, 2, status=Status.FAILED, upload_id=False)
    old_aborted = make_records(user, 2, status=Status.ABORTED, upload_id=False)
    # A failed upload whose store abort never succeeded: its parts go with it.
    old_with_parts = make_records(user, 1, status=Status.FAILED)
    recent = make_records(user, 2, status=Status.FAILED, upload_id=False)
    old_completed = make_records(user, 1, status=Status.COMPLETED, upload_id=False)
    old_open = make_records(user, 1, expires_in=timedelta(hours=1))
    backdate([*old_failed, *old_aborted, *old_with_parts, *old_completed, *old_open], days=8)
    backdate(recent, days=6)

    result = cleanup.cleanup_failed_uploads(7)

    assert (result.examined, result.deleted, result.errors, result.finished) == (5, 5, 0, True)
    gone = [*old_failed, *old_aborted, *old_with_parts]
    assert not FileRecord.objects.filter(pk__in=[r.pk for r in gone]).exists()
    assert not alive(old_with_parts[0])
    kept = [*recent, *old_completed, *old_open]
    assert FileRecord.objects.filter(pk__in=[r.pk for r in kept]).count() == len(kept)

    assert cleanup.cleanup_failed_uploads(5).deleted == 2
    assert set(FileRecord.objects.values_list("pk", flat=True)) == {
        r.pk for r in [*old_completed, *old_open]
    }


def test_failed_cleanup_keeps_a_row_whose_parts_could_not_be_removed(user, monkeypatch, caplog):
    records = make_records(user, 5, status=Status.ABORTED)
    backdate(records, days=10)
    bad = records[0]
    calls = fail_abort_for(monkeypatch, {bad.upload_id})

    with caplog.at_level(logging.ERROR, logger="uploads.services.cleanup"):
        result = cleanup.cleanup_failed_uploads(7, batch_size=2)

    # Deleting the row would orphan the parts: it stays, counted once, and the rest go on.
    assert (result.deleted, result.errors) == (4, 1)
    assert calls.count(bad.upload_id) == 1
    assert any(bad.upload_id in message for message in caplog.messages)
    assert list(FileRecord.objects.values_list("pk", flat=True)) == [bad.pk]
    assert alive(bad)

    monkeypatch.undo()
    retry = cleanup.cleanup_failed_uploads(7)
    assert (retry.deleted, retry.errors) == (1, 0)
    assert not alive(bad)


def test_failed_cleanup_stops_when_the_store_is_down(user, monkeypatch):
    records = make_records(user, 4, status=Status.FAILED)
    backdate(records, days=10)
    calls = fail_abort_for(monkeypatch, {r.upload_id for r in records})
    result = cleanup.cleanup_failed_uploads(7, batch_size=2)
    assert (result.deleted, result.finished) == (0, False)
    assert result.errors == len(calls) >= 2
    assert FileRecord.objects.count() == 4


def test_failed_cleanup_dry_run_changes_nothing(user):
    records = make_records(user, 3, status=Status.FAILED)
    backdate(records, days=10)
    result = cleanup.cleanup_failed_uploads(7, dry_run=True)
    assert (result.examined, result.deleted) == (3, 3)
    assert FileRecord.objects.count() == 3
    assert all(alive(r) for r in records)


def test_failed_cleanup_time_budget(user, monkeypatch):
    records = make_records(user, 5, status=Status.FAILED, upload_id=False)
    backdate(records, days=10)
    clock = FakeClock()
    monkeypatch.setattr(cleanup, "time", clock)
    first = cleanup.cleanup_failed_uploads(
        7, batch_size=2, time_budget=90, progress=lambda _: clock.advance(60)
    )
    assert (first.deleted, first.finished) == (4, False)
    second = cleanup.cleanup_failed_uploads(7, batch_size=2, time_budget=90)
    assert (second.deleted, second.finished) == (1, True)
    assert not FileRecord.objects.exists()


def failed_run_queries(owner: Any, rows: int, batch_size: int) -> int:
    FileRecord.objects.all().delete()
    backdate(make_records(owner, rows, status=Status.FAILED, with_parts=False), days=10)
    with CaptureQueriesContext(connection) as queries:
        result = cleanup.cleanup_failed_uploads(7, batch_size=batch_size)
    assert result.deleted == rows
    return len(queries)


def assert_queries_grow_with_batches(run_queries: Any, owner: Any, most_per_batch: int) -> None:
    """Runs over 50, 200 and 400 rows in batches of 100: each batch costs the same few queries."""
    one_batch = run_queries(owner, 50, 100)
    two_batches = run_queries(owner, 200, 100)
    four_batches = run_queries(owner, 400, 100)
    per_batch = two_batches - one_batch
    assert 1 <= per_batch <= most_per_batch
    assert four_batches - two_batches == 2 * per_batch


def test_failed_query_count_grows_with_batches_not_rows(user):
    assert_queries_grow_with_batches(failed_run_queries, user, 4)


# --- purge_deleted_files -----------------------------------------------------------------------


def deleted(owner: Any, count: int, *, days_ago: float, **fields: Any) -> list[FileRecord]:
    """`count` deleted records deleted `days_ago` days ago, each with its object stored."""
    records = make_records(
        owner, count, **{"status": Status.COMPLETED, "upload_id": False, **fields}
    )
    for record in records:
        path = Path(settings.MEDIA_ROOT) / record.file.name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"kept")
    FileRecord.objects.filter(pk__in=[r.pk for r in records]).update(
        deleted_at=timezone.now() - timedelta(days=days_ago)
    )
    return records


def stored(record: FileRecord) -> bool:
    return (Path(settings.MEDIA_ROOT) / record.file.name).exists()


def test_deleted_files_are_purged_after_their_retention_only(user, settings):
    settings.UPLOADS_DELETED_RETENTION_DAYS = 7
    old = deleted(user, 3, days_ago=8)
    # An upload deleted in flight whose store abort had failed: its parts go with it.
    old_in_flight = deleted(user, 1, days_ago=8, status=Status.ABORTED, upload_id=True)
    recent = deleted(user, 2, days_ago=6)
    live = make_records(user, 1, status=Status.COMPLETED, upload_id=False)
    backdate(live, days=30)

    result = cleanup.purge_deleted_files()

    assert (result.examined, result.deleted, result.errors, result.finished) == (4, 4, 0, True)
    assert not FileRecord.objects.filter(pk__in=[r.pk for r in [*old, *old_in_flight]]).exists()
    assert not any(stored(r) for r in old)
    assert not alive(old_in_flight[0])
    assert all(stored(r) for r in recent)
    assert FileRecord.objects.count() == 3
    assert cleanup.purge_deleted_files(retention_days=5).deleted == 2


def test_failed_cleanup_leaves_deleted_rows_to_the_purge(user):
    aborted = deleted(user, 1, days_ago=1, status=Status.ABORTED)
    backdate(aborted, days=30)
    assert cleanup.cleanup_failed_uploads(7).deleted == 0
    assert FileRecord.objects.filter(pk=aborted[0].pk).exists()


def test_purge_dry_run_changes_nothing(user):
    records = deleted(user, 2, days_ago=10)
    result = cleanup.purge_deleted_files(dry_run=True)
    assert (result.examined, result.deleted) == (2, 2)
    assert FileRecord.objects.count() == 2
    assert all(stored(r) for r in records)


def test_purge_time_budget(user, monkeypatch):
    deleted(user, 5, days_ago=10)
    clock = FakeClock()
    monkeypatch.setattr(cleanup, "time", clock)
    first = cleanup.purge_deleted_files(
        batch_size=2, time_budget=90, progress=lambda _: clock.advance(60)
    )
    assert (first.deleted, first.finished) == (4, False)
    second = cleanup.purge_deleted_files(batch_size=2, time_budget=90)
    assert (second.deleted, second.finished) == (1, True)


def purge_run_queries(owner: Any, rows: int, batch_size: int) -> int:
    FileRecord.objects.all().delete()
    deleted(owner, rows, days_ago=10)
    with CaptureQueriesContext(connection) as queries:
        result = cleanup.purge_deleted_files(batch_size=batch_size)
    assert result.deleted == rows
    return len(queries)


def test_purge_query_count_grows_with_batches_not_rows(user):
    assert_queries_grow_with_batches(purge_run_queries, user, 6)


def test_command_deleted_purges_past_the_retention(user):
    old = deleted(user, 2, days_ago=10)
    deleted(user, 1, days_ago=1)
    output = run_command("--deleted")
    assert output.splitlines() == [
        "deleted: done — examined 2, aborted 0, deleted 2, errors 0, finished True"
    ]
    assert not any(stored(r) for r in old)
    assert FileRecord.objects.count() == 1


# --- reconcile_storage ------------------------------------------------------------------------


def test_reconcile_aborts_old_uploads_no_open_record_knows(user):
    known = make_records(user, 2, expires_in=timedelta(hours=1))
    # Aborted, but its store abort failed: no open record knows it, so reconcile may abort it.
    leftover = make_records(user, 1, status=Status.ABORTED)
    orphans = [parts_dir() / secrets.token_hex(16) for _ in range(3)]
    for directory in orphans:
        directory.mkdir(parents=True)
    not_ours = parts_dir() / "not-an-upload-id"
    not_ours.mkdir()

    young = cleanup.reconcile_storage(older_than=timedelta(hours=1))
    assert (young.examined, young.aborted) == (0, 0)
    assert all(d.exists() for d in orphans)

    later = timezone.now() + timedelta(hours=2)
    result = cleanup.reconcile_storage(older_than=timedelta(hours=1), now=later)
    assert (result.examined, result.aborted, result.errors, result.finished) == (6, 4, 0, True)
    assert not any(d.exists() for d in orphans)
    assert not alive(leftover[0])
    assert all(alive(r) for r in known)
    assert not_ours.exists()


def test_reconcile_dry_run_counts_but_keeps(user):
    make_records(user, 1, expires_in=timedelta(hours=1))
    orphan = parts_dir() / secrets.token_hex(16)
    orphan.mkdir(parents=True)
    result = cleanup.reconcile_storage(
        older_than=timedelta(0), now=timezone.now() + timedelta(minutes=1), dry_run=True
    )
    assert (result.examined, result.aborted) == (2, 1)
    assert orphan.exists()


def test_reconcile_counts_a_failing_abort(user, monkeypatch):
    orphans = [secrets.token_hex(16) for _ in range(2)]
    for ident in orphans:
        (parts_dir() / ident).mkdir(parents=True)
    fail_abort_for(monkeypatch, {orphans[0]})
    result = cleanup.reconcile_storage(
        older_than=timedelta(0), now=timezone.now() + timedelta(minutes=1)
    )
    assert (result.aborted, result.errors) == (1, 1)
    assert (parts_dir() / orphans[0]).exists()
    assert not (parts_dir() / orphans[1]).exists()


# --- the management command -------------------------------------------------------------------


def run_command(*args: str) -> str:
    out = StringIO()
    call_command("cleanup_uploads", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_command_expired(user):
    records = make_records(user, 2)
    fresh = make_records(user, 1, expires_in=timedelta(hours=1))
    output = run_command("--expired")
    assert output.splitlines() == [
        "expired: done — examined 2, aborted 2, deleted 0, errors 0, finished True"
    ]
    assert {s for s, _ in states(records).values()} == {Status.ABORTED}
    assert states(fresh)[str(fresh[0].pk)][0] == Status.UPLOADING


def test_command_failed_with_days(user):
    old = make_records(user, 2, status=Status.FAILED, upload_id=False)
    backdate(old, days=4)
    newer = make_records(user, 1, status=Status.FAILED, upload_id=False)
    backdate(newer, days=2)
    output = run_command("--failed", "--days", "3")
    assert output.splitlines() == [
        "failed: done — examined 2, aborted 0, deleted 2, errors 0, finished True"
    ]
    assert list(FileRecord.objects.values_list("pk", flat=True)) == [newer[0].pk]


def test_command_reconcile(user, settings):
    settings.UPLOADS_EXPIRATION_SECONDS = 0
    orphan = parts_dir() / secrets.token_hex(16)
    orphan.mkdir(parents=True)
    known = make_records(user, 1, expires_in=timedelta(hours=1))
    output = run_command("--reconcile")
    assert output.splitlines() == [
        "reconcile: done — examined 2, aborted 1, deleted 0, errors 0, finished True"
    ]
    assert not orphan.exists()
    assert alive(known[0])


def test_command_dry_run_runs_every_step_and_changes_nothing(user):
    expired = make_records(user, 2)
    failed = make_records(user, 1, status=Status.FAILED)
    backdate(failed, days=30)
    before = states([*expired, *failed])
    output = run_command("--dry-run")
    assert output.splitlines() == [
        "expired: would change — examined 2, aborted 2, deleted 0, errors 0, finished True",
        "failed: would change — examined 1, aborted 0, deleted 1, errors 0, finished True",
        "deleted: would change — examined 0, aborted 0, deleted 0, errors 0, finished True",
        "reconcile: would change — examined 0, aborted 0, deleted 0, errors 0, finished True",
    ]
    assert states([*expired, *failed]) == before
    assert all(alive(r) for r in [*expired, *failed])


def test_command_progress_bar_counts_only_what_the_step_will_touch(user, capsys):
    old = make_records(user, 2, status=Status.ABORTED, upload_id=False)
    backdate(old, days=10)
    make_records(user, 3, status=Status.ABORTED, upload_id=False)  # too young for --days 7
    call_command("cleanup_uploads", "--failed", "--progress", stdout=StringIO())
    bar = capsys.readouterr().err
    assert "2/2" in bar, bar
