"""Expiry cleanup at scale: `cleanup_expired_uploads` over 100,000 expired uploads on the local
disk handler (rows made with bulk_create, each with a real part directory), and over real
multipart uploads on a moto S3 server; `cleanup_failed_uploads` over as many old failed rows;
`purge_deleted_files` over deleted files past their retention, each with its object on disk.

Each figure is one run (cleanup changes what it measures, so it cannot be repeated on the same
data); every run is checked afterwards: all rows aborted/deleted, no part directory or multipart
upload left. Queries are counted with CaptureQueriesContext: they grow with batches, not rows.

No baseline column for the local run: a second set of 100,000 part directories would double a
setup that is mostly the disk's own metadata work. The note gives that floor instead, measured in
the same run on a sample: what one directory costs this disk to create and to remove.

Run: `python -m bench.cleanup [--quick]`.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.common import Row, moto_s3, run_alone
from bench.harness import smoke

GOAL_SECONDS = 60.0
STORE = "local disk, and the S3 API on a moto server (loopback)"


def sizes(quick: bool) -> tuple[int, int]:
    """(local rows, S3 uploads)."""
    if smoke():
        return 300, 20
    return (2_000, 200) if quick else (100_000, 200)


def owner() -> Any:
    from django.contrib.auth import get_user_model

    return get_user_model().objects.get_or_create(username="bench-cleanup")[0]


def make_expired(count: int, *, status: str = "uploading", parts: bool = True) -> list[str]:
    """`count` expired rows in bulk, each with a one-part directory in the local store."""
    from django.conf import settings
    from django.utils import timezone

    from uploads.models import FileRecord

    parts_dir = Path(settings.UPLOADS_LOCAL_PARTS_DIR)
    parts_dir.mkdir(parents=True, exist_ok=True)
    user = owner()
    expired_at = timezone.now() - timedelta(hours=1)
    upload_ids = [secrets.token_hex(16) if parts else "" for _ in range(count)]
    if parts:
        # One at a time: creating a directory costs this disk CPU, not waiting, and threads
        # only contend for it (20,000 here: 2.4 s in one thread, 4.7 s in eight).
        for upload_id in upload_ids:
            write_part(parts_dir / upload_id)
    records = []
    for index, upload_id in enumerate(upload_ids):
        file_id = uuid.uuid4()
        records.append(
            FileRecord(
                id=file_id,
                file_name=f"bench-{index}.bin",
                file_size=4,
                file=f"uploads/bench/{file_id.hex}",
                upload_status=status,
                upload_id=upload_id,
                total_parts=1,
                part_size=5 * 1024 * 1024,
                upload_expires_at=expired_at,
                created_by=user,
            )
        )
    FileRecord.objects.bulk_create(records, batch_size=5_000)
    return upload_ids


def write_part(directory: Path) -> None:
    directory.mkdir()
    (directory / f"00001.{'0' * 32}").write_bytes(b"part")


def disk_cost(sample: int = 2_000) -> tuple[float, float]:
    """Seconds this disk takes to create and to remove one part directory, one at a time."""
    import tempfile

    from django.conf import settings

    root = Path(tempfile.mkdtemp(dir=Path(settings.UPLOADS_LOCAL_PARTS_DIR).parent))
    start = time.perf_counter()
    for index in range(sample):
        write_part(root / str(index))
    created = time.perf_counter() - start
    start = time.perf_counter()
    for index in range(sample):
        shutil.rmtree(root / str(index))
    removed = time.perf_counter() - start
    root.rmdir()
    return created / sample, removed / sample


def timed(fn: Any) -> tuple[Any, float, int]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        start = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - start
    return result, seconds, len(queries)


def local_rows(count: int) -> list[Row]:
    from django.conf import settings
    from django.test import override_settings

    from uploads.models import FileRecord
    from uploads.services import cleanup

    local = {"BACKEND": "django.core.files.storage.FileSystemStorage"}
    with override_settings(STORAGES={**settings.STORAGES, "default": local}):
        parts_dir = Path(settings.UPLOADS_LOCAL_PARTS_DIR)
        parts_dir.mkdir(parents=True, exist_ok=True)
        create_cost, remove_cost = disk_cost(min(count, 2_000))

        make_expired(count)
        result, seconds, queries = timed(cleanup.cleanup_expired_uploads)
        assert (result.aborted, result.errors, result.finished) == (count, 0, True), result
        assert not FileRecord.objects.exclude(upload_status="aborted").exists()
        assert not FileRecord.objects.exclude(upload_id="").exists()
        assert not any(parts_dir.iterdir()), "part directories left behind"
        batches = -(-count // cleanup.BATCH_SIZE)

        # Old failed rows (their parts already gone): deleted in batches. Fewer of them: each
        # batch's select scans and sorts every row still left (no index leads with `modified`),
        # so this grows with rows² / batch size; 100,000 took 46 s here against 20,000's 7 s.
        failed_count = min(count, 5_000)
        failed_batches = -(-failed_count // cleanup.BATCH_SIZE)
        FileRecord.objects.all().delete()
        make_expired(failed_count, status="failed", parts=False)
        FileRecord.objects.update(
            modified=FileRecord.objects.latest("modified").modified - timedelta(days=8)
        )
        failed, failed_seconds, failed_queries = timed(lambda: cleanup.cleanup_failed_uploads(7))
        assert (failed.deleted, failed.errors, failed.finished) == (failed_count, 0, True), failed
        assert not FileRecord.objects.exists()

        # Deleted files past their retention: each object removed from disk, then its row.
        purge_count = failed_count
        make_expired(purge_count, status="completed", parts=False)
        keys = list(FileRecord.objects.values_list("file", flat=True))
        media = Path(settings.MEDIA_ROOT)
        (media / "uploads" / "bench").mkdir(parents=True, exist_ok=True)
        for key in keys:
            (media / key).write_bytes(b"kept")
        FileRecord.objects.update(
            deleted_at=FileRecord.objects.latest("created").created - timedelta(days=8)
        )
        purged, purge_seconds, purge_queries = timed(cleanup.purge_deleted_files)
        assert (purged.deleted, purged.errors, purged.finished) == (purge_count, 0, True), purged
        assert not FileRecord.objects.exists()
        assert not any((media / key).exists() for key in keys), "objects left behind"

    label = f"{count:,}"
    return [
        Row(
            measure=f"cleanup_expired_uploads: {label} expired uploads, local disk",
            ours=seconds,
            baseline=None,
            unit="s",
            goal=f"≤ {GOAL_SECONDS:.0f} s" if count >= 100_000 else "",
            passed=seconds <= GOAL_SECONDS if count >= 100_000 else None,
            note=f"{count / seconds:,.0f} uploads/s, {cleanup.STORE_WORKERS} store threads; this "
            f"disk, one at a time on a {min(count, 2_000):,}-directory sample: mkdir+write "
            f"{create_cost * 1e3:.2f} ms, rmtree {remove_cost * 1e3:.2f} ms per directory",
        ),
        Row(
            measure=f"cleanup_expired_uploads: queries for {label} rows",
            ours=queries,
            baseline=None,
            unit="queries",
            goal=f"grows with batches ({batches} of {cleanup.BATCH_SIZE})",
            passed=queries <= 6 * batches + 4,
            note=f"{queries / batches:.1f} per batch",
        ),
        Row(
            measure=f"cleanup_failed_uploads: {failed_count:,} old failed rows deleted",
            ours=failed_seconds,
            baseline=None,
            unit="s",
            goal="",
            passed=None,
            note=f"{failed_queries} queries ({failed_queries / failed_batches:.1f} per batch); "
            "each batch's select sorts all rows left",
        ),
        Row(
            measure=f"purge_deleted_files: {purge_count:,} deleted files, objects on local disk",
            ours=purge_seconds,
            baseline=None,
            unit="s",
            goal="",
            passed=None,
            note=f"{purge_count / purge_seconds:,.0f} files/s; {purge_queries} queries "
            f"({purge_queries / failed_batches:.1f} per batch)",
        ),
    ]


def s3_rows(count: int) -> list[Row]:
    from concurrent.futures import ThreadPoolExecutor

    from django.conf import settings

    from uploads.models import FileRecord
    from uploads.services import cleanup

    # moto's server logs every request; at thousands of requests that is noise and time.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    rows: list[Row] = []
    with moto_s3() as (_endpoint, s3):
        prefix = settings.UPLOADS_KEY_PREFIX

        def create(index: int) -> tuple[str, str]:
            key = f"{prefix}/bench/{uuid.uuid4().hex}"
            upload = s3.create_multipart_upload(Bucket="bench", Key=key)
            s3.upload_part(
                Bucket="bench", Key=key, UploadId=upload["UploadId"], PartNumber=1, Body=b"part"
            )
            return key, upload["UploadId"]

        def open_uploads() -> int:
            pages = s3.get_paginator("list_multipart_uploads").paginate(Bucket="bench")
            return sum(len(page.get("Uploads", [])) for page in pages)

        with ThreadPoolExecutor(8) as pool:
            created = list(pool.map(create, range(count)))
        # Records pointing at those uploads, as initiate leaves them.
        make_expired(count, parts=False)
        records = list(FileRecord.objects.order_by("pk"))
        for record, (key, upload_id) in zip(records, created, strict=True):
            record.file, record.upload_id = key, upload_id
        FileRecord.objects.bulk_update(records, ["file", "upload_id"], batch_size=1_000)
        assert open_uploads() == count

        result, seconds, queries = timed(cleanup.cleanup_expired_uploads)
        assert (result.aborted, result.errors, result.finished) == (count, 0, True), result
        assert open_uploads() == 0, "multipart uploads left in the bucket"
        assert not FileRecord.objects.exclude(upload_id="").exists()
        FileRecord.objects.all().delete()
        rows.append(
            Row(
                measure=f"cleanup_expired_uploads: {count:,} multipart uploads, S3 (moto)",
                ours=seconds,
                baseline=None,
                unit="s",
                goal="",
                passed=None,
                note=f"{count / seconds:,.0f} aborts/s over HTTP, {cleanup.STORE_WORKERS} "
                f"threads; {queries} queries",
            )
        )

        # Orphans: uploads in the bucket that no record knows (moto dates them all 2010).
        orphans = max(count // 4, 1)
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(create, range(orphans)))
        result, seconds, queries = timed(lambda: cleanup.reconcile_storage(older_than=timedelta(0)))
        assert (result.aborted, result.errors) == (orphans, 0), result
        assert open_uploads() == 0
        rows.append(
            Row(
                measure=f"reconcile_storage: {orphans:,} orphan multipart uploads, S3 (moto)",
                ours=seconds,
                baseline=None,
                unit="s",
                goal="",
                passed=None,
                note=f"list + match + abort; {queries} queries",
            )
        )
    return rows


def run(quick: bool = False) -> list[Row]:
    local_count, s3_count = sizes(quick)
    return [*local_rows(local_count), *s3_rows(s3_count)]


def main() -> None:
    run_alone("cleanup")


if __name__ == "__main__":
    main()
