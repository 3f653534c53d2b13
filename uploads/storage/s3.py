"""S3 (and S3-compatible) handler, on the boto3 client that django-storages configured."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.utils.http import content_disposition_header
from storages.backends.s3 import S3Storage

from .base import (
    CompletedPart,
    MultipartUpload,
    ObjectInfo,
    PartNotFound,
    PartTarget,
    StorageError,
    StoredPart,
    checksum_header,
)
from .s3_presign import UploadPartPresigner

logger = logging.getLogger(__name__)

# S3 error codes that mean "that upload is gone" rather than "the store is failing".
_GONE_CODES = {"NoSuchUpload", "NoSuchKey", "404"}


@contextmanager
def _storage_errors(action: str) -> Iterator[None]:
    try:
        yield
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        logger.warning("S3 %s failed: %s", action, exc)
        if code in _GONE_CODES:
            raise PartNotFound(f"{action}: {code}") from exc
        raise StorageError(f"{action}: {code or exc}") from exc
    except BotoCoreError as exc:
        logger.warning("S3 %s failed: %s", action, exc)
        raise StorageError(f"{action}: {exc}") from exc


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
    name = "s3"

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
        self,
        upload: MultipartUpload,
        part_numbers: Sequence[int],
        *,
        expires_in: int,
        checksums: Mapping[int, str] | None = None,
    ) -> list[PartTarget]:
        if not part_numbers:
            return []
        with _storage_errors("presign upload_part"):
            if upload.checksum_algorithm:
                return [
                    self._presign_with_checksum(upload, n, (checksums or {})[n], expires_in)
                    for n in part_numbers
                ]
            signer = UploadPartPresigner(
                self.client,
                bucket=self.bucket,
                key=upload.key,
                upload_id=upload.upload_id,
                expires_in=expires_in,
                fast=settings.UPLOADS_FAST_PRESIGN,
            )
            return [PartTarget(part_number=n, url=signer.url(n)) for n in part_numbers]

    def _presign_with_checksum(
        self, upload: MultipartUpload, number: int, checksum: str, expires_in: int
    ) -> PartTarget:
        # The checksum becomes a signed header: S3 then refuses a body that does not match it.
        # The fast signer covers only the plain layout, so botocore signs these.
        algorithm = upload.checksum_algorithm
        url = self.client.generate_presigned_url(
            "upload_part",
            Params={
                "Bucket": self.bucket,
                "Key": upload.key,
                "UploadId": upload.upload_id,
                "PartNumber": number,
                f"Checksum{algorithm}": checksum,
            },
            ExpiresIn=expires_in,
            HttpMethod="PUT",
        )
        return PartTarget(number, url, {checksum_header(algorithm): checksum})

    def list_parts(self, upload: MultipartUpload) -> list[StoredPart]:
        parts: list[StoredPart] = []
        # ListParts returns at most 1,000 parts a page; uploads go up to 10,000.
        with _storage_errors("list_parts"):
            paginator = self.client.get_paginator("list_parts")
            for page in paginator.paginate(
                Bucket=self.bucket, Key=upload.key, UploadId=upload.upload_id
            ):
                parts.extend(
                    StoredPart(
                        part_number=p["PartNumber"],
                        size=p["Size"],
                        etag=p["ETag"],
                        last_modified=p.get("LastModified"),
                        checksum=p.get(f"Checksum{upload.checksum_algorithm}", "")
                        if upload.checksum_algorithm
                        else "",
                    )
                    for p in page.get("Parts", [])
                )
        return parts

    def complete(
        self, upload: MultipartUpload, parts: Sequence[CompletedPart], *, content_type: str
    ) -> ObjectInfo:
        algorithm = upload.checksum_algorithm

        def entry(part: CompletedPart) -> dict[str, object]:
            item: dict[str, object] = {"PartNumber": part.part_number, "ETag": part.etag}
            if algorithm and part.checksum:
                item[f"Checksum{algorithm}"] = part.checksum
            return item

        with _storage_errors("complete_multipart_upload"):
            response = _completion_client(self.storage).complete_multipart_upload(
                Bucket=self.bucket,
                Key=upload.key,
                UploadId=upload.upload_id,
                MultipartUpload={"Parts": [entry(p) for p in parts]},
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
        except PartNotFound:
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
