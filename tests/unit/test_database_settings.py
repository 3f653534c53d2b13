"""Production settings keep database connections open between requests, checked before reuse."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def database_settings(**env: str) -> dict[str, object]:
    """CONN_MAX_AGE and CONN_HEALTH_CHECKS as project.settings reads them from `env`."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DATABASE_")}
    script = (
        "import json, django; from django.conf import settings; django.setup(); "
        "db = settings.DATABASES['default']; "
        "print(json.dumps([db['CONN_MAX_AGE'], db['CONN_HEALTH_CHECKS']]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "project.settings", "SECRET_KEY": "x" * 50, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    age, checks = json.loads(result.stdout.strip().splitlines()[-1])
    return {"age": age, "checks": checks}


@pytest.mark.parametrize("url", ["postgres://u@db.example:5432/app", "sqlite:///x.sqlite3"])
def test_connections_persist_with_health_checks_by_default(url):
    assert database_settings(DATABASE_URL=url) == {"age": 600, "checks": True}


def test_both_can_be_turned_off():
    got = database_settings(DATABASE_CONN_MAX_AGE="0", DATABASE_CONN_HEALTH_CHECKS="0")
    assert got == {"age": 0, "checks": False}
