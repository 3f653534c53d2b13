"""The production shape, started for real and driven over HTTP.

PostgreSQL (a fresh database, dropped afterwards) + S3 (a moto server on loopback) + Redis as
the django-q2 broker and the cache + gunicorn (the shipped gunicorn.conf.py, two sync workers)
behind nginx (the shipped deploy/nginx/direct-uploads.conf), all configured only through the
environment variables README's "Production" section lists. One upload runs end to end
(initiate, parts PUT straight to S3, complete, download), with complete pinned to a different
worker than initiate; then the cleanup task goes through the Redis broker to one qcluster
worker, which aborts an expired upload in the database and in the bucket. And 50 clients that
stall their request bodies do not keep normal clients from being answered.

Skipped, with the reason, only when PostgreSQL, Redis or nginx cannot be found.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
import requests

from tests.conftest import free_port
from tests.helpers import unavailable

# Serial: its time bounds are about this test's requests, not a neighbour's load.
pytestmark = pytest.mark.serial
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
MIB = 1024 * 1024
BOOT_TIMEOUT_S = 30
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else "")
PASSWORD = secrets.token_urlsafe(16)


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def services() -> None:
    missing = [
        f"{name} at {host}:{port}"
        for name, host, port in (("PostgreSQL", PG["host"], PG["port"]),
                                 ("Redis", REDIS_HOST, REDIS_PORT))
        if not _reachable(host, port)
    ]  # fmt: skip
    if missing:
        unavailable(f"the production shape needs {' and '.join(missing)}, which is unreachable")
    if not NGINX:
        unavailable("the production shape needs nginx (`make test` installs Debian's as root)")


@pytest.fixture
def database(services: None) -> Iterator[str]:
    """A fresh PostgreSQL database for this run, dropped afterwards."""
    import psycopg

    name = f"test_prodshape_{secrets.token_hex(6)}"
    with psycopg.connect(dbname="postgres", autocommit=True, **PG) as admin:  # type: ignore[arg-type]
        admin.execute(f'CREATE DATABASE "{name}"')
    yield f"postgres://{PG['user']}@{PG['host']}:{PG['port']}/{name}"
    with psycopg.connect(dbname="postgres", autocommit=True, **PG) as admin:  # type: ignore[arg-type]
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def redis_url(services: None) -> Iterator[str]:
    """A Redis database index for this run; only our own keys are removed afterwards."""
    import redis

    index = 8 + secrets.randbelow(8)
    url = f"redis://{REDIS_HOST}:{REDIS_PORT}/{index}"
    yield url
    client = redis.Redis.from_url(url)
    for key in client.scan_iter("*direct-uploads*"):
        client.delete(key)


@dataclass
class Shape:
    env: dict[str, str]
    base_url: str  # nginx, what clients reach
    app_url: str  # gunicorn itself, behind nginx
    bucket: str
    s3: Any
    database_url: str

    def manage(self, *args: str, timeout: int = 60) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args], env=self.env, cwd=ROOT,
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        assert done.returncode == 0, f"manage.py {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def sql(self, query: str, *params: object) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.database_url, autocommit=True) as conn:
            cursor = conn.execute(query, params)  # type: ignore[arg-type]
            return cursor.fetchall() if cursor.description else []


def wait_until(condition: Any, what: str, timeout: float = BOOT_TIMEOUT_S) -> Any:
    """Poll another process's state until `condition()` is truthy; fail naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def stop(process: subprocess.Popen[Any]) -> None:
    """End a process this test started (by its own pid) and wait for it."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@pytest.fixture
def shape(database: str, redis_url: str, moto_endpoint: str, tmp_path: Path) -> Iterator[Shape]:
    bucket = f"prodshape-{secrets.token_hex(6)}"
    port, app_port = free_port(), free_port()
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    env = {
        **keep,
        # --- exactly what README's Production section lists ---
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "SECRET_KEY": secrets.token_urlsafe(64),
        "ALLOWED_HOSTS": "127.0.0.1",
        "DATABASE_URL": database,
        "DATABASE_CONN_MAX_AGE": "60",
        "AWS_STORAGE_BUCKET_NAME": bucket,
        "AWS_S3_ENDPOINT_URL": moto_endpoint,
        "AWS_S3_REGION_NAME": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "REDIS_URL": redis_url,
        "Q_WORKERS": "1",
        "UPLOADS_CORS_ORIGINS": f"http://127.0.0.1:{port}",
        "NINJA_NUM_PROXIES": "1",
        "WEB_CONCURRENCY": "2",
        "GUNICORN_BIND": f"127.0.0.1:{app_port}",
        # --- only for this test: which worker answered ---
        "SERVED_BY_HEADER": "1",
    }
    s3 = boto3.client(
        "s3", endpoint_url=moto_endpoint, region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )  # fmt: skip
    result = Shape(
        env, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{app_port}", bucket, s3, database
    )
    result.manage("migrate", "--noinput", timeout=120)
    result.manage("setup_bucket", "--create", "--abort-incomplete-days", "7")
    user_env = {**env, "DJANGO_SUPERUSER_PASSWORD": PASSWORD}
    subprocess.run(
        [sys.executable, "manage.py", "createsuperuser", "--noinput", "--username", "ops",
         "--email", "ops@example.com"],
        env=user_env, cwd=ROOT, check=True, capture_output=True, timeout=60,
    )  # fmt: skip

    # README: `gunicorn` (reads gunicorn.conf.py) behind nginx (deploy/nginx/direct-uploads.conf).
    log = tmp_path / "gunicorn.log"
    web = subprocess.Popen(
        [str(BIN / "gunicorn"), "--error-logfile", str(log), "--graceful-timeout", "5"],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    proxy = subprocess.Popen(
        [NGINX, "-c", str(nginx_config(tmp_path, port, app_port)), "-p", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:

        def ready() -> bool:
            for name, process, errors in (
                ("gunicorn", web, log), ("nginx", proxy, tmp_path / "nginx-error.log")
            ):  # fmt: skip
                if process.poll() is not None:
                    text = errors.read_text() if errors.exists() else ""
                    pytest.fail(f"{name} exited:\n{text}")
            try:
                return requests.get(f"{result.base_url}/v1/openapi.json", timeout=5).ok
            except requests.RequestException:  # not listening yet, or still booting
                return False

        wait_until(ready, "nginx and gunicorn to answer")
        yield result
    finally:
        stop(proxy)
        stop(web)


def nginx_config(tmp_path: Path, port: int, app_port: int) -> Path:
    """A main nginx.conf around the shipped server snippet, everything under tmp_path."""
    config = tmp_path / "nginx.conf"
    # As root, nginx's workers would switch to `nobody`, who cannot enter the test's directory.
    user = "user root;" if os.geteuid() == 0 else ""
    temp = " ".join(
        f"{kind}_temp_path {tmp_path / kind};" for kind in ("client_body", "proxy", "fastcgi",
                                                             "uwsgi", "scgi")
    )  # fmt: skip
    config.write_text(
        f"""{user}
