"""Fixtures for the integration tests: real HTTP against `live_server`, parts PUT to whatever
URL the API hands out (the app's /local/parts/ URLs, or presigned URLs to an S3 store)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers import HttpApi, Store

from .support import KIB, MIB, Sizes


@pytest.fixture
def sizes(backend: str) -> Sizes:
    return Sizes(part=64 * KIB if backend == "local" else 5 * MIB)


@pytest.fixture
def http_api(
    live_server: Any, user: Any, transactional_db: Any, request: pytest.FixtureRequest
) -> Iterator[HttpApi]:
    """The API as `user`: a JWT, or (parametrized indirectly with "session") the portal's way."""
    api = HttpApi(live_server.url, user, auth=getattr(request, "param", "jwt"))
    yield api
    # Close the kept-alive connections now: a server thread idling on one would otherwise outlive
    # the session's live server and touch the SQLite connection after it stopped being shared.
    api.session.close()


@pytest.fixture
def store(backend: str, request: pytest.FixtureRequest) -> Store:
    return Store.of(backend, request)
