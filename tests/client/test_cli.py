"""`direct-uploads` in-process through `main([...])`, and once as the installed console script
(which also bounds its memory on a 1 GiB file)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.core.files.storage import default_storage

from tests.conftest import free_port
from tests.helpers import HttpApi, access_token
from tests.integration.support import KIB, MIB
from uploads.client.cli import (
    EXIT_AUTH,
    EXIT_CONFLICT,
    EXIT_DIFFERS,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    main,
)
from uploads.models import FileRecord

GIB = 1024 * MIB


@pytest.fixture
def env(local_disk, any_store_env):
    """The command line's environment, against the local store."""


@pytest.fixture
def any_store_env(monkeypatch, server, user, tmp_path):
    monkeypatch.setenv("DIRECT_UPLOADS_SERVER", server)
    monkeypatch.setenv("DIRECT_UPLOADS_TOKEN", access_token(user))
    monkeypatch.delenv("DIRECT_UPLOADS_USERNAME", raising=False)
    monkeypatch.delenv("DIRECT_UPLOADS_PASSWORD", raising=False)
    # The resume state goes to $XDG_CACHE_HOME: never the home directory of whoever runs tests.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture
def run(capsys):
    def run(*argv: object) -> tuple[int, Any]:
        code = main([str(arg) for arg in argv])
        out = capsys.readouterr().out
        return code, json.loads(out) if "--json" in argv else out

    return run


@pytest.mark.usefixtures("env")
def test_upload_list_download_delete(run, write_file, tmp_path):
    big, big_bytes = write_file(200 * KIB + 3, seed=1, name="a.bin")
    small, _ = write_file(10, seed=2, name="b.bin")

    code, uploaded = run(
        "upload",
        big,
        small,
        "--part-size",
        "64KiB",
        "--concurrency",
        "3",
        "--description",
        "nightly",
        "--json",
    )

    assert code == EXIT_OK
    first, second = uploaded["files"]
    assert first["ok"] and second["ok"]
    assert first["file"]["file_size"] == len(big_bytes) and first["parts_sent"] == 4
    assert first["file"]["upload_status"] == "completed"
    assert first["file"]["description"] == second["file"]["description"] == "nightly"
    big_id, small_id = first["file"]["id"], second["file"]["id"]

    code, listed = run("list", "--json")
    assert code == EXIT_OK and {f["id"] for f in listed} == {big_id, small_id}
    code, text = run("list")
    assert code == EXIT_OK and big_id in text and "completed" in text
    assert "200.0 KiB" in text  # sizes in the units every surface uses

    code, fetched = run("download", big_id, tmp_path / "copy.bin", "--json")
    assert code == EXIT_OK and fetched["bytes"] == len(big_bytes)
    assert (tmp_path / "copy.bin").read_bytes() == big_bytes

    assert run("delete", big_id, "--json") == (EXIT_OK, {"id": big_id, "deleted": True})
    code, failed = run("download", big_id, tmp_path / "again.bin", "--json")
    assert code == EXIT_NOT_FOUND and failed["error"]["code"] == "not_found"
    assert not (tmp_path / "again.bin").exists()


@pytest.mark.usefixtures("any_store_env")
def test_verify_says_whether_a_local_file_is_the_stored_one(run, backend, part_size, write_file):
    path, content = write_file(2 * part_size + 5, seed=4, name="kept.bin")
    code, uploaded = run("upload", path, "--part-size", part_size, "--json")
    assert code == EXIT_OK
    file_id = uploaded["files"][0]["file"]["id"]
    other, _ = write_file(0, name="other.bin")
    other.write_bytes(content[:100] + bytes([content[100] ^ 1]) + content[101:])

    code, same = run("verify", path, file_id, "--json")
    assert code == EXIT_OK and same["matches"] and same["local"] == same["stored"]
    code, text = run("verify", path, file_id)
    assert code == EXIT_OK and "matches" in text
    code, differs = run("verify", other, file_id, "--json")
    assert code == EXIT_DIFFERS and not differs["matches"]
    assert differs["method"] == same["method"] and differs["stored"] == same["stored"]
    code, text = run("verify", other, file_id)
    assert code == EXIT_DIFFERS and "DIFFERS" in text
    assert run("verify", path, uuid.uuid4())[0] == EXIT_NOT_FOUND


@pytest.mark.usefixtures("env")
def test_checksums_are_on_by_default_and_can_be_turned_off(run, write_file):
    path, _ = write_file(3 * KIB, seed=5)

    code, summed = run("upload", path, "--json")
    assert code == EXIT_OK and summed["files"][0]["file"]["checksum_algorithm"] == "SHA256"
    code, plain = run("upload", path, "--no-checksums", "--no-resume", "--json")
    assert code == EXIT_OK and plain["files"][0]["file"]["checksum_algorithm"] == ""


@pytest.mark.usefixtures("env")
def test_abort(run, server, user):
    api = HttpApi(server, user)
    try:
        unfinished = api.initiate(1000)["id"]
    finally:
        api.session.close()

    assert run("abort", unfinished, "--json") == (EXIT_OK, {"id": unfinished, "aborted": True})
    assert FileRecord.objects.get(pk=unfinished).upload_status == FileRecord.Status.ABORTED
    code, again = run("abort", unfinished, "--json")
    assert code == EXIT_CONFLICT and again["error"]["code"] == "invalid_state"
    assert run("abort", uuid.uuid4(), "--json")[0] == EXIT_NOT_FOUND


