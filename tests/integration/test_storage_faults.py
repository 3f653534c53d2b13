"""S3 failing mid-request: the API answers 503 "storage_unavailable" with a message safe to show,
never leaves a record completed without its object, and the same request works once S3 is back.

What the client hears depends on what the failure means (classified once, in the S3 handler):
transient (5xx, SlowDown, timeouts, no connection) → 503 with Retry-After; our own configuration
(AccessDenied, NoSuchBucket, bad keys or signature) → 503, logged at ERROR, the upload untouched;
a part list the store refuses (InvalidPart, InvalidPartOrder, BadDigest) → 400 parts_mismatch,
the upload open; an upload that can never complete (NoSuchUpload, EntityTooSmall) → failed, 400.

Faults are injected in botocore's client, where a real network or throttling error surfaces. The
live server's request threads each get their own client from django-storages (it keeps one per
thread), so the patch goes on the client class rather than on one client object."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import requests
from botocore.client import BaseClient
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from tests.helpers import AUTH_MODES, HttpApi, Store, assert_error
from uploads.models import FileRecord
from uploads.services.shared import STORAGE_RETRY_AFTER

from .support import MIB, Sizes, download, payload, put_parts

pytestmark = pytest.mark.usefixtures("transactional_db")

Status = FileRecord.Status
SIZES = Sizes(part=5 * MIB)


def connection_error(s3: Any, operation: str) -> Exception:
    error: Exception = EndpointConnectionError(
        endpoint_url=f"{s3.endpoint}/{s3.bucket}?{operation}"
    )
    return error


def s3_error(code: str, status: int, message: str = "We could not do that.") -> Exception:
    return ClientError(
        {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "S3Operation",
    )


def slow_down(s3: Any, operation: str) -> Exception:
    return s3_error("SlowDown", 503, "Please reduce your request rate.")


def internal_error(s3: Any, operation: str) -> Exception:
    return s3_error("InternalError", 500)


def read_timeout(s3: Any, operation: str) -> Exception:
    error: Exception = ReadTimeoutError(endpoint_url=f"{s3.endpoint}/{s3.bucket}")
    return error


FAULTS = pytest.mark.parametrize("fault", [connection_error, slow_down], ids=["down", "slowdown"])
TRANSIENT = pytest.mark.parametrize(
    "fault",
    [connection_error, slow_down, internal_error, read_timeout],
    ids=["down", "slowdown", "500", "timeout"],
)
CONFIGURATION = pytest.mark.parametrize(
    ("code", "status"),
    [
        ("AccessDenied", 403),
        ("NoSuchBucket", 404),
        ("InvalidAccessKeyId", 403),
        ("SignatureDoesNotMatch", 403),
    ],
)


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


def assert_storage_unavailable(
    response: requests.Response, s3: Any, error: Exception, *, passing: bool = True
) -> None:
    """503 with nothing of the store's answer in it; `Retry-After` when the failure is passing."""
    body = assert_error(response, 503, "storage_unavailable")
    if passing:
        assert response.headers["Retry-After"] == str(STORAGE_RETRY_AFTER)
    else:
        assert "Retry-After" not in response.headers
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
    return Store.of("s3", request)


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


@TRANSIENT
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


# --- What each kind of failure means for the client -----------------------------------------


@CONFIGURATION
@pytest.mark.parametrize("operation", ["ListParts", "CompleteMultipartUpload"])
def test_a_configuration_error_at_complete_is_logged_loudly_and_never_blamed_on_the_upload(
    s3: Any,
    http_api: HttpApi,
    store: Store,
    content: bytes,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    code: str,
    status: int,
    operation: str,
) -> None:
    upload, parts = start_upload(http_api, content)
    error = s3_error(code, status)

    with caplog.at_level(logging.ERROR), failing(monkeypatch, operation, error):
        response = http_api.complete(upload["id"], parts)

    # Retrying soon would fail the same way: no Retry-After; an operator must act.
    assert_storage_unavailable(response, s3, error, passing=False)
    assert code not in response.text
    assert "configuration" in response.json()["detail"]
    loud = [
        r for r in caplog.records if r.levelno >= logging.ERROR and "MISCONFIGURED" in r.message
    ]
    assert loud and code in loud[0].getMessage()
    record = FileRecord.objects.get(pk=upload["id"])
    assert (record.upload_status, record.failure_reason) == (Status.UPLOADING, "")
    assert store.upload_alive(upload["upload_id"])
    # Once the settings are fixed, the same upload completes.
    again = http_api.complete(upload["id"], parts)
    assert again.status_code == 200, again.text
    assert download(http_api, upload["id"]).content == content


