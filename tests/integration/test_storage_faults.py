"""S3 failing mid-request: the API answers 503 "storage_unavailable" with a message safe to show,
never leaves a record completed without its object, and the same request works once S3 is back.

Faults are injected in botocore's client, where a real network or throttling error surfaces. The
live server's request threads each get their own client from django-storages (it keeps one per
thread), so the patch goes on the client class rather than on one client object."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import requests
from botocore.client import BaseClient
from botocore.exceptions import ClientError, EndpointConnectionError

from tests.helpers import HttpApi
from uploads.models import FileRecord

from .support import MIB, Sizes, Store, assert_error, download, payload, put_parts

pytestmark = pytest.mark.usefixtures("transactional_db")

Status = FileRecord.Status
SIZES = Sizes(part=5 * MIB)


def connection_error(s3: Any, operation: str) -> Exception:
    error: Exception = EndpointConnectionError(
        endpoint_url=f"{s3.endpoint}/{s3.bucket}?{operation}"
    )
    return error


def slow_down(s3: Any, operation: str) -> Exception:
    error: Exception = ClientError(
        {
            "Error": {"Code": "SlowDown", "Message": "Please reduce your request rate."},
            "ResponseMetadata": {"HTTPStatusCode": 503},
        },
        operation,
    )
    return error


FAULTS = pytest.mark.parametrize("fault", [connection_error, slow_down], ids=["down", "slowdown"])


@contextmanager
def failing(
    monkeypatch: pytest.MonkeyPatch, operation: str, error: Exception, *, after: bool = False
) -> Iterator[list[str]]:
    """Make every S3 call of `operation` raise `error`: before it reaches S3, or (`after`) once
    S3 has done it and the answer is lost on the way back. Yields the calls it failed."""
    failed: list[str] = []
    real = BaseClient._make_api_call

    def make_api_call(self: Any, operation_name: str, api_params: Any) -> Any:
        if operation_name != operation:
            return real(self, operation_name, api_params)
        failed.append(operation_name)
        if after:
            real(self, operation_name, api_params)
        raise error

    with monkeypatch.context() as patch:
        patch.setattr(BaseClient, "_make_api_call", make_api_call)
        yield failed


def assert_storage_unavailable(response: requests.Response, s3: Any, error: Exception) -> None:
    body = assert_error(response, 503, "storage_unavailable")
    text = response.text
    port = s3.endpoint.rsplit(":", 1)[1]
    for leak in (
        str(error),
        s3.endpoint,
        "127.0.0.1",
        port,
        s3.bucket,
        "SlowDown",
        "reduce your request rate",
        "Could not connect",
        "endpoint",
        "botocore",
        "Multipart",
        "Traceback",
    ):
        assert leak not in text, f"{leak!r} leaked into {body}"


def assert_completed_only_with_objects(store: Store) -> None:
    for record in FileRecord.objects.filter(upload_status=Status.COMPLETED):
        assert store.object_bytes(record.storage_key) is not None, record.pk


@pytest.fixture
def store(s3: Any, request: pytest.FixtureRequest) -> Store:
    return Store("s3", request)


@pytest.fixture
def content() -> bytes:
    return payload(SIZES.file_size(2, tail=4321), seed=11)


def start_upload(http_api: HttpApi, content: bytes) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    upload = http_api.initiate(len(content), part_size=SIZES.part)
    return upload, put_parts(upload, content)


@FAULTS
def test_initiate_when_s3_fails(
    s3: Any,
    http_api: HttpApi,
    store: Store,
    content: bytes,
    monkeypatch: pytest.MonkeyPatch,
    fault: Callable[[Any, str], Exception],
) -> None:
    error = fault(s3, "CreateMultipartUpload")
    body = {"file_name": "a.bin", "file_size": len(content), "part_size": SIZES.part}

    with failing(monkeypatch, "CreateMultipartUpload", error) as failed:
        response = http_api.call("POST", "/v1/files/uploads", body)

    assert failed
    assert_storage_unavailable(response, s3, error)
    assert not FileRecord.objects.exists()
    again = http_api.call("POST", "/v1/files/uploads", body)
    assert again.status_code == 201, again.text
    assert store.upload_alive(again.json()["upload_id"])


@FAULTS
@pytest.mark.parametrize("operation", ["ListParts", "CompleteMultipartUpload"])
def test_complete_when_s3_fails(
    s3: Any,
    http_api: HttpApi,
    store: Store,
    content: bytes,
    monkeypatch: pytest.MonkeyPatch,
    fault: Callable[[Any, str], Exception],
    operation: str,
) -> None:
    upload, parts = start_upload(http_api, content)
    error = fault(s3, operation)

    with failing(monkeypatch, operation, error) as failed:
        response = http_api.complete(upload["id"], parts)

    assert failed
    assert_storage_unavailable(response, s3, error)
    record = FileRecord.objects.get(pk=upload["id"])
    assert record.upload_status == Status.UPLOADING
    assert store.object_bytes(record.storage_key) is None
    assert store.upload_alive(upload["upload_id"])
    assert_completed_only_with_objects(store)

    again = http_api.complete(upload["id"], parts)
    assert again.status_code == 200, again.text
    assert again.json()["upload_status"] == Status.COMPLETED
    assert download(http_api, upload["id"]).content == content
    assert_completed_only_with_objects(store)


@FAULTS
def test_complete_whose_answer_was_lost(
    s3: Any,
    http_api: HttpApi,
    store: Store,
    content: bytes,
    monkeypatch: pytest.MonkeyPatch,
    fault: Callable[[Any, str], Exception],
) -> None:
    upload, parts = start_upload(http_api, content)
    error = fault(s3, "CompleteMultipartUpload")

    # S3 assembled the object, but the client never heard back.
    with failing(monkeypatch, "CompleteMultipartUpload", error, after=True) as failed:
        response = http_api.complete(upload["id"], parts)

    assert failed
    assert_storage_unavailable(response, s3, error)
    assert FileRecord.objects.get(pk=upload["id"]).upload_status == Status.UPLOADING

    again = http_api.complete(upload["id"], parts)
    assert again.status_code == 200, again.text
    assert again.json()["upload_status"] == Status.COMPLETED
    assert download(http_api, upload["id"]).content == content
    assert_completed_only_with_objects(store)


@FAULTS
def test_abort_when_s3_fails(
    s3: Any,
    http_api: HttpApi,
    store: Store,
    content: bytes,
    monkeypatch: pytest.MonkeyPatch,
    fault: Callable[[Any, str], Exception],
) -> None:
    upload, _ = start_upload(http_api, content)
    error = fault(s3, "AbortMultipartUpload")
    path = f"/v1/files/uploads/{upload['id']}"

    with failing(monkeypatch, "AbortMultipartUpload", error) as failed:
        response = http_api.call("DELETE", path)

    assert failed
    assert_storage_unavailable(response, s3, error)
    assert FileRecord.objects.get(pk=upload["id"]).upload_status != Status.COMPLETED
    assert store.upload_alive(upload["upload_id"])

    again = http_api.call("DELETE", path)
    assert again.status_code == 204, again.text
    assert not store.upload_alive(upload["upload_id"])
    assert FileRecord.objects.get(pk=upload["id"]).upload_status == Status.ABORTED
    # Once the store has let go, there is nothing left to abort.
    assert_error(http_api.call("DELETE", path), 409, "invalid_state")
