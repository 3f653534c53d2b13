"""Every benchmark still runs: each one through `python -m bench.run --quick --only NAME` at
smoke sizes (BENCH_SMOKE=1), so they cannot rot. Timings are not asserted, only that the bench
finished and reported rows. Benches that need PostgreSQL are marked `postgres` and skipped, with
the reason, when the run has no PostgreSQL configured (as the other postgres tests are).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.run import BENCH_DIR, discover, run_one

ROOT = BENCH_DIR.parent


def needs_postgres(name: str) -> bool:
    tree = ast.parse((BENCH_DIR / f"{name}.py").read_text())
    return any(
        isinstance(node, ast.Assign)
        and any(getattr(target, "id", "") == "NEEDS_POSTGRES" for target in node.targets)
        and getattr(node.value, "value", False) is True
        for node in tree.body
    )


def postgres_configured() -> bool:
    url = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("DATABASE_URL", "")
    return url.startswith(("postgres://", "postgresql://"))


def failure_report(done: subprocess.CompletedProcess[str]) -> str:
    """The table, the runner's messages and the tail of each bench's log."""
    logs = done.stderr.rsplit("logs in ", 1)[-1].strip() if "logs in " in done.stderr else ""
    paths = sorted(Path(logs).glob("*.log")) if logs else []
    tails = [path.read_text(errors="replace")[-3000:] for path in paths]
    return "\n".join([done.stdout, done.stderr, *tails])


BENCHES = [
    pytest.param(name, marks=[pytest.mark.postgres] if needs_postgres(name) else [])
    for name in discover()
]


def test_every_known_bench_is_discovered():
    assert {"presign", "complete", "datapath", "listing", "throughput"} <= set(discover())
    assert not {"run", "common", "harness", "loadgen", "settings", "bench_urls"} & set(discover())


@pytest.mark.parametrize("name", BENCHES)
def test_bench_runs_in_quick_mode(name, tmp_path):
    if needs_postgres(name) and not postgres_configured():
        pytest.skip(
            f"bench.{name} needs PostgreSQL and none is configured; run with "
            "DATABASE_URL=postgres://postgres@127.0.0.1:5432/test (it creates and drops its "
            "own bench_* database there)"
        )
    output = tmp_path / "results.md"
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--only", name, "--output", str(output)],
        cwd=ROOT,
        env={**os.environ, "BENCH_SMOKE": "1"},
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    assert done.returncode == 0, failure_report(done)
    text = output.read_text()
    assert "did not finish" not in text
    table = text.split("| measure | ours | baseline |", 1)[1].splitlines()[2:]
    assert [line for line in table if line.startswith("| ")], text  # at least one row


def test_a_crashing_bench_becomes_an_error_row(tmp_path):
    result = run_one("no_such_bench", quick=True, smoke=True, timeout=60, logs=tmp_path)
    (row,) = result["rows"]
    assert row.passed is False
    assert row.measure == "no_such_bench: did not finish"
    assert "No module named" in row.note
    assert result["facts"]["status"] == "error"