@pytest.mark.usefixtures("env")
def test_exit_codes(run, write_file, tmp_path, monkeypatch, settings):
    present, _ = write_file(100, seed=3)
    missing = tmp_path / "missing.bin"

    assert run("--help")[0] == EXIT_OK
    assert run("frobnicate")[0] == EXIT_USAGE
    assert run("upload", present, "--concurrency", "0")[0] == EXIT_USAGE
    assert run("upload", present, present, "--name", "one name")[0] == EXIT_USAGE
    assert run("upload", missing)[0] == EXIT_USAGE

    code, mixed = run("upload", present, missing, "--json")
    assert code == EXIT_PARTIAL
    assert [f["ok"] for f in mixed["files"]] == [True, False]
    assert mixed["files"][1]["error"]["code"] == "os_error"

    settings.MAX_FILE_UPLOAD_SIZE = 10
    code, refused = run("upload", present, "--json")
    assert code == EXIT_CONFLICT and refused["files"][0]["error"]["code"] == "too_large"

    code, down = run(
        "list", "--server", f"http://127.0.0.1:{free_port()}", "--retries", "0", "--json"
    )
    assert code == EXIT_UNAVAILABLE and down["error"]["code"] == "network_error"

    monkeypatch.setenv("DIRECT_UPLOADS_PASSWORD", "wrong")
    assert run("list", "--username", "alice")[0] == EXIT_AUTH
    monkeypatch.setenv("DIRECT_UPLOADS_PASSWORD", "alice-pass")
    assert run("list", "--username", "alice")[0] == EXIT_OK

    monkeypatch.delenv("DIRECT_UPLOADS_TOKEN")
    code, anonymous = run("list", "--json")
    assert code == EXIT_AUTH and anonymous["error"]["code"] == "not_authenticated"
    monkeypatch.delenv("DIRECT_UPLOADS_SERVER")
    assert run("list")[0] == EXIT_USAGE


def test_no_terminal_and_no_password_says_how_to_give_one(tmp_path):
    """Run as a script with nothing on standard input and no terminal to ask on: a clear
    message and the usage exit code, not a traceback."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIRECT_UPLOADS_")} | {
        "DIRECT_UPLOADS_SERVER": f"http://127.0.0.1:{free_port()}",
        "DIRECT_UPLOADS_USERNAME": "alice",
        "XDG_CACHE_HOME": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "-m", "uploads.client", "list"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        start_new_session=True,  # no controlling terminal: getpass cannot open /dev/tty
        timeout=60,
    )
    assert done.returncode == EXIT_USAGE, done.stderr
    assert "no password for alice: set DIRECT_UPLOADS_PASSWORD" in done.stderr
    assert "Traceback" not in done.stderr


# Runs a command and writes its peak RSS (KiB) to argv[1]. Measuring from here rather than from
# pytest matters: Linux carries a process's peak RSS over exec, so a child forked straight from
# pytest (150 MiB and more) would report pytest's own peak, whatever the client does.
PEAK_RSS_LAUNCHER = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
with open(sys.argv[1], "w") as out:
    out.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def test_console_script_uploads_1_gib_with_bounded_memory(local_disk, server, user, tmp_path):
    """The installed `direct-uploads`, 4 × 64 MiB parts at a time: the client's peak RSS stays
    bounded (far below the file; parts are streamed from disk) and the server stores every byte."""
    source = tmp_path / "big.bin"
    with open(source, "wb") as handle:
        handle.truncate(GIB)  # Sparse: no disk used, and every read still returns real bytes.
    script = Path(sys.executable).with_name("direct-uploads")
    assert script.exists(), "run `pip install -e .` to install the console script"
    env = {
        **os.environ,
        "DIRECT_UPLOADS_SERVER": server,
        "DIRECT_UPLOADS_TOKEN": access_token(user),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }
    peak_file = tmp_path / "peak-rss-kib"
    command = [script, "upload", source, "--part-size", "64MiB", "--concurrency", "4", "--json"]
    done = subprocess.run(
        [sys.executable, "-c", PEAK_RSS_LAUNCHER, peak_file, *command],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )

    assert done.returncode == EXIT_OK, done.stderr
    (result,) = json.loads(done.stdout)["files"]
    record = FileRecord.objects.get(pk=result["file"]["id"])
    key = str(record.file.name)
    try:
        assert record.upload_status == FileRecord.Status.COMPLETED
        assert (record.file_size, record.total_parts) == (GIB, 16)
        assert default_storage.size(key) == GIB
        peak = int(peak_file.read_text()) * KIB  # Linux reports KiB
        # Above a bare interpreter (so the measure is real), far below 1 GiB and 4 whole parts.
        assert 10 * MIB < peak < 400 * MIB, f"client peak RSS {peak / MIB:.0f} MiB"
    finally:
        default_storage.delete(key)  # 1 GiB on disk: do not leave it for pytest