@pytest.mark.parametrize("code", ["InvalidPart", "InvalidPartOrder", "BadDigest"])
def test_a_part_list_the_store_refuses_keeps_the_upload_open(
    s3: Any,
    http_api: HttpApi,
    store: Store,
    content: bytes,
    monkeypatch: pytest.MonkeyPatch,
    code: str,
) -> None:
    upload, parts = start_upload(http_api, content)

    with failing(monkeypatch, "CompleteMultipartUpload", s3_error(code, 400)):
        response = http_api.complete(upload["id"], parts)

    # The store's parts match the list when looked at again: nothing to send, complete again.
    body = assert_error(response, 400, "parts_mismatch")
    assert body["extra"] == {"parts": [], "upload_status": "uploading"}
    assert FileRecord.objects.get(pk=upload["id"]).upload_status == Status.UPLOADING
    assert store.upload_alive(upload["upload_id"])
    again = http_api.complete(upload["id"], parts)
    assert again.status_code == 200, again.text
    assert download(http_api, upload["id"]).content == content


@pytest.mark.parametrize("http_api", AUTH_MODES, indirect=True)
def test_a_part_sent_again_while_completing_is_named_by_the_store_refusal(
    s3: Any, http_api: HttpApi, store: Store, content: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    upload, parts = start_upload(http_api, content)
    real = BaseClient._make_api_call
    second = upload["presigned_urls"][1]["url"]

    def make_api_call(self: Any, operation_name: str, api_params: Any) -> Any:
        if operation_name == "CompleteMultipartUpload":
            # Between the check of the list and the store's completion, part 2 changes.
            tail = content[SIZES.part :]
            assert requests.put(second, data=tail[::-1], timeout=30).status_code == 200
        return real(self, operation_name, api_params)

    with monkeypatch.context() as patch:
        patch.setattr(BaseClient, "_make_api_call", make_api_call)
        response = http_api.complete(upload["id"], parts)

    # moto answers InvalidPart for the ETag that no longer matches, as S3 does.
    body = assert_error(response, 400, "parts_mismatch")
    assert body["extra"] == {"parts": [2], "upload_status": "uploading"}
    fixed = put_parts({**upload, "presigned_urls": [upload["presigned_urls"][1]]}, content)
    again = http_api.complete(upload["id"], [parts[0], *fixed])
    assert again.status_code == 200, again.text
    assert download(http_api, upload["id"]).content == content


def test_an_upload_the_store_lost_ends_failed(
    s3: Any, http_api: HttpApi, store: Store, content: bytes
) -> None:
    upload, parts = start_upload(http_api, content)
    record = FileRecord.objects.get(pk=upload["id"])
    s3.client.abort_multipart_upload(
        Bucket=s3.bucket, Key=record.storage_key, UploadId=upload["upload_id"]
    )

    response = http_api.complete(upload["id"], parts)

    body = assert_error(response, 400, "verification_failed")
    record.refresh_from_db()
    assert record.upload_status == Status.FAILED
    assert body["detail"] == record.failure_reason == "The upload no longer exists in the store."
    assert body["extra"] == {"upload_status": "failed"}
    assert_error(http_api.complete(upload["id"], parts), 409, "invalid_state")


def test_parts_the_store_will_never_assemble_end_the_upload_failed(
    s3: Any, http_api: HttpApi, store: Store, settings: Any
) -> None:
    # A deployment that lowered the minimum part size below S3's 5 MiB (EntityTooSmall).
    settings.UPLOADS_MIN_PART_SIZE = 1024
    content = payload(2 * 1024 + 10, seed=12)
    upload = http_api.initiate(len(content), part_size=1024)
    parts = put_parts(upload, content)

    response = http_api.complete(upload["id"], parts)

    body = assert_error(response, 400, "verification_failed")
    record = FileRecord.objects.get(pk=upload["id"])
    assert record.upload_status == Status.FAILED
    assert body["detail"] == record.failure_reason
    assert "5 MiB" in record.failure_reason and "1.0 KiB (1,024 bytes)" in record.failure_reason
    assert not store.upload_alive(upload["upload_id"])
    assert store.object_bytes(record.storage_key) is None
