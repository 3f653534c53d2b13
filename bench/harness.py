"""Plumbing for the benchmarks that talk to a real server: gunicorn in a subprocess, a throwaway
PostgreSQL database, a small keep-alive HTTP client, peak RSS from /proc.

Not a benchmark itself (no `run`). Importing it imports neither Django nor the project, so the
load generator (bench/loadgen.py) stays a light process.
"""

from __future__ import annotations

import atexit
import ctypes
import http.client
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
MB = 1_000_000
DEFAULT_PG_URL = "postgres://postgres@127.0.0.1:5432/postgres"


def smoke() -> bool:
    """BENCH_SMOKE=1 (the test suite): sizes shrink below --quick, figures mean nothing."""
    return os.environ.get("BENCH_SMOKE", "") == "1"


def percentile(samples: Sequence[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def median(samples: Iterable[float]) -> float:
    return statistics.median(list(samples))


def remove_workdir_at_exit() -> None:
    """Delete setup_django()'s temp directory (database, media root) when the process ends."""
    import shutil

    workdir = Path(os.environ["MEDIA_ROOT"]).parent
    if workdir.name.startswith("direct-uploads-bench-"):
        atexit.register(shutil.rmtree, workdir, True)


# --- PostgreSQL --------------------------------------------------------------------------


def postgres_server_url() -> str:
    """The PostgreSQL server the benches may create throwaway databases on.

    bench/run.py resolves it once (BENCH_DATABASE_URL, else a postgres DATABASE_URL, else the
    local default) and hands it down as BENCH_PG_URL with DATABASE_URL removed, so no bench can
    ever write into the database the environment names.
    """
    for name in ("BENCH_PG_URL", "BENCH_DATABASE_URL"):
        if os.environ.get(name):
            return os.environ[name]
    url = os.environ.get("DATABASE_URL", "")
    return url if url.startswith(("postgres://", "postgresql://")) else DEFAULT_PG_URL


def _with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))


def _admin_connect(url: str) -> Any:
    import psycopg

    parts = urlsplit(url)
    return psycopg.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 5432,
        user=parts.username or "postgres",
        password=parts.password or None,
        dbname=(parts.path or "/postgres").lstrip("/") or "postgres",
        autocommit=True,
        connect_timeout=5,
    )


def run_id() -> str:
    """Names this bench run's throwaway databases, so the runner can sweep leftovers."""
    if not os.environ.get("BENCH_RUN_ID"):
        os.environ["BENCH_RUN_ID"] = secrets.token_hex(4)
    return os.environ["BENCH_RUN_ID"]


def create_throwaway_postgres(label: str) -> str:
    """CREATE DATABASE bench_<run>_<label>_<random>; dropped at exit. Returns its URL."""
    server = postgres_server_url()
    # Pinned before setup_django() points DATABASE_URL at the new database.
    os.environ["BENCH_PG_URL"] = server
    name = f"bench_{run_id()}_{label}_{secrets.token_hex(3)}"
    with _admin_connect(server) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = _with_database(server, name)
    atexit.register(drop_postgres, url)
    return url


def drop_postgres(url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    assert name.startswith("bench_"), name  # never anything but our own throwaway databases
    try:
        from django.db import connections

        connections.close_all()
    except Exception:  # Django not set up: nothing to close
        pass
    server = postgres_server_url()
    with _admin_connect(server) as conn:
        # FORCE (PostgreSQL >= 13) ends the server workers' leftover connections too.
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def drop_run_databases(run: str) -> list[str]:
    """Drop every database a bench run left behind (a bench killed on timeout)."""
    server = postgres_server_url()
    try:
        with _admin_connect(server) as conn:
            rows = conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s", (f"bench\\_{run}\\_%",)
            ).fetchall()
            for (name,) in rows:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except Exception:
        return []
    return [name for (name,) in rows]


def setup_postgres_django(label: str, **env: str) -> str:
    """setup_django() against a fresh throwaway PostgreSQL database; returns its URL."""
    from bench.common import setup_django

    url = create_throwaway_postgres(label)
    setup_django(DATABASE_URL=url, **env)
    remove_workdir_at_exit()
    return url


def access_token(user: Any) -> str:
    """A JWT access token for `user`, as `POST /v1/auth/token/pair` would hand out."""
    from uploads.auth import refresh_token_for

    return str(refresh_token_for(user).access_token)


# --- gunicorn ------------------------------------------------------------------------------


def _die_with_parent() -> None:
    # If the bench process dies (crash, SIGKILL on timeout), the kernel stops its server too.
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("PPid:"):
                if int(line.split()[1]) == pid:
                    found.append(int(entry.name))
                break
    return sorted(found)


