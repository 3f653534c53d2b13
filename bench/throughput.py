"""API throughput: initiate + PUT + complete cycles per second, 8 concurrent clients, against
gunicorn (several workers) on PostgreSQL in local storage mode, next to the bare Ninja endpoint's
requests per second (bench/bench_urls.py) with the same clients, in the same server processes.

Each cycle uploads a one-part 1 KiB file: initiate, PUT the part to the app's local part URL,
complete; the note gives each step's p50, so a cycle's time can be told apart (the PUT is the
local store's). Goal: with persistent database connections, as production runs, at least
GOAL_RATIO of the bare endpoint's cycles (its req/s ÷ 3). (A new database connection per
request halved the cycles when last measured: 23.4 against 45.5 cycles/s.) Reported beside it,
the ceiling that authentication alone leaves: the cycles/s if initiate and complete did nothing
but the token check every API call makes (measured on the bare endpoint behind that check),
which tells how much of the budget is left for the work.

The load comes from bench/loadgen.py in a process of its own (threads with keep-alive
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
# Threads per gunicorn worker, the same for the baseline and for ours. The kernel hands the
# clients' keep-alive connections to whichever worker accepts first, so a worker may hold three
# or four of the eight; with two threads, one of those connections then waits while the
# worker's threads wait on commits and disk syncs (a cycle's time is mostly such waits). Four
# serve every connection a worker may hold. Measured in paired quick runs: 0.053× → 0.076× and
# 0.078× → 0.090× (load average 8-9).
THREADS = 4
# Cycles/s, with persistent database connections (production's setting), against the bare
# endpoint's req/s ÷ REQUESTS_PER_CYCLE.
GOAL_RATIO = 0.3
NEEDS_POSTGRES = True
STORE = "local disk (gunicorn on loopback)"
_database: list[str] = []


def setup() -> None:
    _database.append(setup_postgres_django("throughput", DJANGO_SETTINGS_MODULE="bench.settings"))


def workers() -> int:
    # gunicorn's usual advice is 2-4 per core; 2 per core leaves room for the load generator on
    # the same machine.
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

    seconds, warmup = (1.0, 0.3) if smoke() else (3.0, 0.5) if quick else (8.0, 1.5)
    count = workers()
    try:
        user, _ = get_user_model().objects.get_or_create(username="bench-throughput")
        token = access_token(user)
        # Persistent database connections, as production runs: the baselines first, then ours;
        # each gets its own warm-up, not counted.
        with Server(
            settings_module="bench.settings",
            workers=count,
            threads=THREADS,
            env={"DATABASE_CONN_MAX_AGE": str(CONN_MAX_AGE)},
        ) as server:
            server.warm_up()
            bare = load(server, "bare", token, seconds, warmup)
            authenticated = load(server, "authenticated", token, seconds, warmup)
            cycles = load(server, "cycle", token, seconds, warmup)
        completed = FileRecord.objects.filter(created_by=user, upload_status="completed").count()
        assert completed >= cycles["count"], (completed, cycles)
    finally:
        if _database:
            drop_postgres(_database[0])
    setup_note = f"{CLIENTS} clients, gunicorn {count} workers × {THREADS} threads, {seconds:.0f} s"
    api_rps = cycles["per_second"] * REQUESTS_PER_CYCLE
    per_cycle = bare["per_second"] / REQUESTS_PER_CYCLE
    ratio = cycles["per_second"] / per_cycle if per_cycle else 0.0
    ceiling = _auth_ceiling(bare["per_second"], authenticated["per_second"])
    return [
        Row(
            measure=f"API cycles/s: initiate + PUT + complete, {CLIENTS} clients, "
            f"DATABASE_CONN_MAX_AGE={CONN_MAX_AGE}",
            ours=cycles["per_second"],
            baseline=per_cycle,
            unit="cycles/s",
            goal=f"≥ {GOAL_RATIO}× baseline",
            passed=ratio >= GOAL_RATIO,
            note=f"{cycles['count']} cycles, p50 {_ms(cycles['latency_p50_ms'])} per cycle "
            f"({_steps(cycles)}); baseline: bare endpoint's req/s ÷ {REQUESTS_PER_CYCLE}; "
            f"{setup_note}",
        ),
        Row(
            measure=f"API req/s within those cycles vs bare Ninja endpoint, {CLIENTS} clients",
            ours=api_rps,
            baseline=bare["per_second"],
            unit="req/s",
            goal="(no goal; reported)",
            passed=None,
            note=f"bare: {bare['count']} requests, p50 {_ms(bare['latency_p50_ms'])}",
        ),
        Row(
            measure="API cycles/s if the two API calls of a cycle only authenticated",
            ours=ceiling,
            baseline=per_cycle,
            unit="cycles/s",
            goal="(no goal; reported)",
            passed=None,
            note=f"the ceiling that authentication alone leaves: two requests to the bare "
            f"endpoint behind the API's token check (JWT, user lookup, password stamp; "
            f"{authenticated['per_second']:,.0f} req/s, {authenticated['count']} requests) and "
            f"one bare request; baseline as above",
        ),
    ]


def _auth_ceiling(bare_rps: float, authenticated_rps: float) -> float:
    """Cycles/s if initiate and complete cost no more than authenticating and the PUT no more
    than a bare request: the server's time per cycle is the sum of the three requests' times."""
    if not bare_rps or not authenticated_rps:
        return 0.0
    return 1 / (2 / authenticated_rps + 1 / bare_rps)


def _ms(value: float | None) -> str:
    # None: nothing finished inside the window (smoke runs on a busy machine).
    return "—" if value is None else f"{value:.1f} ms"


def _steps(result: dict[str, Any]) -> str:
    """Each request's p50 within a cycle: which of them the cycle's time goes to."""
    steps: dict[str, float] = result.get("step_p50_ms", {})
    return ", ".join(f"{name} {_ms(ms)}" for name, ms in steps.items())


def main() -> None:
    run_alone("throughput")


if __name__ == "__main__":
    main()
