"""Tests that need PostgreSQL: real concurrent transactions, row locks, SKIP LOCKED.

Every test under this folder is marked `postgres`. On any other database they are skipped with
the reason shown; CI's second pass (DATABASE_URL=postgres://...) runs them.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from django.conf import settings
from django.db import connections

from tests.helpers import ApiClient, Store

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    engine = settings.DATABASES["default"]["ENGINE"]
    skip = None
    if "postgresql" not in engine:
        skip = pytest.mark.skip(
            reason=f"needs PostgreSQL (concurrent transactions and row locks); the database is "
            f"{engine}. Run with DATABASE_URL=postgres://postgres@127.0.0.1:5432/test"
        )
    for item in items:
        if HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.postgres)
            if skip is not None:
                item.add_marker(skip)


def run_together(*calls: Callable[[], Any]) -> list[Any]:
    """Run each call in its own thread, all released at once by a barrier.

    Returns each call's result, or the exception it raised. Each thread closes its own database
    connection, so the test database can be flushed and dropped afterwards.
    """
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def runner(index: int, call: Callable[[], Any]) -> None:
        try:
            barrier.wait(timeout=30)
            results[index] = call()
        except BaseException as exc:  # handed back to the test, which decides
            results[index] = exc
        finally:
            connections.close_all()

    threads = [
        threading.Thread(target=runner, args=(i, call), name=f"race-{i}")
        for i, call in enumerate(calls)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
        assert not thread.is_alive(), f"{thread.name} is still running"
    return results


def ready_to_complete(
    api: ApiClient, backend: str, seed: int, *, full_parts: int | None = None, tail: int = 777
) -> tuple[dict[str, Any], bytes, list[dict[str, Any]]]:
    """An upload with every part in the store, and the part list that completes it.

    Its parts: `full_parts` whole ones (S3's 5 MiB, or 1 KiB on local disk) and a `tail`.
    """
    part_size = 1024 if backend == "local" else 5 * 1024 * 1024
    if full_parts is None:
        full_parts = 3 if backend == "local" else 1
    content = random.Random(seed).randbytes(part_size * full_parts + tail)
    init = api.post(
        "/v1/files/uploads",
        {"file_name": f"race-{seed}.bin", "file_size": len(content), "part_size": part_size},
    )
    assert init.status_code == 201, init.content
    body: dict[str, Any] = init.json()
    parts = []
    for target in body["presigned_urls"]:
        n = target["part_number"]
        chunk = content[(n - 1) * part_size : n * part_size]
        if backend == "local":
            response: Any = api.put_part(target["url"], chunk)
        else:
            response = requests.put(target["url"], data=chunk, timeout=60)
        assert response.status_code == 200
        parts.append({"part_number": n, "etag": response.headers["ETag"]})
    return body, content, parts


@pytest.fixture
def store_view(backend: str, request: pytest.FixtureRequest) -> Store:
    return Store.of(backend, request)
