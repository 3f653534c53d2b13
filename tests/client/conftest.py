"""Fixtures for the Python client: a live server (local disk, moto or the verifying S3 store),
clients signed in as `user`, and an httpx transport that records requests and lets a test break
some of them."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.support import KIB, MIB, payload
from uploads.client import Client, RetryPolicy

# Retries in milliseconds, so fault tests do not wait on production backoff.
FAST_RETRY = RetryPolicy(attempts=4, backoff=0.01, max_backoff=0.05)
PASSWORD = "alice-pass"

Fault = Callable[[httpx.Request, int], httpx.Response | None]
After = Callable[[httpx.Request, httpx.Response, int], None]


def sha256_b64(data: bytes) -> str:
    """A part checksum as the API and the stores write it."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def part_number(request: httpx.Request) -> int | None:
    """The part a PUT is for: S3's `partNumber` query, or the claim in a local part token."""
    if "partNumber" in request.url.params:
        return int(request.url.params["partNumber"])
    if "/local/parts/" in request.url.path:
        data = request.url.path.rsplit("/", 1)[-1].split(":")[0]
        claims = json.loads(base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)))
        return int(claims["p"])
    return None


class Recording(httpx.BaseTransport):
    """Forwards to a real transport and records each request and its status. `fault(request,
    attempt)` (attempt: how many times this part, or this path, was sent, from 1) may return a
    response of its own or raise instead of forwarding; `after(request, response, attempt)` sees
    the real response and may raise, as if it got lost on the way back."""

    def __init__(self, fault: Fault | None = None, after: After | None = None) -> None:
        self.inner = httpx.HTTPTransport()
        self.fault = fault
        self.after = after
        self.requests: list[httpx.Request] = []
        self.statuses: list[tuple[httpx.Request, int]] = []
        self._attempts: dict[object, int] = {}
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.requests.append(request)
            key = part_number(request) or request.url.path
            self._attempts[key] = attempt = self._attempts.get(key, 0) + 1
        response = self.fault(request, attempt) if self.fault else None
        if response is None:
            response = self.inner.handle_request(request)
        with self._lock:
            self.statuses.append((request, response.status_code))
        if self.after is not None:
            try:
                self.after(request, response, attempt)
            except BaseException:
                response.close()
                raise
        return response

    def close(self) -> None:
        self.inner.close()

    def parts_put(self) -> list[int]:
        """Part numbers of every PUT sent, retries included, in order."""
        return [n for r in self.requests if r.method == "PUT" and (n := part_number(r))]

    def calls(self, method: str, suffix: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method and r.url.path.endswith(suffix)]

    @staticmethod
    def body(request: httpx.Request) -> Any:
        return json.loads(request.content)


@pytest.fixture
def server(live_server: Any, user: Any, transactional_db: Any) -> str:
    return str(live_server.url)


@pytest.fixture
def part_size(backend: str) -> int:
    # S3 refuses parts under 5 MiB but the last; on local disk small parts keep tests fast.
    return 64 * KIB if backend == "local" else 5 * MIB


@pytest.fixture
def state_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "uploads.json"


@pytest.fixture
def make_client(server: str, state_path: Path) -> Iterator[Callable[..., Client]]:
    """Build clients signed in as `user`; all are closed at the end, so no kept-alive
    connection outlives the live server."""
    made: list[Client] = []

    def make(**options: Any) -> Client:
        defaults: dict[str, Any] = {
            "username": "alice",
            "password": PASSWORD,
            "state_path": state_path,
            "retry": FAST_RETRY,
        }
        if "token" in options:
            defaults.pop("username")
            defaults.pop("password")
        client = Client(server, **{**defaults, **options})
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def write_file(tmp_path: Path) -> Callable[..., tuple[Path, bytes]]:
    def write(size: int, seed: int = 0, name: str = "data.bin") -> tuple[Path, bytes]:
        content = payload(size, seed)
        path = tmp_path / name
        path.write_bytes(content)
        return path, content

    return write
