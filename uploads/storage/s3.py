"""S3 (and S3-compatible) handler, on the boto3 client that django-storages configured."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    CredentialRetrievalError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from django.conf import settings
from django.utils.http import content_disposition_header
from storages.backends.s3 import S3Storage

from . import s3_bulk
from .base import (
    CompletedPart,
    GoneFromStore,
    MultipartUpload,
    ObjectInfo,
    PartsRejected,
    PartTarget,
    PartToSign,
    StorageBusy,
    StorageError,
    StorageMisconfigured,
    StoredPart,
    UploadRejected,
    checksum_header,
)
from .s3_presign import UploadPartPresigner

logger = logging.getLogger(__name__)

# What S3's error codes mean for the caller, the one place they are classified
# (docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html).
# The upload (or object) is gone.
_GONE_CODES = {"NoSuchUpload", "NoSuchKey", "404"}
# The part list does not match the stored parts: the client can re-send parts and complete.
_FIXABLE_CODES = {"InvalidPart", "InvalidPartOrder", "BadDigest"}
# The stored parts can never make an object: a non-last part under S3's 5 MiB minimum.
_UNCOMPLETABLE_CODES = {"EntityTooSmall"}
# Our credentials, bucket, region or clock are wrong: every retry fails the same way.
_CONFIGURATION_CODES = {
    "AccessDenied",
    "AccountProblem",
    "AllAccessDisabled",
    "AuthorizationHeaderMalformed",
    "ExpiredToken",
    "InvalidAccessKeyId",
    "InvalidBucketName",
    "InvalidToken",
    "NoSuchBucket",
    "PermanentRedirect",
    "RequestTimeTooSkewed",
    "SignatureDoesNotMatch",
}
# Overload and timeouts; any 5xx answer is taken as transient too.
_TRANSIENT_CODES = {
    "InternalError",
    "RequestTimeout",
    "ServiceUnavailable",
    "SlowDown",
    "Throttling",
    "ThrottlingException",
}
_CREDENTIAL_ERRORS = (NoCredentialsError, PartialCredentialsError, CredentialRetrievalError)
_NETWORK_ERRORS = (BotoConnectionError, HTTPClientError)


def _client_error(action: str, exc: ClientError) -> StorageError:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    message = f"{action}: {code or exc}"
    if code in _GONE_CODES:
        return GoneFromStore(message)
    if code in _FIXABLE_CODES:
        return PartsRejected(message)
    if code in _UNCOMPLETABLE_CODES:
        return UploadRejected(message)
    if code in _CONFIGURATION_CODES:
        return StorageMisconfigured(message)
    if code in _TRANSIENT_CODES or status >= 500:
        return StorageBusy(message)
    return StorageError(message)


def _botocore_error(action: str, exc: BotoCoreError) -> StorageError:
    message = f"{action}: {exc}"
    if isinstance(exc, _CREDENTIAL_ERRORS):
        return StorageMisconfigured(message)
    if isinstance(exc, _NETWORK_ERRORS):
        return StorageBusy(message)
    return StorageError(message)


@contextmanager
def _storage_errors(action: str) -> Iterator[None]:
    try:
        yield
    except ClientError as exc:
        logger.warning("S3 %s failed: %s", action, exc)
        raise _client_error(action, exc) from exc
    except BotoCoreError as exc:
        logger.warning("S3 %s failed: %s", action, exc)
        raise _botocore_error(action, exc) from exc


def _completion_client(storage: S3Storage) -> Any:
    """A client for CompleteMultipartUpload only: S3 may take minutes on a large upload, so it
    waits up to AWS_S3_COMPLETE_READ_TIMEOUT of silence (not the short read timeout of every
    other call), and is not retried, which bounds a hung store. Built as django-storages builds
    its own clients, once per storage and timeout (boto3 clients are thread-safe)."""
    timeout = settings.AWS_S3_COMPLETE_READ_TIMEOUT
    clients: dict[int, Any] = storage.__dict__.setdefault("_completion_clients", {})
    if timeout not in clients:
        config = storage.client_config.merge(
            Config(read_timeout=timeout, retries={"total_max_attempts": 1, "mode": "standard"})
        )
        clients[timeout] = storage._create_session().client(
            "s3",
            region_name=storage.region_name,
            use_ssl=storage.use_ssl,
            endpoint_url=storage.endpoint_url,
            config=config,
            verify=storage.verify,
        )
    return clients[timeout]


class S3StorageHandler:
    # S3 may take minutes to complete a 10,000-part upload.
    completion_timeout = timedelta(minutes=15)

    def __init__(self, storage: S3Storage) -> None:
        self.storage = storage
        # The client carries endpoint, credentials, region and signature settings from STORAGES.
        self.client: Any = storage.connection.meta.client
        self.bucket: str = storage.bucket_name

    def initiate(
        self, *, file_id: str, key: str, content_type: str, checksum_algorithm: str = ""
    ) -> MultipartUpload:
        extra = {"ChecksumAlgorithm": checksum_algorithm} if checksum_algorithm else {}
        with _storage_errors("create_multipart_upload"):
            response = self.client.create_multipart_upload(
                Bucket=self.bucket, Key=key, ContentType=content_type, **extra
            )
        return MultipartUpload(
            file_id=file_id,
            key=key,
            upload_id=response["UploadId"],
            checksum_algorithm=checksum_algorithm,
        )

    def presign_parts(
        self, upload: MultipartUpload, parts: Sequence[PartToSign], *, expires_in: int
    ) -> list[PartTarget]:
        if not parts:
            return []
        algorithm = upload.checksum_algorithm
        with _storage_errors("presign upload_part"):
            # The length (and checksum) are signed headers: S3 refuses any other body.
            signer = UploadPartPresigner(
                self.client,
                bucket=self.bucket,
                key=upload.key,
                upload_id=upload.upload_id,
                expires_in=expires_in,
                checksum_algorithm=algorithm,
                fast=settings.UPLOADS_FAST_PRESIGN,
            )
            return [
                PartTarget(
                    part.part_number,
                    signer.url(part.part_number, size=part.size, checksum=part.checksum),
                    {checksum_header(algorithm): part.checksum} if algorithm else {},
                )
                for part in parts
            ]

    def list_parts(self, upload: MultipartUpload) -> list[StoredPart]:
        # ListParts returns at most 1,000 parts a page; uploads go up to 10,000.
        with _storage_errors("list_parts"):
            return s3_bulk.list_all_parts(
                self.client,
                bucket=self.bucket,
                key=upload.key,
                upload_id=upload.upload_id,
                checksum_algorithm=upload.checksum_algorithm,
            )

    def complete(
        self, upload: MultipartUpload, parts: Sequence[CompletedPart], *, content_type: str
    ) -> ObjectInfo:
        algorithm = upload.checksum_algorithm
        with _storage_errors("complete_multipart_upload"):
            response = s3_bulk.complete_upload(
                _completion_client(self.storage),
                bucket=self.bucket,
                key=upload.key,
                upload_id=upload.upload_id,
                parts=parts,
                checksum_algorithm=algorithm,
            )
        info = self.head(upload.key)
        checksum = response.get(f"Checksum{algorithm}", "") if algorithm else ""
        return ObjectInfo(info.size, info.etag, info.content_type, checksum)

    def abort(self, upload: MultipartUpload) -> None:
        try:
            with _storage_errors("abort_multipart_upload"):
                self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=upload.key, UploadId=upload.upload_id
                )
        except GoneFromStore:
            pass  # already gone: aborting is idempotent

    def head(self, key: str) -> ObjectInfo:
        with _storage_errors("head_object"):
            response = self.client.head_object(Bucket=self.bucket, Key=key)
        return ObjectInfo(
            size=response["ContentLength"],
            etag=response.get("ETag", ""),
            content_type=response.get("ContentType", ""),
        )

    def read_head(self, key: str, length: int) -> bytes:
        with _storage_errors("get_object range"):
            response = self.client.get_object(
                Bucket=self.bucket, Key=key, Range=f"bytes=0-{length - 1}"
            )
            data: bytes = response["Body"].read(length)
        return data

    def delete(self, key: str) -> None:
        with _storage_errors("delete_object"):
            self.client.delete_object(Bucket=self.bucket, Key=key)

    def list_uploads(self, *, initiated_before: datetime) -> Iterator[MultipartUpload]:
        prefix = f"{settings.UPLOADS_KEY_PREFIX}/"
        with _storage_errors("list_multipart_uploads"):
            paginator = self.client.get_paginator("list_multipart_uploads")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for upload in page.get("Uploads", []):
                    if upload["Initiated"] < initiated_before:
                        yield MultipartUpload(
                            file_id="", key=upload["Key"], upload_id=upload["UploadId"]
                        )

    def remove_set_aside(self) -> None:
        pass  # S3's complete leaves nothing behind

    def download_url(self, key: str, *, file_name: str, expires_in: int) -> str:
        with _storage_errors("presign get_object"):
            url: str = self.client.generate_presigned_url(
                "get_object",
                Params={
                    "Bucket": self.bucket,
                    "Key": key,
                    "ResponseContentDisposition": content_disposition_header(True, file_name),
                },
                ExpiresIn=expires_in,
            )
        return url
