"""A store that accepts connections and never answers: every call the API makes to it is
bounded by the botocore timeouts and retries set once in project/settings.py.

A real listening socket on loopback (its connections are accepted and then left silent), and
a proxy in front of a moto server that answers everything but CompleteMultipartUpload, which it
leaves hanging: completion waits for its own, longer timeout, and no more.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from django.db import connections

from project.settings import AWS_S3_READ_TIMEOUT, s3_storage_options
from tests.factories import FileRecordFactory
from tests.helpers import ApiClient
from uploads.models import FileRecord

# Serial: its time bounds are about this test's requests, not a neighbour's load.
pytestmark = [pytest.mark.django_db, pytest.mark.serial]

# The promise: initiate, presign, parts and abort answer within 15 s against a hung store.
BOUND_S = 15
UPLOADS = "/v1/files/uploads"


class SilentStore:
    """Accepts every connection and never sends a byte."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.held: list[socket.socket] = []
        self.stopped = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _accept(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stopped.is_set():
            try:
                self.held.append(self.sock.accept()[0])
            except OSError:
                continue

    def close(self) -> None:
        self.stopped.set()
        for conn in self.held:
            conn.close()
        self.sock.close()


def use_store(settings: Any, endpoint: str, bucket: str) -> None:
    options = s3_storage_options(
        bucket=bucket, region="us-east-1", endpoint_url=endpoint,
        access_key="testing", secret_key="testing",
    )  # fmt: skip
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": options},
    }


@pytest.fixture
def silent_store(settings: Any) -> Iterator[SilentStore]:
    store = SilentStore()
    use_store(settings, store.url, "hung")
    yield store
    store.close()


def timed(call: Any) -> tuple[Any, float]:
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def assert_503_in_time(response: Any, seconds: float, what: str) -> None:
    print(f"{what}: {response.status_code} after {seconds:.1f} s")
    assert response.status_code == 503, (what, response.content)
    assert response.json()["code"] == "storage_unavailable"
    assert seconds < BOUND_S, f"{what} took {seconds:.1f} s"


def in_thread(call: Any) -> Any:
    """Run `call` in a thread of its own, with its own database connection, closed after."""

    def run() -> tuple[Any, float]:
        try:
            return timed(call)
        finally:
            connections.close_all()

    return run


@pytest.mark.django_db(transaction=True)
def test_every_call_to_a_silent_store_ends_in_a_503_within_the_bound(
    silent_store: SilentStore, user: Any
) -> None:
    """The four calls run side by side (each waits about 11 s), to keep the suite short."""
    open_upload = {
        "created_by": user, "upload_status": FileRecord.Status.UPLOADING, "completed_at": None,
    }  # fmt: skip
    resumed = FileRecordFactory(upload_id="hung-upload-1", **open_upload)
    aborted = FileRecordFactory(upload_id="hung-upload-2", **open_upload)
    calls = {
        "initiate": lambda: ApiClient(user).post(UPLOADS, {"file_name": "a.bin", "file_size": 10}),
        "parts": lambda: ApiClient(user).get(f"{UPLOADS}/{resumed.pk}/parts"),
        "complete": lambda: ApiClient(user).post(
            f"{UPLOADS}/{resumed.pk}/complete", {"parts": [{"part_number": 1, "etag": "x"}]}
        ),
        "abort": lambda: ApiClient(user).delete(f"{UPLOADS}/{aborted.pk}"),
    }
    with ThreadPoolExecutor(len(calls)) as pool:
        futures = {what: pool.submit(in_thread(call)) for what, call in calls.items()}
        answers = {what: future.result() for what, future in futures.items()}
    for what, (response, seconds) in answers.items():
        assert_503_in_time(response, seconds, what)
    assert set(FileRecord.objects.values_list("pk", flat=True)) == {resumed.pk, aborted.pk}

    # Signing needs no call to the store: it answers long before one read timeout of the store.
    response, seconds = timed(
        lambda: ApiClient(user).post(f"{UPLOADS}/{resumed.pk}/presign", {"part_numbers": [1]})
    )
    assert response.status_code == 200, response.content
    assert seconds < AWS_S3_READ_TIMEOUT


class _HangOnComplete(BaseHTTPRequestHandler):
    """Forwards to moto, except CompleteMultipartUpload (POST ?uploadId=), left unanswered."""

    upstream = ""
    release = threading.Event()

    def _forward(self) -> None:
        if self.command == "POST" and "uploadId=" in self.path:
            self.release.wait(60)
            return
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        answer = requests.request(
            self.command, self.upstream + self.path, data=body, timeout=30,
            headers={k: v for k, v in self.headers.items() if k.lower() != "host"},
        )  # fmt: skip
        self.send_response(answer.status_code)
        for name, value in answer.headers.items():
            if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.content)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer.content)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

    def log_message(self, *args: Any) -> None:
        pass


def test_completion_waits_for_its_own_timeout_then_503(
    settings: Any, moto_endpoint: str, user: Any
) -> None:
    import boto3

    bucket = "hang-on-complete"
    boto3.client(
        "s3", endpoint_url=moto_endpoint, region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
    ).create_bucket(Bucket=bucket)  # fmt: skip
    handler = type("Handler", (_HangOnComplete,), {"upstream": moto_endpoint})
    proxy = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        use_store(settings, f"http://127.0.0.1:{proxy.server_port}", bucket)
        settings.AWS_S3_COMPLETE_READ_TIMEOUT = 2
        api = ApiClient(user)
        init = api.post(UPLOADS, {"file_name": "a.bin", "file_size": 10}).json()
        put = requests.put(init["presigned_urls"][0]["url"], data=b"0123456789", timeout=30)
        assert put.status_code == 200, put.text
        parts = [{"part_number": 1, "etag": put.headers["ETag"]}]

        response, seconds = timed(
            lambda: api.post(f"{UPLOADS}/{init['id']}/complete", {"parts": parts})
        )
        print(f"complete against a store hanging on completion: {seconds:.1f} s")
        assert response.status_code == 503, response.content
        # Its own timeout (2 s here), once: not the short timeout of other calls, no retry.
        assert 2 <= seconds < 2 + 4, seconds
        record = FileRecord.objects.get(pk=init["id"])
        assert record.upload_status == FileRecord.Status.UPLOADING
        assert record.completing_since is None
    finally:
        handler.release.set()
        proxy.shutdown()
        proxy.server_close()
