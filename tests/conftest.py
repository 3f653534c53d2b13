from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# moto reads this at import: without it every response carries permissive CORS headers.
os.environ.setdefault("MOTO_DISABLE_GLOBAL_CORS", "1")

import boto3
import hypothesis.configuration
import pytest
import schemathesis.core.storage
from django.contrib.auth import get_user_model

from project.settings import s3_storage_options
from tests import verifying_s3
from tests.helpers import AUTH_MODES, ApiClient, pin_local_disk
from tests.ports import free_port

MIB = 1024 * 1024

# Hypothesis and Schemathesis keep their state (example databases, caches, crash reports) under
# the current directory unless told otherwise: a test run writes nothing into the work tree.
_TOOL_STATE = Path(tempfile.mkdtemp(prefix="direct-uploads-tests-"))
atexit.register(shutil.rmtree, _TOOL_STATE, ignore_errors=True)
hypothesis.configuration.set_hypothesis_home_dir(_TOOL_STATE / "hypothesis")
schemathesis.core.storage.DEFAULT_ROOT = _TOOL_STATE / "schemathesis"


@pytest.fixture(autouse=True)
def _isolated_media(settings: Any, tmp_path: Any) -> None:
    """Each test gets its own media root and part directory, so no test sees another's files."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.UPLOADS_LOCAL_PARTS_DIR = tmp_path / "media" / ".parts"


@pytest.fixture
def local_disk(settings: Any) -> None:
    """Pin the local-disk handler, whatever the environment configured."""
    pin_local_disk(settings)


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


@pytest.fixture(params=AUTH_MODES)
def auth_mode(request: pytest.FixtureRequest) -> str:
    """Every API test runs once with a JWT and once with the portal's session + CSRF header."""
    return str(request.param)


@pytest.fixture
def api_for(auth_mode: str) -> Any:
    """An API client for any user, in this test's auth mode."""
    return lambda user: ApiClient(user, auth=auth_mode)


@pytest.fixture
def api(user: Any, api_for: Any) -> ApiClient:
    return api_for(user)  # type: ignore[no-any-return]


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


@pytest.fixture(scope="session")
def verifying_endpoint() -> Iterator[str]:
    """The verifying S3 store (LocalStack's S3: signatures, expiry and checksums checked) for
    the whole session. A test that needs it fails, never skips, when it cannot start."""
    try:
        endpoint = verifying_s3.shared(free_port())
    except verifying_s3.VerifyingS3Unavailable as exc:
        raise pytest.fail.Exception(str(exc), pytrace=False) from None
    yield endpoint
    verifying_s3.stop_shared()


@dataclass
class S3Env:
    endpoint: str
    bucket: str
    client: Any


def use_new_bucket(settings: Any, endpoint: str, *, access_key: str, secret_key: str) -> S3Env:
    """Create a fresh bucket on `endpoint` and point the default storage at it."""
    bucket = f"test-{uuid.uuid4().hex[:16]}"
    options = s3_storage_options(
        bucket=bucket,
        region="us-east-1",
        endpoint_url=endpoint,
        access_key=access_key,
        secret_key=secret_key,
    )
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=options["client_config"],
    )
    client.create_bucket(Bucket=bucket)
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": options},
    }
    # S3 enforces its 5 MiB minimum for every part but the last.
    settings.UPLOADS_MIN_PART_SIZE = 5 * MIB
    return S3Env(endpoint=endpoint, bucket=bucket, client=client)


def delete_bucket(env: S3Env) -> None:
    """Remove the bucket and everything in it, so the store does not grow over a session."""
    client, bucket = env.client, env.bucket
    for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket):
        for upload in page.get("Uploads", []):
            client.abort_multipart_upload(
                Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
            )
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        if objects := [{"Key": item["Key"]} for item in page.get("Contents", [])]:
            client.delete_objects(Bucket=bucket, Delete={"Objects": objects})
    client.delete_bucket(Bucket=bucket)


@pytest.fixture
def s3(settings: Any, moto_endpoint: str) -> S3Env:
    """Point the default storage at a fresh bucket on the moto server."""
    return use_new_bucket(settings, moto_endpoint, access_key="testing", secret_key="testing")


@pytest.fixture
def verifying(settings: Any, verifying_endpoint: str) -> Iterator[S3Env]:
    """Point the default storage at a fresh bucket on the verifying S3 store."""
    env = use_new_bucket(
        settings,
        verifying_endpoint,
        access_key=verifying_s3.ACCESS_KEY,
        secret_key=verifying_s3.SECRET_KEY,
    )
    yield env
    delete_bucket(env)


# Backend ids whose store is S3; each names the fixture that sets its bucket up.
S3_BACKENDS = ("s3", "verifying")


@pytest.fixture(params=["local", *S3_BACKENDS])
def backend(request: pytest.FixtureRequest, settings: Any) -> str:
    """Run a test once per store: local disk, moto, and the verifying S3 store."""
    if request.param in S3_BACKENDS:
        request.getfixturevalue(request.param)
    return str(request.param)
