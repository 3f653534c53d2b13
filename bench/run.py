"""Run every benchmark and print one table; write it to bench/results.md.

Run: `python -m bench.run [--quick] [--only NAME ...]` (or `make bench` / `make bench-quick`).

Every module in bench/ with a top-level `run(quick) -> list[Row]` is a benchmark. Each runs in a
subprocess of its own (`python -m bench.run --child NAME`), so one bench's settings, environment
and servers cannot leak into the next, and a crash or a timeout becomes an error row instead of
ending the table. A module may define `setup()` to configure Django its own way (a PostgreSQL
database, bench settings); otherwise the child calls `bench.common.setup_django()`, as each
bench's own `main()` does.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import Row, machine_facts
from bench.harness import ROOT, drop_run_databases, postgres_server_url

BENCH_DIR = Path(__file__).resolve().parent
# Table order for the benches we know; any other bench module follows, alphabetically.
ORDER = [
    "presign",
    "initiate",
    "complete",
    "cleanup",
    "client",
    "browser",
    "progress",
    "datapath",
    "listing",
    "throughput",
    "peer",
]
# Seconds each bench may take at most (full, quick); the whole run stays inside TOTAL_BUDGET.
CAPS = {
    "presign": (120, 30),
    "initiate": (60, 20),
    "complete": (60, 20),
    "cleanup": (200, 30),
    "client": (120, 30),
    "browser": (120, 45),
    "progress": (150, 75),
    "datapath": (240, 40),
    "listing": (150, 35),
    "throughput": (120, 40),
    "peer": (180, 60),
}
DEFAULT_CAP = (120, 30)
# The limits: a full run under 10 minutes, a quick run under 2 (margin kept for startup).
TOTAL_BUDGET = {False: 570.0, True: 115.0}
# Set by the benches' own settings; kept from reaching a child so that no outside DATABASE_URL,
# bucket or media root can steer a bench at real data.
EXTRA_STRIPPED = {"DJANGO_SETTINGS_MODULE", "BENCH_PG_URL"}


def discover() -> list[str]:
    """Bench modules: files in bench/ that define a top-level `run` function (read, not run)."""
    names = []
    for path in BENCH_DIR.glob("*.py"):
        if path.stem in {"__init__", "run"}:
            continue
        try:
            tree = ast.parse(path.read_text(), filename=str(path))
        except SyntaxError:
            names.append(path.stem)  # let the child report the error as a row
            continue
        if any(isinstance(node, ast.FunctionDef) and node.name == "run" for node in tree.body):
            names.append(path.stem)
    known = [name for name in ORDER if name in names]
    return known + sorted(set(names) - set(known))


def project_env_names() -> set[str]:
    """Every environment variable project/settings.py reads."""
    source = (ROOT / "project" / "settings.py").read_text()
    return set(re.findall(r"env_\w+\(\s*\"([A-Z0-9_]+)\"", source)) | EXTRA_STRIPPED


def child_env(smoke: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in project_env_names()}
    env["BENCH_PG_URL"] = postgres_server_url()
    env.setdefault("BENCH_RUN_ID", os.environ.get("BENCH_RUN_ID") or f"{os.getpid():x}")
    env["PYTHONUNBUFFERED"] = "1"
    # A bench-only key, long enough for HS256 (PyJWT warns under 32 bytes).
    env["SECRET_KEY"] = f"bench-only-secret-key-{secrets.token_hex(16)}"
    if smoke:
        env["BENCH_SMOKE"] = "1"
    return env


# --- Child: one bench in this process --------------------------------------------------------


def _database_fact() -> str:
    import sqlite3

    from django.db import connection

    if connection.vendor == "sqlite":
        return f"SQLite {sqlite3.sqlite_version}"
    if connection.vendor == "postgresql":
        connection.ensure_connection()
        version: int = getattr(connection, "pg_version", 0)
        return f"PostgreSQL {version // 10000}.{version % 100}"
    return connection.vendor


def child_main(name: str, quick: bool, out: Path) -> None:
    # A timeout sends SIGTERM: unwind, so servers stop and throwaway databases are dropped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    import bench.common as common

    used_s3: list[bool] = []
    original = common.moto_s3

    @contextlib.contextmanager
    def recording_moto_s3() -> Iterator[Any]:
        used_s3.append(True)
        with original() as value:
            yield value

    # Patched before the bench is imported, so its `from bench.common import moto_s3` sees it.
    common.moto_s3 = recording_moto_s3
    module = importlib.import_module(f"bench.{name}")
    setup = getattr(module, "setup", None)
    setup() if callable(setup) else common.setup_django()
    facts = {"database": getattr(module, "DATABASE", "") or _database_fact()}
    start = time.perf_counter()
    rows = module.run(quick=quick)
    facts["seconds"] = f"{time.perf_counter() - start:.1f}"
    store = getattr(module, "STORE", "")
    if not store:
        store = "S3 API (moto server on loopback)" if used_s3 else "local disk"
    facts["store"] = store
    out.write_text(json.dumps({"rows": [asdict(row) for row in rows], "facts": facts}))


# --- Parent: every bench in a subprocess -----------------------------------------------------


def error_row(name: str, message: str) -> Row:
    return Row(f"{name}: did not finish", 0.0, None, "", "", False, message)


def run_one(name: str, quick: bool, smoke: bool, timeout: float, logs: Path) -> dict[str, Any]:
    out = logs / f"{name}.json"
    log = logs / f"{name}.log"
    # Everything the bench puts in temp files (setup_django's database and media root, server
    # logs) lands here and goes when it ends, even when it was killed.
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    try:
        return _run_child(
            name, quick, {**child_env(smoke), "TMPDIR": str(workdir)}, timeout, out, log
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _run_child(
    name: str, quick: bool, env: dict[str, str], timeout: float, out: Path, log: Path
) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.run", "--child", name, "--out", str(out)]
    if quick:
        command.append("--quick")
    start = time.perf_counter()
    with open(log, "wb") as log_file:
        # A session of its own: on timeout the bench and anything it started (gunicorn, a load
        # generator) are signalled together, by this process group's id.
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            process.wait(timeout=max(timeout, 1))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            seconds = time.perf_counter() - start
            return {
                "rows": [error_row(name, f"timed out after {timeout:.0f} s (log: {log})")],
                "facts": {"seconds": f"{seconds:.1f}", "status": "timeout"},
            }
    seconds = time.perf_counter() - start
    if process.returncode != 0 or not out.exists():
        tail = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
        reason = tail[-1] if tail else f"exit status {process.returncode}"
        return {
            "rows": [error_row(name, f"{reason[:300]} (log: {log})")],
            "facts": {"seconds": f"{seconds:.1f}", "status": "error"},
        }
    result: dict[str, Any] = json.loads(out.read_text())
    result["rows"] = [Row(**row) for row in result["rows"]]
    result["facts"]["seconds"] = f"{seconds:.1f}"
    result["facts"].setdefault("status", "ok")
    return result


# --- The table -------------------------------------------------------------------------------


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "s":
        return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"
    if unit == "ms":
        return f"{value:.1f} ms"
    if unit in {"MB/s", "MB", "req/s", "cycles/s"}:
        return f"{value:,.1f} {unit}" if value < 100 else f"{value:,.0f} {unit}"
    text = f"{value:,.0f}" if float(value).is_integer() else f"{value:,.3g}"
    return f"{text} {unit}".strip()


def table(rows: list[Row]) -> str:
    lines = [
        "| measure | ours | baseline | ratio | goal | pass/miss | note |",
        "|---|---:|---:|---:|---|---|---|",
    ]
    for row in rows:
        failed = row.measure.endswith(": did not finish")
        ratio = row.ratio
        verdict = {True: "pass", False: "**miss**", None: ""}[row.passed]
        if failed:
            verdict = "**error**"
        lines.append(
            "| "
            + " | ".join(
                [
                    row.measure,
                    "—" if failed else fmt(row.ours, row.unit),
                    fmt(row.baseline, row.unit),
                    f"{ratio:.2f}×" if ratio else "—",
                    row.goal or "",
                    verdict,
                    row.note.replace("|", "\\|").replace("\n", " "),
                ]
            )
            + " |"
        )
    return "\n".join(lines)


RATIO_NOTE = (
    "Ratios compare with a baseline measured in the same run, oriented so that above 1 means "
    "ours is faster or higher: times are baseline ÷ ours, rates, sizes and counts are "
    "ours ÷ baseline (for peak memory and query counts, 1.00× means flat)."
)


def report(
    results: dict[str, dict[str, Any]],
    quick: bool,
    started: datetime,
    seconds: float,
    load: tuple[str, str],
) -> str:
    facts = machine_facts()
    mode = (
        "smoke (BENCH_SMOKE=1)"
        if os.environ.get("BENCH_SMOKE") == "1"
        else ("quick" if quick else "full")
    )
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    rows = [row for result in results.values() for row in result["rows"]]
    lines = [
        "# Benchmark results",
        "",
        f"- date: {started:%Y-%m-%d %H:%M} UTC · mode: {mode} · total {seconds:.0f} s",
        f"- machine: {facts['cores']} cores, {mem_gib:.0f} GiB RAM, {facts['platform']}",
        f"- Python {facts['python']}, Django {facts['django']}",
        f"- load average (1 min) at start / end: {load[0]} / {load[1]}"
        + (
            " — above the core count: other work shared the CPUs, the timings are noisy"
            if max(float(load[0]), float(load[1])) > float(facts["cores"])
            else ""
        ),
        "",
        "| bench | store | database | seconds | status |",
        "|---|---|---|---:|---|",
    ]
    for name, result in results.items():
        f = result["facts"]
        lines.append(
            f"| {name} | {f.get('store', '—')} | {f.get('database', '—')} | "
            f"{f.get('seconds', '')} | {f.get('status', 'ok')} |"
        )
    lines += ["", table(rows), "", RATIO_NOTE, ""]
    return "\n".join(lines)


def load_average() -> str:
    return f"{os.getloadavg()[0]:.2f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smoke sizes: the whole run < 2 min")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these benches")
    parser.add_argument("--output", type=Path, default=BENCH_DIR / "results.md")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child_main(args.child, args.quick, args.out)
        return

    names = discover()
    if args.only:
        unknown = sorted(set(args.only) - set(names))
        if unknown:
            parser.error(f"no bench named {', '.join(unknown)}; there are: {', '.join(names)}")
        names = [name for name in names if name in args.only]
    started = datetime.now(UTC)
    start = time.perf_counter()
    load_start = load_average()
    deadline = start + TOTAL_BUDGET[args.quick]
    smoke = os.environ.get("BENCH_SMOKE", "") == "1"
    results: dict[str, dict[str, Any]] = {}
    os.environ.setdefault("BENCH_RUN_ID", f"{os.getpid():x}")
    logs = Path(tempfile.mkdtemp(prefix="bench-logs-"))
    for index, name in enumerate(names):
        cap = CAPS.get(name, DEFAULT_CAP)[1 if args.quick else 0]
        # Leave every later bench at least a few seconds to report its own timeout.
        reserve = 5 * (len(names) - index - 1)
        timeout = min(cap, deadline - time.perf_counter() - reserve)
        print(f"[bench] {name} (up to {timeout:.0f} s) ...", file=sys.stderr, flush=True)
        results[name] = run_one(name, args.quick, smoke, timeout, logs)
        print(
            f"[bench] {name}: {results[name]['facts'].get('status', 'ok')} "
            f"in {results[name]['facts']['seconds']} s",
            file=sys.stderr,
            flush=True,
        )
    # A bench killed on timeout may leave its throwaway database behind.
    leftovers = drop_run_databases(os.environ["BENCH_RUN_ID"])
    if leftovers:
        print(f"[bench] dropped leftover databases: {', '.join(leftovers)}", file=sys.stderr)
    seconds = time.perf_counter() - start
    text = report(results, args.quick, started, seconds, (load_start, load_average()))
    print(text)
    args.output.write_text(text)
    print(f"[bench] written to {args.output}; logs in {logs}", file=sys.stderr)
    # Misses are findings, not failures; a bench that crashed or timed out is a failure.
    if any(result["facts"].get("status", "ok") != "ok" for result in results.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
