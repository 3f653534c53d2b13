"""API throughput: initiate + PUT + complete cycles per second, 8 concurrent clients, against
gunicorn (several workers) on PostgreSQL in local storage mode, next to the bare Ninja endpoint's
requests per second (bench/bench_urls.py) with the same clients, in the same server processes.

Each cycle uploads a one-part 1 KiB file: initiate, PUT the part to the app's local part URL,
complete. The load comes from bench/loadgen.py in a process of its own (threads with keep-alive
connections, loopback only, bounded in time and count). Note that on a 2-core machine the load
generator and the server share the CPUs, for the baseline and for ours alike.

Run: `python -m bench.throughput [--quick]`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from bench.common import Row, run_alone
from bench.harness import ROOT, Server, access_token, drop_postgres, setup_postgres_django, smoke

CLIENTS = 8
REQUESTS_PER_CYCLE = 3
CONN_MAX_AGE = 60
NEEDS_POSTGRES = True
STORE = "local disk (gunicorn on loopback)"
_database: list[str] = []


def setup() -> None:
    _database.append(setup_postgres_django("throughput", DJANGO_SETTINGS_MODULE="bench.settings"))


def workers() -> int:
    # gunicorn's usual advice is 2-4 per core; 2 per core, with 2 threads each, leaves room for
    # the load generator on the same machine.
    return 2 if smoke() else 2 * (os.cpu_count() or 1)


def load(server: Server, mode: str, token: str, seconds: float, warmup: float) -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "bench.loadgen",
        "--base",
        server.base,
        "--mode",
        mode,
        "--token",
        token,
        "--clients",
        str(CLIENTS),
        "--warmup",
        str(warmup),
        "--seconds",
        str(seconds),
        "--max",
        "200000",
    ]
    done = subprocess.run(
        command,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=seconds + warmup + 60,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed: {done.stderr[-500:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if result["errors"]:
        raise RuntimeError(
            f"{result['errors']} {mode} operations failed: {result['first_error']}; "
            f"server log: {server.log_tail(5)}"
        )
    return result


def run(quick: bool = False) -> list[Row]:
    from django.contrib.auth import get_user_model

    from uploads.models import FileRecord

    seconds, warmup = (1.0, 0.3) if smoke() else (3.0, 0.5) if quick else (12.0, 2.0)
    count = workers()
    try:
        user, _ = get_user_model().objects.get_or_create(username="bench-throughput")
        token = access_token(user)
        with Server(settings_module="bench.settings", workers=count, threads=2) as server:
            server.warm_up()
            # The baseline first, then ours; each gets its own warm-up, not counted.
            bare = load(server, "bare", token, seconds, warmup)
            cycles = load(server, "cycle", token, seconds, warmup)
        # The same with persistent database connections (the project's default opens one per
        # request): how much of a cycle is connection setup.
        with Server(
            settings_module="bench.settings",
            workers=count,
            threads=2,
            env={"DATABASE_CONN_MAX_AGE": str(CONN_MAX_AGE)},
        ) as server:
            server.warm_up()
            persistent = load(server, "cycle", token, seconds, warmup)
        completed = FileRecord.objects.filter(created_by=user, upload_status="completed").count()
        assert completed >= cycles["count"] + persistent["count"], (completed, cycles)
    finally:
        if _database:
            drop_postgres(_database[0])
    setup_note = f"{CLIENTS} clients, gunicorn {count} workers × 2 threads, {seconds:.0f} s"
    api_rps = cycles["per_second"] * REQUESTS_PER_CYCLE
    return [
        Row(
            measure=f"API cycles/s: initiate + PUT + complete, {CLIENTS} clients",
            ours=cycles["per_second"],
            baseline=bare["per_second"] / REQUESTS_PER_CYCLE,
            unit="cycles/s",
            goal="(no goal; reported)",
            passed=None,
            note=f"{cycles['count']} cycles, p50 {cycles['latency_p50_ms']:.0f} ms per cycle; "
            f"baseline: bare endpoint's req/s ÷ {REQUESTS_PER_CYCLE}; {setup_note}",
        ),
        Row(
            measure=f"API req/s within those cycles vs bare Ninja endpoint, {CLIENTS} clients",
            ours=api_rps,
            baseline=bare["per_second"],
            unit="req/s",
            goal="(no goal; reported)",
            passed=None,
            note=f"bare: {bare['count']} requests, p50 {bare['latency_p50_ms']:.1f} ms",
        ),
        Row(
            measure=f"API cycles/s as above, DATABASE_CONN_MAX_AGE={CONN_MAX_AGE}",
            ours=persistent["per_second"],
            baseline=bare["per_second"] / REQUESTS_PER_CYCLE,
            unit="cycles/s",
            goal="(no goal; reported)",
            passed=None,
            note=f"persistent database connections (default 0: one per request); "
            f"{persistent['count']} cycles, p50 {persistent['latency_p50_ms']:.0f} ms; "
            "baseline as above",
        ),
    ]


def main() -> None:
    run_alone("throughput")


if __name__ == "__main__":
    main()
