"""Upload throughput of the Python client (`uploads.client`) next to boto3's `upload_file`
(s3transfer): the same file, part size and concurrency, to the same moto S3 server, in one run.

Our client goes through the whole product: initiate, lazy signing, parts PUT straight to the
S3 endpoint, complete (which lists and verifies the parts), against the Django app served on a
background thread. boto3 talks to S3 directly. Both sides run in this one process, as does the
moto server, and the runs alternate, so load on the machine hits both alike.

Run: `python -m bench.client [--quick]`.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.common import MIB, Row, free_port, moto_s3, run_alone

GOAL_RATIO = 0.9
CONCURRENCY = 8


@contextmanager
def serve_app(*, static: bool = False) -> Iterator[str]:
    """The Django app on a loopback port, served by threads of this process, until exit; with
    `static`, its static files too (the portal's pages need them), as runserver would."""
    from django.contrib.staticfiles.handlers import StaticFilesHandler
    from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
    from django.core.wsgi import get_wsgi_application

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base signature
            pass

    port = free_port()
    server = ThreadedWSGIServer(("127.0.0.1", port), QuietHandler)
    app = get_wsgi_application()
    server.set_app(StaticFilesHandler(app) if static else app)
    thread = threading.Thread(target=server.serve_forever, name="bench-app", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()


def _random_file(directory: str, size: int) -> Path:
    # Random bytes: nothing on the way can shortcut a run of zeros.
    path = Path(directory) / "bench.bin"
    with open(path, "wb") as handle:
        for start in range(0, size, 16 * MIB):
            handle.write(os.urandom(min(16 * MIB, size - start)))
    return path


def run(quick: bool = False) -> list[Row]:
    from boto3.s3.transfer import TransferConfig
    from django.contrib.auth import get_user_model
    from django.core.files.storage import default_storage

    from uploads.auth import refresh_token_for
    from uploads.client import Client

    size = 64 * MIB if quick else 256 * MIB
    part_size = 8 * MIB if quick else 16 * MIB
    repeat = 1 if quick else 3
    user, _ = get_user_model().objects.get_or_create(username="bench")
    token = str(refresh_token_for(user).access_token)
    ours: list[float] = []
    theirs: list[float] = []
    with tempfile.TemporaryDirectory(prefix="direct-uploads-bench-client-") as workdir:
        source = _random_file(workdir, size)
        with moto_s3() as (_endpoint, s3), serve_app() as server:
            transfer = TransferConfig(
                multipart_threshold=part_size,
                multipart_chunksize=part_size,
                max_concurrency=CONCURRENCY,
                use_threads=True,
            )
            with Client(server, token=token, state_path=Path(workdir) / "state.json") as client:
                # Untimed: the process's first upload pays one-time costs (imports, the first
                # database and S3 connections, botocore's checksum support) that boto3's side
                # already paid creating the bucket.
                warm_up = Path(workdir) / "warm-up.bin"
                warm_up.write_bytes(os.urandom(MIB))
                default_storage.delete(_key(client.upload(warm_up, resume=False).file.id))
                for attempt in range(repeat):
                    start = time.perf_counter()
                    result = client.upload(
                        source, part_size=part_size, concurrency=CONCURRENCY, resume=False
                    )
                    ours.append(size / (time.perf_counter() - start) / 1e6)
                    assert result.file.upload_status == "completed", result.file
                    # Free moto's memory between runs; the record keeps its key.
                    default_storage.delete(_key(result.file.id))

                    key = f"boto3/{attempt}"
                    start = time.perf_counter()
                    s3.upload_file(str(source), "bench", key, Config=transfer)
                    theirs.append(size / (time.perf_counter() - start) / 1e6)
                    assert s3.head_object(Bucket="bench", Key=key)["ContentLength"] == size
                    s3.delete_object(Bucket="bench", Key=key)
    mine, baseline = statistics.median(ours), statistics.median(theirs)
    label = f"{size // MIB} MiB" if size < 1024 * MIB else f"{size // (1024 * MIB)} GiB"
    return [
        Row(
            measure=f"upload {label}, {part_size // MIB} MiB parts, {CONCURRENCY} at a time",
            ours=mine,
            baseline=baseline,
            unit="MB/s",
            goal=f"≥ {GOAL_RATIO}× boto3",
            passed=mine >= GOAL_RATIO * baseline,
            note=f"median of {repeat}; baseline: boto3 upload_file (s3transfer), same settings",
        )
    ]


def _key(file_id: str) -> str:
    from uploads.models import FileRecord

    return str(FileRecord.objects.get(pk=file_id).file.name)


def main() -> None:
    run_alone("client")


if __name__ == "__main__":
    main()