def proc_kib(pid: int, field: str) -> int:
    """A /proc/<pid>/status memory field (VmHWM = peak RSS, VmRSS = current), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise KeyError(field)


class Server:
    """`gunicorn project.wsgi` on loopback, with this process's environment (database, media).

    `python` and `app` serve another WSGI application from another virtualenv the same way (the
    peer bench's django-s3-file-field site).
    """

    def __init__(
        self,
        *,
        settings_module: str = "project.settings",
        workers: int = 2,
        threads: int = 2,
        env: dict[str, str] | None = None,
        python: str = sys.executable,
        app: str = "project.wsgi:application",
    ) -> None:
        import importlib.util

        from bench.common import free_port

        if python == sys.executable and importlib.util.find_spec("gunicorn") is None:
            raise RuntimeError(
                "gunicorn is not installed in this environment: `pip install gunicorn`"
            )
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        self.log = Path(tempfile.mkstemp(prefix="bench-gunicorn-", suffix=".log")[1])
        command = [
            python,
            "-m",
            "gunicorn",
            app,
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(workers),
            # gthread keeps connections alive (sync workers close after every response).
            "--worker-class",
            "gthread",
            "--threads",
            str(threads),
            # Completing a 4 GiB local upload combines the parts inside one request.
            "--timeout",
            "900",
            # Workers fork from a master that imported the project once: a fast, even start.
            "--preload",
            "--chdir",
            str(ROOT),
            "--error-logfile",
            str(self.log),
            "--log-level",
            "warning",
        ]
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**os.environ, "DJANGO_SETTINGS_MODULE": settings_module, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
        atexit.register(self.stop)
        self._wait_ready()

    def _wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {self.log_tail()}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                conn.request("GET", "/accounts/login/")
                conn.getresponse().read()
                conn.close()
            except OSError:
                time.sleep(0.1)
                continue
            if len(self.worker_pids()) >= self.workers:
                return
            time.sleep(0.1)
        raise RuntimeError(f"gunicorn did not come up in {timeout} s: {self.log_tail()}")

    def warm_up(self, path: str = "/accounts/login/", rounds: int = 3) -> None:
        """Let every worker import the project before anything is timed."""
        from concurrent.futures import ThreadPoolExecutor

        def hit(_: int) -> None:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            conn.request("GET", path, headers={"Connection": "close"})
            conn.getresponse().read()
            conn.close()

        with ThreadPoolExecutor(self.workers * 2) as pool:
            list(pool.map(hit, range(self.workers * 2 * rounds)))

    def worker_pids(self) -> list[int]:
        return _children(self.process.pid)

    def peak_rss_bytes(self) -> list[int]:
        """Each worker's VmHWM: the OS's record of its peak resident memory."""
        return [proc_kib(pid, "VmHWM") * 1024 for pid in self.worker_pids()]

    def rss_bytes(self) -> list[int]:
        return [proc_kib(pid, "VmRSS") * 1024 for pid in self.worker_pids()]

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.unlink(missing_ok=True)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- A small keep-alive HTTP client ------------------------------------------------------


class Http:
    """One keep-alive connection; JSON in and out; bodies may be file-like (streamed)."""

    def __init__(self, base: str, token: str = "", blocksize: int = 1024 * 1024) -> None:
        parts = urlsplit(base)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.blocksize = blocksize
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.conn = self._connect()

    def _connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(
            self.host, self.port, timeout=900, blocksize=self.blocksize
        )

    def request(
        self, method: str, url: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        all_headers = {**self.headers, **(headers or {})}
        for attempt in (1, 2):
            try:
                self.conn.request(method, target, body=body, headers=all_headers)
                response = self.conn.getresponse()
                data = response.read()
                return response.status, dict(response.getheaders()), data
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # The server closed an idle keep-alive connection: reconnect once. A streamed
                # body cannot be replayed, so only bodiless or bytes requests are retried.
                self.conn.close()
                self.conn = self._connect()
                if attempt == 2 or not (body is None or isinstance(body, bytes | str)):
                    raise
        raise AssertionError("unreachable")

    def json(self, method: str, url: str, payload: Any = None) -> tuple[int, Any]:
        body = None if payload is None else json.dumps(payload)
        headers = {"Content-Type": "application/json"} if body is not None else {}
        status, _, data = self.request(method, url, body, headers)
        try:
            return status, json.loads(data) if data else None
        except ValueError:
            return status, data[:300]

    def close(self) -> None:
        self.conn.close()


class RepeatingBody:
    """A file-like body of `size` bytes made of one buffer repeated: streams, never builds."""

    def __init__(self, size: int, block: bytes) -> None:
        self.remaining = size
        self.block = memoryview(block)

    def read(self, size: int = -1) -> bytes:
        if self.remaining <= 0:
            return b""
        size = len(self.block) if size < 0 else size
        chunk = self.block[: min(size, len(self.block), self.remaining)]
        self.remaining -= len(chunk)
        return chunk.tobytes()
