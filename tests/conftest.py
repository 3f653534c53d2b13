from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

# moto reads this at import: without it every response carries permissive CORS headers.
os.environ.setdefault("MOTO_DISABLE_GLOBAL_CORS", "1")

import boto3
import pytest
from django.contrib.auth import get_user_model

from project.settings import s3_storage_options
from tests.helpers import ApiClient

MIB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(autouse=True)
def _isolated_media(settings: Any, tmp_path: Any) -> None:
    """Each test gets its own media root and part directory, so no test sees another's files."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.UPLOADS_LOCAL_PARTS_DIR = tmp_path / "media" / ".parts"


@pytest.fixture(autouse=True)
def _reset_throttles() -> Iterator[None]:
    """The token throttle counts in the cache: every test starts with a full allowance."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def user(db: Any) -> Any:
    return get_user_model().objects.create_user("alice", password="alice-pass")


@pytest.fixture
def other_user(db: Any) -> Any:
    return get_user_model().objects.create_user("bob", password="bob-pass")


@pytest.fixture
def staff_user(db: Any) -> Any:
    return get_user_model().objects.create_user("staff", password="staff-pass", is_staff=True)


@pytest.fixture
def api(user: Any, request: pytest.FixtureRequest) -> ApiClient:
    """The API as `user`: a JWT, or (parametrized indirectly with "session") the portal's way."""
    return ApiClient(user, auth=getattr(request, "param", "jwt"))


@pytest.fixture
def anon_api() -> ApiClient:
    return ApiClient()


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A real S3 endpoint over HTTP on loopback (moto's server), for the whole session."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@dataclass
class S3Env:
    endpoint: str
    bucket: str
    client: Any


@pytest.fixture
def s3(settings: Any, moto_endpoint: str) -> S3Env:
    """Point the default storage at a fresh bucket on the moto server."""
    bucket = f"test-{uuid.uuid4().hex[:16]}"
    credentials = {"access_key": "testing", "secret_key": "testing"}
    options = s3_storage_options(
        bucket=bucket, region="us-east-1", endpoint_url=moto_endpoint, **credentials
    )
    client = boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=options["client_config"],
    )
    client.create_bucket(Bucket=bucket)
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": options},
    }
    # S3 enforces its 5 MiB minimum for every part but the last.
    settings.UPLOADS_MIN_PART_SIZE = 5 * MIB
    return S3Env(endpoint=moto_endpoint, bucket=bucket, client=client)


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest, settings: Any) -> str:
    """Run a test once per storage handler."""
    if request.param == "s3":
        request.getfixturevalue("s3")
    return str(request.param)
