"""List page of 50 with 100,000 rows (quick: 10,000) on PostgreSQL, through a real server.

p50 latency of the first and the last page of `GET /v1/files?status=all`, with a JWT, through
`gunicorn project.wsgi` (bench settings: the project's, plus a bare Ninja endpoint returning a
constant, bench/bench_urls.py) next to that bare endpoint in the same server processes. The
goal is on pages by cursor (`?cursor=`), the way a client reaches a deep page fast; the same
pages by page number (`?page=`, which counts every row and walks past the earlier ones) are
shown for information. The requests of every kind are interleaved on one keep-alive
connection, so load from other work on the machine falls on all of them alike. Plus the
queries per request, counted in-process with CaptureQueriesContext: they must be the same for
page 1 and a deep page.

The rows live in a throwaway database (bench_<run>_listing_<random>), dropped afterwards.

Run: `python -m bench.listing [--quick]`.
"""

from __future__ import annotations

import math
import time
import uuid
from typing import Any
from urllib.parse import urlencode

from bench.common import MIB, Row, run_alone
from bench.harness import (
    Http,
    Server,
    access_token,
    drop_postgres,
    median,
    percentile,
    setup_postgres_django,
    smoke,
)

GOAL_MS = 25.0
PAGE_SIZE = 50
NEEDS_POSTGRES = True
STORE = "local disk (gunicorn on loopback)"
WORKERS, THREADS = 2, 2
_database: list[str] = []


def setup() -> None:
    _database.append(setup_postgres_django("listing", DJANGO_SETTINGS_MODULE="bench.settings"))


def fill(user: Any, count: int) -> None:
    from django.db import connection

    from uploads.models import FileRecord

    statuses = ["completed"] * 8 + ["uploading", "failed"]
    batch = []
    for index in range(count):
        file_id = uuid.uuid4()
        batch.append(
            FileRecord(
                id=file_id,
                name=f"file {index}.bin",
                file_name=f"file-{index}.bin",
                file_size=index * 1000,
                file=f"uploads/2025/01/01/{file_id.hex}",
                upload_status=statuses[index % len(statuses)],
                upload_id="",
                total_parts=1,
                part_size=8 * MIB,
                created_by=user,
            )
        )
        if len(batch) == 5000:
            FileRecord.objects.bulk_create(batch)
            batch = []
    FileRecord.objects.bulk_create(batch)
    with connection.cursor() as cursor:
        # Spread the creation times over a year, as real rows would be (bulk_create stamps now).
        cursor.execute(
            "UPDATE uploads_filerecord SET created = now() - random() * interval '365 days'"
        )
        # As autovacuum leaves a table at rest: statistics, and a visibility map that lets a
        # count read the index alone.
        cursor.execute("VACUUM ANALYZE uploads_filerecord")


def deep_cursor(user: Any, rows_before: int) -> str:
    """The cursor a client holds once it has paged to the last page, made without walking
    there: listed from the last row before that page on, a page of that one row has it as
    its `next`."""
    from django.db.models import Q

    from uploads.pagination import START, keyset_page
    from uploads.selectors import file_list_for_user

    listing = file_list_for_user(user=user, status="all")
    last = listing[rows_before - 1]
    onwards = Q(created__lt=last.created) | Q(created=last.created, pk__lte=last.pk)
    page = keyset_page(listing.filter(onwards), cursor=START, size=1)
    assert page.items == [last] and page.next, page
    return page.next


def count_queries(client: Any, path: str) -> tuple[int, list[str]]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        response = client.get(path)
    assert response.status_code == 200, response.content[:300]
    return len(captured.captured_queries), [q["sql"][:40] for q in captured.captured_queries]


def run(quick: bool = False) -> list[Row]:
    from django.contrib.auth import get_user_model
    from django.test import Client

    rows_in_db = 1_000 if smoke() else 10_000 if quick else 100_000
    # At 100,000 rows a request can take half a second on a busy machine: few rounds, interleaved.
    samples = 6 if smoke() else 20 if quick else 30
    try:
        user, _ = get_user_model().objects.get_or_create(username="bench-listing")
        fill(user, rows_in_db)
        token = access_token(user)
        deep = math.ceil(rows_in_db / PAGE_SIZE)
        cursor = urlencode({"cursor": deep_cursor(user, (deep - 1) * PAGE_SIZE)})
        paths = {
            "bare": "/bench/constant",
            "jwt": "/bench/constant-jwt",
            "page1": "/v1/files?status=all&cursor=",
            "deep": f"/v1/files?status=all&{cursor}",
            "page1_number": "/v1/files?status=all&page=1",
            "deep_number": f"/v1/files?status=all&page={deep}",
        }
        client = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
        queries = {name: count_queries(client, paths[name]) for name in ("page1", "deep")}
        latencies: dict[str, list[float]] = {name: [] for name in paths}
        with Server(settings_module="bench.settings", workers=WORKERS, threads=THREADS) as server:
            server.warm_up()
            http = Http(server.base, token)
            warm = 2 if smoke() else 5
            for round_ in range(samples + warm):
                for name, path in paths.items():
                    start = time.perf_counter()
                    status, body = http.json("GET", path)
                    elapsed = (time.perf_counter() - start) * 1000
                    assert status == 200, (path, status, body)
                    if name.startswith("deep"):
                        assert len(body["results"]) == rows_in_db - (deep - 1) * PAGE_SIZE
                        assert body["next"] is None, body["next"]
                    if round_ >= warm:  # the first rounds warm connections and caches
                        latencies[name].append(elapsed)
            http.close()
    finally:
        if _database:
            drop_postgres(_database[0])
    bare = median(latencies["bare"])
    result = []
    for name, label, goal in (
        ("page1", "page 1 by cursor", True),
        ("deep", f"deep page {deep:,} by cursor", True),
        ("page1_number", "page 1 by page number", False),
        ("deep_number", f"deep page {deep:,} by page number", False),
    ):
        p50 = median(latencies[name])
        note = f"p95 {percentile(latencies[name], 0.95):.1f} ms, {samples} requests; "
        result.append(
            Row(
                measure=f"list {rows_in_db:,} rows, {label} of {PAGE_SIZE}: p50 over HTTP",
                ours=p50,
                baseline=bare,
                unit="ms",
                goal=f"≤ {GOAL_MS:.0f} ms" if goal else "",
                passed=p50 <= GOAL_MS if goal else None,
                note=note
                + (
                    "baseline: bare Ninja endpoint (no auth, constant) in the same gunicorn"
                    if goal
                    else "for information: COUNT(*) of every row, OFFSET past the earlier pages"
                ),
            )
        )
    jwt = median(latencies["jwt"])
    result.append(
        Row(
            measure="bare endpoint + JWT auth only: p50 over HTTP",
            ours=jwt,
            baseline=bare,
            unit="ms",
            goal="",
            passed=None,
            note="where list time goes: JWT decode + user query, without the listing",
        )
    )
    result.append(
        Row(
            measure=f"queries per list by cursor: deep page vs page 1 ({rows_in_db:,} rows)",
            ours=queries["deep"][0],
            baseline=queries["page1"][0],
            unit="queries",
            goal="constant (= page 1)",
            passed=queries["deep"][0] == queries["page1"][0],
            note="in-process, CaptureQueriesContext: "
            + "; ".join(
                sql.split(" FROM")[0] if "COUNT" in sql else sql.split(" ")[0]
                for sql in queries["page1"][1]
            ),
        )
    )
    return result


def main() -> None:
    run_alone("listing")


if __name__ == "__main__":
    main()
