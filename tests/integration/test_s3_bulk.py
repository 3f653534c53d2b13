"""The S3 handler's own ListParts reader and CompleteMultipartUpload body, on moto and on the
verifying S3 store (which checks every signature): the same parts as botocore's paginator reads,
across pages, with and without part checksums; and the store's errors as the same StorageErrors.
"""

from __future__ import annotations

import base64
import hashlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from django.core.files.storage import storages

from tests.conftest import S3_BACKENDS
from tests.helpers import botocore_stored_part
from uploads.storage.base import (
    CompletedPart,
    GoneFromStore,
    MultipartUpload,
    PartsRejected,
    StorageBusy,
    StoredPart,
)
from uploads.storage.s3 import S3StorageHandler, _completion_client

# Over one 1,000-part page of ListParts, so the reader follows NextPartNumberMarker.
PARTS = 1_003
BODY = b"p" * 1024


@pytest.fixture(params=S3_BACKENDS)
def store(request: pytest.FixtureRequest) -> str:
    request.getfixturevalue(request.param)
    return str(request.param)


@pytest.fixture
def handler(store: str) -> S3StorageHandler:
    return S3StorageHandler(storages["default"])


def sha256(number: int) -> str:
    return base64.b64encode(hashlib.sha256(BODY + str(number).encode()).digest()).decode()


def upload_parts(
    handler: S3StorageHandler, algorithm: str, numbers: range
) -> tuple[MultipartUpload, list[CompletedPart]]:
    upload = handler.initiate(
        file_id="f", key="uploads/bulk", content_type="text/plain", checksum_algorithm=algorithm
    )
    client = handler.client

    def put(number: int) -> CompletedPart:
        body = BODY + str(number).encode()
        extra = {"ChecksumSHA256": sha256(number)} if algorithm else {}
        response = client.upload_part(
            Bucket=handler.bucket,
            Key=upload.key,
            UploadId=upload.upload_id,
            PartNumber=number,
            Body=body,
            **extra,
        )
        return CompletedPart(number, response["ETag"], sha256(number) if algorithm else "")

    with ThreadPoolExecutor(8) as pool:
        return upload, list(pool.map(put, numbers))


def botocore_parts(handler: S3StorageHandler, upload: MultipartUpload) -> list[StoredPart]:
    """The parts as list_parts read them through botocore's paginator and parser."""
    algorithm = upload.checksum_algorithm
    pages = handler.client.get_paginator("list_parts").paginate(
        Bucket=handler.bucket, Key=upload.key, UploadId=upload.upload_id
    )
    return [botocore_stored_part(p, algorithm) for page in pages for p in page.get("Parts", [])]


@pytest.mark.parametrize("algorithm", ["", "SHA256"])
def test_parts_over_several_pages_read_as_botocore_reads_them(
    handler: S3StorageHandler, store: str, algorithm: str
) -> None:
    upload, sent = upload_parts(handler, algorithm, range(1, PARTS + 1))
    parts = handler.list_parts(upload)
    assert [p.part_number for p in parts] == list(range(1, PARTS + 1))
    assert parts == botocore_parts(handler, upload)
    # moto leaves part checksums out of ListParts; the verifying store lists them, as S3 does.
    lists_checksums = store != "s3"
    assert [(p.part_number, p.etag, p.checksum) for p in parts] == [
        (s.part_number, s.etag, s.checksum if lists_checksums else "") for s in sent
    ]
    assert all(p.last_modified is not None and p.last_modified.tzinfo for p in parts)
    # The same client, used directly, still parses ListParts itself.
    direct = handler.client.list_parts(
        Bucket=handler.bucket, Key=upload.key, UploadId=upload.upload_id
    )
    assert len(direct["Parts"]) == 1000
    handler.abort(upload)


@pytest.mark.parametrize("algorithm", ["", "SHA256"])
def test_completion_with_the_handlers_body(
    handler: S3StorageHandler, store: str, algorithm: str
) -> None:
    # The store's 5 MiB minimum for every part but the last: one part completes anywhere.
    upload, sent = upload_parts(handler, algorithm, range(1, 2))
    info = handler.complete(upload, sent, content_type="text/plain")
    assert info.size == len(BODY) + 1
    assert info.etag.endswith('-1"')
    if algorithm and store != "s3":  # moto computes no whole-object checksum
        assert info.checksum.endswith("-1")
    got = handler.client.get_object(Bucket=handler.bucket, Key=upload.key)["Body"].read()
    assert got == BODY + b"1"


def test_a_wrong_part_list_is_refused_as_before(handler: S3StorageHandler) -> None:
    upload, sent = upload_parts(handler, "", range(1, 2))
    wrong = [CompletedPart(1, '"00000000000000000000000000000000"')]
    with pytest.raises(PartsRejected):
        handler.complete(upload, wrong, content_type="text/plain")
    handler.abort(upload)


def test_an_upload_gone_from_the_store(handler: S3StorageHandler, store: str) -> None:
    upload, _ = upload_parts(handler, "", range(1, 2))
    handler.abort(upload)
    with pytest.raises(GoneFromStore):
        handler.list_parts(upload)
    if store != "s3":  # moto answers 500 (a KeyError inside it) to completing an aborted upload
        with pytest.raises(GoneFromStore):
            handler.complete(upload, [CompletedPart(1, '"x"')], content_type="text/plain")


def answer_200(body: bytes) -> Any:
    class Raw:
        def stream(self, *args: Any, **kwargs: Any) -> Any:
            yield body

    def send(request: Any, **kwargs: Any) -> AWSResponse:
        return AWSResponse(request.url, 200, {}, Raw())

    return send


ERROR_200 = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InternalError</Code>'
    b"<Message>We encountered an internal error. Please try again.</Message></Error>"
)


def test_a_200_answer_with_an_error_body_is_an_error(handler: S3StorageHandler) -> None:
    """S3 may answer 200 and then an <Error> (documented for CompleteMultipartUpload)."""
    upload, sent = upload_parts(handler, "", range(1, 2))
    completion = _completion_client(handler.storage)
    completion.meta.events.register(
        "before-send.s3.CompleteMultipartUpload", answer_200(ERROR_200), unique_id="t200"
    )
    try:
        with pytest.raises(StorageBusy, match="InternalError"):
            handler.complete(upload, sent, content_type="text/plain")
    finally:
        completion.meta.events.unregister(
            "before-send.s3.CompleteMultipartUpload", unique_id="t200"
        )
    handler.client.meta.events.register(
        "before-send.s3.ListParts", answer_200(ERROR_200), unique_id="t200"
    )
    try:
        with pytest.raises(StorageBusy, match="InternalError"):
            handler.list_parts(upload)
    finally:
        handler.client.meta.events.unregister("before-send.s3.ListParts", unique_id="t200")
    # A page cut short is retried and raised, as botocore's own check did.
    handler.client.meta.events.register(
        "before-send.s3.ListParts", answer_200(b"<ListPartsResult><Part>"), unique_id="t200"
    )
    try:
        with pytest.raises(StorageBusy):
            handler.list_parts(upload)
    finally:
        handler.client.meta.events.unregister("before-send.s3.ListParts", unique_id="t200")
    # Nothing was completed: the real store still holds the open upload.
    assert [p.part_number for p in handler.list_parts(upload)] == [1]
    handler.abort(upload)
