"""The verifying S3 store: LocalStack's S3, which checks what moto lets through.

It refuses a presigned URL whose signature, expiry, part number or upload id was tampered with
(403) and a part whose body does not match its signed checksum (400 `BadDigest`). It runs from
its own virtualenv (`make s3-install` builds `.venv-s3`), because its pins clash with the
project's. `start()` runs one on a loopback port; `shared()` keeps one for the whole process.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.ports import free_port

ROOT = Path(__file__).resolve().parent.parent.parent
# `make test` points this at its virtualenv; by hand the default is the repository's own.
PYTHON_VARIABLE = "VERIFYING_S3_PYTHON"
DEFAULT_PYTHON = ROOT / ".venv-s3" / "bin" / "python"
# It checks every signature against this secret, whatever the access key id.
ACCESS_KEY = "test"
SECRET_KEY = "test"
START_TIMEOUT = 90.0
INSTALL_HINT = (
    "Install the verifying S3 store (once; about a minute, 185 MB in .venv-s3/):\n"
    "  make s3-install\n"
    f"or point {PYTHON_VARIABLE} at the python of a virtualenv holding "
    "tests/verifying_s3/requirements.lock."
)

# The parent's death takes the store with it (Linux), so an interrupted or killed test run
# leaves no server behind. Object files go to this store's own directory instead of a fixed
# /tmp/localstack-s3-storage that every store on the machine would share. Then the store runs
# as its own module would.
_BOOTSTRAP = """
import ctypes, os, runpy, signal, sys
if sys.platform.startswith("linux"):
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != int(os.environ["VERIFYING_S3_PARENT"]):
        sys.exit("verifying S3: parent exited before the store started")
from localstack.services.s3 import provider
provider.DEFAULT_S3_TMP_DIR = os.environ["VERIFYING_S3_FILES"]
runpy.run_module("localstack.runtime.main", run_name="__main__")
"""


class VerifyingS3Unavailable(RuntimeError):
    """The verifying S3 store is not installed or did not start."""


@dataclass
class VerifyingS3:
    endpoint: str
    process: subprocess.Popen[bytes]
    workdir: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)


def python() -> Path:
    """The interpreter of the store's virtualenv; raises with install steps when there is none."""
    configured = os.environ.get(PYTHON_VARIABLE)
    path = Path(configured) if configured else DEFAULT_PYTHON
    if not os.access(path, os.X_OK):
        raise VerifyingS3Unavailable(f"No verifying S3 store at {path}.\n{INSTALL_HINT}")
    return path


def start(port: int, *, timeout: float = START_TIMEOUT) -> VerifyingS3:
    """Start the store on 127.0.0.1:`port` and wait until its S3 service answers."""
    interpreter = python()
    workdir = Path(tempfile.mkdtemp(prefix="verifying-s3-"))
    address = f"127.0.0.1:{port}"
    environment = {
        **os.environ,
        # Its default is to skip signature checks: checking them is the point.
        "S3_SKIP_SIGNATURE_VALIDATION": "0",
        "SERVICES": "s3",
        "EAGER_SERVICE_LOADING": "1",
        # The default gateway binds every interface whatever it is told; hypercorn does not.
        "GATEWAY_SERVER": "hypercorn",
        "GATEWAY_LISTEN": address,
        "LOCALSTACK_HOST": address,
        "DNS_ADDRESS": "0",
        "DISABLE_EVENTS": "1",
        "SKIP_SSL_CERT_DOWNLOAD": "1",
        "FILESYSTEM_ROOT": str(workdir / "state"),
        "VERIFYING_S3_PARENT": str(os.getpid()),
        "VERIFYING_S3_FILES": str(workdir / "objects"),
    }
    log_path = workdir / "store.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(interpreter), "-c", _BOOTSTRAP],
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    store = VerifyingS3(f"http://{address}", process, workdir)
    deadline = time.monotonic() + timeout
    while not _s3_running(store.endpoint):
        if process.poll() is not None or time.monotonic() > deadline:
            why = (
                f"exited with status {process.returncode}"
                if process.poll() is not None
                else f"not ready after {timeout:.0f} s"
            )
            tail = log_path.read_text(errors="replace")[-3000:]
            store.stop()
            raise VerifyingS3Unavailable(
                f"The verifying S3 store ({interpreter}) {why}. Its log ends:\n{tail}\n"
                f"{INSTALL_HINT}"
            )
        time.sleep(0.1)
    return store


def _s3_running(endpoint: str) -> bool:
    try:
        with urllib.request.urlopen(f"{endpoint}/_localstack/health", timeout=2) as response:
            health = json.load(response)
    except (OSError, ValueError):
        return False
    return bool(health.get("services", {}).get("s3") == "running")


_shared: VerifyingS3 | None = None


def shared(port: int) -> str:
    """One store for the whole process (tests/ and e2e/ both ask for it); its endpoint.

    `port` is used only by the first call."""
    global _shared
    if _shared is None:
        _shared = start(port)
        atexit.register(_shared.stop)
    return _shared.endpoint


def stop_shared() -> None:
    global _shared
    if _shared is not None:
        _shared.stop()
        _shared = None


def main() -> None:
    """`python -m tests.verifying_s3 [PORT] [--check]`: run a store in the foreground for
    development, or (`--check`) start one, report how long it took, and stop it."""
    parser = argparse.ArgumentParser(prog="python -m tests.verifying_s3")
    parser.add_argument("port", type=int, nargs="?", help="default: any free port")
    parser.add_argument("--check", action="store_true", help="start, report, stop")
    options = parser.parse_args()
    began = time.monotonic()
    try:
        store = start(options.port or free_port())
    except VerifyingS3Unavailable as exc:
        sys.exit(str(exc))
    if options.check:
        store.stop()
        print(f"The verifying S3 store started in {time.monotonic() - began:.1f} s.")
        return
    print(
        f"Verifying S3 store: {store.endpoint}  (access key {ACCESS_KEY}, secret {SECRET_KEY}; "
        f"log {store.workdir / 'store.log'})  Ctrl-C stops it.",
        flush=True,
    )
    # `kill` stops it as cleanly as Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        store.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        store.stop()
