"""Shared plumbing for the benchmarks: a throwaway Django setup, a moto S3 server, result rows."""

from __future__ import annotations

import os
import platform
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

MIB = 1024 * 1024


@dataclass
class Row:
    """One measure: our figure next to a baseline measured in the same run."""

    measure: str
    ours: float
    baseline: float | None
    unit: str
    goal: str
    passed: bool | None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.baseline in (None, 0) or self.ours == 0:
            return None
        return self.baseline / self.ours if self.unit in {"s", "ms"} else self.ours / self.baseline


def setup_django(**env: str) -> None:
    """Configure the project's own settings against a temporary SQLite database and media root."""
    workdir = tempfile.mkdtemp(prefix="direct-uploads-bench-")
    defaults = {
        "SECRET_KEY": "bench-secret-key",
        "DATABASE_URL": f"sqlite:///{workdir}/bench.sqlite3",
        "MEDIA_ROOT": f"{workdir}/media",
        "LOG_LEVEL": "WARNING",
        "ALLOWED_HOSTS": "testserver,127.0.0.1,localhost",
        "MAX_FILE_UPLOAD_SIZE": str(1024**4),
        "MOTO_DISABLE_GLOBAL_CORS": "1",
    }
    for key, value in {**defaults, **env}.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def moto_s3() -> Iterator[tuple[str, Any]]:
    """A moto S3 server on loopback, with the default storage pointed at a fresh bucket."""
    import boto3
    from botocore.config import Config
    from django.conf import settings
    from django.test import override_settings
    from moto.server import ThreadedMotoServer

    from project.settings import s3_storage_options

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    options = s3_storage_options(
        bucket="bench",
        region="us-east-1",
        endpoint_url=endpoint,
        access_key="bench",
        secret_key="bench",
    )
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        # Waits as long as the app's own completion client does: moto takes seconds to join a
        # GiB of parts, past the short read timeout of every other call.
        config=cast(Config, options["client_config"]).merge(
            Config(read_timeout=settings.AWS_S3_COMPLETE_READ_TIMEOUT)
        ),
    )
    client.create_bucket(Bucket="bench")
    s3_storage = {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": options}
    try:
        # override_settings also resets the cached storage instances.
        with override_settings(STORAGES={**settings.STORAGES, "default": s3_storage}):
            yield endpoint, client
    finally:
        server.stop()


def median_time(fn: Callable[[], Any], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def machine_facts() -> dict[str, str]:
    import django

    return {
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "django": django.get_version(),
        "platform": platform.platform(terse=True),
    }


def run_alone(name: str) -> None:
    """`python -m bench.<name> [--quick]`: the runner's table for this one bench."""
    from bench.run import main

    main(["--only", name, *sys.argv[1:]])
