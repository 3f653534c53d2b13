"""Settings S3 would refuse later are refused at startup by a system check, with a clear message."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError

ROOT = Path(__file__).resolve().parents[2]
LIFETIMES = ["FILE_UPLOAD_PRESIGNED_URL_EXPIRATION", "UPLOADS_DOWNLOAD_URL_EXPIRATION"]


@pytest.mark.parametrize("name", LIFETIMES)
@pytest.mark.parametrize("value", [0, -5, 604_801, 700_000, None, "3600", True])
def test_url_lifetimes_s3_refuses_are_refused(settings, name, value):
    setattr(settings, name, value)

    with pytest.raises(SystemCheckError) as refused:
        call_command("check")

    message = str(refused.value)
    assert f"{name} is {value!r}" in message
    assert "between 1 and 604,800 seconds (7 days)" in message


@pytest.mark.parametrize("name", LIFETIMES)
@pytest.mark.parametrize("value", [1, 3600, 604_800])
def test_url_lifetimes_within_sigv4_limits_pass(settings, name, value):
    setattr(settings, name, value)
    call_command("check")


@pytest.mark.parametrize(("value", "ok"), [(-1, False), (None, False), (0, True), (30, True)])
def test_deleted_retention_must_be_zero_or_more_days(settings, value, ok):
    settings.UPLOADS_DELETED_RETENTION_DAYS = value
    if ok:
        call_command("check")
        return
    with pytest.raises(SystemCheckError, match="UPLOADS_DELETED_RETENTION_DAYS"):
        call_command("check")


def test_the_environment_variable_stops_the_server_from_starting():
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "DEBUG": "1",
        "FILE_UPLOAD_PRESIGNED_URL_EXPIRATION": "700000",
    }
    # runserver and migrate run the same checks before anything else.
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "uploads.E001" in result.stderr
    assert "FILE_UPLOAD_PRESIGNED_URL_EXPIRATION is 700000" in result.stderr
