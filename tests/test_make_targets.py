"""`make run` (local disk) and `make run-s3` (moto) keep their data apart: a record made in one
mode must never be opened in the other, where its object does not exist.

Read from `make -n` (what each target would run), so no server is started.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def django_commands(target: str) -> list[tuple[dict[str, str], str]]:
    """Each `manage.py` command the target runs, with the environment it sets for it."""
    dry = subprocess.run(
        ["make", "-n", target], cwd=ROOT, capture_output=True, text=True, check=True
    )
    commands = []
    for line in re.split(r";|&&|\n", dry.stdout.replace("\\\n", " ")):
        if "manage.py" not in line:
            continue
        words = shlex.split(line.split(">")[0])
        env = dict(word.split("=", 1) for word in words if re.match(r"^[A-Z_]+=", word))
        commands.append((env, words[words.index("manage.py") + 1]))
    return commands


def test_run_and_run_s3_use_different_databases_and_media() -> None:
    local = django_commands("run")
    s3 = django_commands("run-s3")
    assert {name for _, name in local} >= {"create_demo_users", "runserver"}
    assert {name for _, name in s3} >= {"create_demo_users", "setup_bucket", "runserver"}
    # `make run` uses the settings' defaults (db.sqlite3, media/); every run-s3 command, its own.
    assert all("DATABASE_URL" not in env and "MEDIA_ROOT" not in env for env, _ in local)
    databases = {env.get("DATABASE_URL") for env, _ in s3}
    media = {env.get("MEDIA_ROOT") for env, _ in s3}
    assert len(databases) == 1 and len(media) == 1, (databases, media)
    (database,) = databases
    assert database is not None and database.endswith("/db-s3.sqlite3")
    assert media != {None} and media != {str(ROOT / "media")}


def test_run_s3_starts_with_an_empty_database_as_moto_starts_empty() -> None:
    dry = subprocess.run(
        ["make", "-n", "run-s3"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    removal = dry.index("rm -f ")
    assert "db-s3.sqlite3" in dry[removal : dry.index("\n", removal)]
    assert removal < dry.index("create_demo_users")