daemon off;
worker_processes 1;
pid {tmp_path / "nginx.pid"};
error_log {tmp_path / "nginx-error.log"} warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    {temp}
    upstream direct_uploads {{ server 127.0.0.1:{app_port}; keepalive 16; }}
    server {{
        listen 127.0.0.1:{port};
        include {ROOT / "deploy" / "nginx" / "direct-uploads.conf"};
    }}
}}
"""
    )
    return config


def worker_of(response: requests.Response) -> str:
    pid = response.headers.get("X-Served-By", "")
    assert pid.isdigit(), dict(response.headers)
    return pid


def fresh(method: str, url: str, **kwargs: Any) -> requests.Response:
    """One request on its own connection, so any worker may take it."""
    headers = {"Connection": "close", **kwargs.pop("headers", {})}
    return requests.request(method, url, headers=headers, timeout=30, **kwargs)


@contextmanager
def worker_held_busy(shape: Shape, pid: str) -> Iterator[None]:
    """Keep worker `pid` busy on a request whose body never comes, so the next request goes to
    the other worker. Which worker takes a new connection is the kernel's choice: a probe sent
    while the stall is held tells which one holds it; retry until it is `pid`. The stall goes to
    gunicorn itself: through nginx, a stalled body never reaches a worker at all."""
    target = urlsplit(shape.app_url)
    for _ in range(30):
        stall = socket.create_connection((target.hostname, target.port), timeout=30)
        stall.sendall(
            f"POST /v1/files/uploads HTTP/1.1\r\nHost: {target.netloc}\r\n"
            "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{".encode()
        )
        probe = worker_of(fresh("GET", f"{shape.base_url}/v1/files"))
        if probe != pid:
            try:
                yield
            finally:
                stall.close()
            return
        stall.close()
    pytest.fail(f"could not hold worker {pid} busy")


def bearer(shape: Shape) -> dict[str, str]:
    """The Authorization header of the superuser, signed in through the token endpoint."""
    pair = fresh(
        "POST", f"{shape.base_url}/v1/auth/token/pair",
        json={"username": "ops", "password": PASSWORD},
    )  # fmt: skip
    assert pair.status_code == 200, pair.text
    return {"Authorization": f"Bearer {pair.json()['access']}"}


def test_one_upload_across_two_workers_then_cleanup_through_redis(shape: Shape) -> None:
    started = time.monotonic()
    auth = bearer(shape)

    # Initiate on whichever worker takes it.
    content = os.urandom(5 * MIB + 12345)
    initiated = fresh(
        "POST", f"{shape.base_url}/v1/files/uploads", headers=auth,
        json={"file_name": "prod.bin", "file_size": len(content), "part_size": 5 * MIB},
    )  # fmt: skip
    assert initiated.status_code == 201, initiated.text
    upload = initiated.json()
    first_worker = worker_of(initiated)

    # Parts go straight to S3, never through the web tier.
    parts = []
    for target in upload["presigned_urls"]:
        assert target["url"].startswith(shape.env["AWS_S3_ENDPOINT_URL"]), target["url"]
        n = target["part_number"]
        put = requests.put(target["url"], data=content[(n - 1) * 5 * MIB : n * 5 * MIB], timeout=60)
        assert put.status_code == 200, put.text
        parts.append({"part_number": n, "etag": put.headers["ETag"]})

    # Complete on the other worker: any worker can finish what another started.
    with worker_held_busy(shape, first_worker):
        completed = fresh(
            "POST", f"{shape.base_url}/v1/files/uploads/{upload['id']}/complete",
            headers=auth, json={"parts": parts},
        )  # fmt: skip
    assert completed.status_code == 200, completed.text
    assert completed.json()["upload_status"] == "completed"
    second_worker = worker_of(completed)
    assert second_worker != first_worker

    # Download: a 302 to a short-lived S3 URL with the exact bytes.
    redirect = fresh(
        "GET",
        f"{shape.base_url}/v1/files/{upload['id']}/download",
        headers=auth,
        allow_redirects=False,
    )
    assert redirect.status_code == 302, redirect.text
    assert redirect.headers["Location"].startswith(shape.env["AWS_S3_ENDPOINT_URL"])
    assert requests.get(redirect.headers["Location"], timeout=60).content == content

    # An upload left to expire: the cleanup task, through Redis, must abort it everywhere.
    stale = fresh(
        "POST", f"{shape.base_url}/v1/files/uploads", headers=auth,
        json={"file_name": "stale.bin", "file_size": 100},
    ).json()  # fmt: skip
    shape.sql(
        "UPDATE uploads_filerecord SET upload_expires_at = now() - interval '1 hour' WHERE id = %s",
        stale["id"],
    )
    task_id = shape.manage(
        "shell", "-c",
        "from django_q.tasks import async_task; "
        "print(async_task('uploads.tasks.cleanup_all', task_name='prodshape cleanup'))",
    ).strip().splitlines()[-1]  # fmt: skip
    import redis

    broker = redis.Redis.from_url(shape.env["REDIS_URL"])
    queues = [key for key in broker.scan_iter("*direct-uploads*") if broker.type(key) == b"list"]
    assert sum(broker.llen(key) for key in queues) == 1, "the task is not waiting in Redis"

    worker = subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"], env=shape.env, cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        rows = wait_until(
            lambda: shape.sql("SELECT success FROM django_q_task WHERE id = %s", task_id),
            "the qcluster worker to run the cleanup task",
        )
    finally:
        stop(worker)
    assert rows == [(True,)]
    status, upload_id = shape.sql(
        "SELECT upload_status, upload_id FROM uploads_filerecord WHERE id = %s", stale["id"]
    )[0]
    assert (status, upload_id) == ("aborted", "")
    in_flight = shape.s3.list_multipart_uploads(Bucket=shape.bucket).get("Uploads", [])
    assert stale["upload_id"] not in {item["UploadId"] for item in in_flight}
    assert time.monotonic() - started < 60


def stalled_bodies(shape: Shape, count: int) -> list[socket.socket]:
    """`count` connections that send headers and the first byte of a body, then nothing: half a
    portal sign-in, half a token request."""
    target = urlsplit(shape.base_url)
    heads = [
        ("/accounts/login/", "application/x-www-form-urlencoded", b"username="),
        ("/v1/auth/token/pair", "application/json", b"{"),
    ]
    sockets = []
    for index in range(count):
        path, kind, start = heads[index % 2]
        sock = socket.create_connection((target.hostname, target.port), timeout=30)
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: {target.netloc}\r\nContent-Type: {kind}\r\n"
            "Content-Length: 1000\r\n\r\n".encode()
            + start
        )
        sockets.append(sock)
    return sockets


def test_normal_clients_are_answered_while_50_clients_stall_their_bodies(shape: Shape) -> None:
    auth = bearer(shape)

    stalled = stalled_bodies(shape, 50)
    try:
        time.sleep(0.5)
        slowest = 0.0
        for _ in range(10):
            for path, headers in (("/accounts/login/", {}), ("/v1/files", auth)):
                started = time.monotonic()
                response = fresh("GET", f"{shape.base_url}{path}", headers=headers)
                slowest = max(slowest, time.monotonic() - started)
                assert response.status_code == 200, (path, response.status_code)
        # Generous for a shared machine; measured about 30 ms (README, Production).
        print(f"slowest normal request while 50 bodies stall: {slowest * 1000:.0f} ms")
        assert slowest < 2, slowest

        # nginx ends a client that stops sending (client_body_timeout, 10 s): 408, then closed.
        stalled[0].settimeout(20)
        answer = stalled[0].recv(64)
        assert answer == b"" or answer.startswith(b"HTTP/1.1 408"), answer
    finally:
        for sock in stalled:
            sock.close()
