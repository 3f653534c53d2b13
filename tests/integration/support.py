"""Helpers shared by the integration tests (fixtures live in conftest.py)."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from django.conf import settings
from django.core.files.storage import storages

from tests.helpers import HttpApi, local_part_files
from uploads.storage.base import MultipartUpload
from uploads.storage.local import LocalStorageHandler

KIB = 1024
MIB = 1024 * KIB


@dataclass(frozen=True)
class Sizes:
    """Part size per backend: S3 needs 5 MiB for every part but the last; local stays small."""

    part: int

    def file_size(self, parts: int, tail: int) -> int:
        """`parts - 1` full parts and a short last part of `tail` bytes."""
        return (parts - 1) * self.part + tail


class Store:
    """Looks into the store behind the handler, around the application, to check what it holds."""

    def __init__(self, backend: str, request: pytest.FixtureRequest) -> None:
        self.backend = backend
        self.s3 = None if backend == "local" else request.getfixturevalue(backend)

    @property
    def parts_dir(self) -> Path:
        return Path(settings.UPLOADS_LOCAL_PARTS_DIR)

    def upload_alive(self, upload_id: str) -> bool:
        """Whether the store still holds the multipart upload `upload_id`."""
        if self.s3 is None:
            return (self.parts_dir / upload_id).exists()
        uploads: list[dict[str, Any]] = []
        pages = self.s3.client.get_paginator("list_multipart_uploads")
        for page in pages.paginate(Bucket=self.s3.bucket):
            uploads.extend(page.get("Uploads", []))
        return any(item["UploadId"] == upload_id for item in uploads)

    def object_bytes(self, key: str) -> bytes | None:
        """The stored object at `key`, or None when there is none."""
        if self.s3 is None:
            path = Path(settings.MEDIA_ROOT) / key
            return path.read_bytes() if path.is_file() else None
        try:
            response = self.s3.client.get_object(Bucket=self.s3.bucket, Key=key)
        except self.s3.client.exceptions.NoSuchKey:
            return None
        return response["Body"].read()  # type: ignore[no-any-return]

    def local_part_files(self, upload_id: str) -> list[Path]:
        """Part records and leftovers (temp files) in a local upload's directory."""
        return local_part_files(self.parts_dir / upload_id)


def local_parts(upload_id: str) -> list[tuple[int, str]]:
    """(part number, ETag) of each part the local store lists for an upload."""
    handler = LocalStorageHandler(storages["default"])
    upload = MultipartUpload(file_id="", key="", upload_id=upload_id)
    return [(p.part_number, p.etag) for p in handler.list_parts(upload)]


def payload(size: int, seed: int = 0) -> bytes:
    """Deterministic random bytes, so a swapped or shifted part cannot go unnoticed."""
    return random.Random(seed).randbytes(size)


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def put_parts(
    upload: dict[str, Any], content: bytes, *, skip: tuple[int, ...] = ()
) -> list[dict[str, Any]]:
    """PUT every part of `content` to its URL as a bare request; return the parts for complete."""
    size = upload["part_size"]
    parts = []
    for target in upload["presigned_urls"]:
        number = target["part_number"]
        if number in skip:
            continue
        response = HttpApi.put(target["url"], content[(number - 1) * size : number * size])
        assert response.status_code == 200, response.text
        parts.append({"part_number": number, "etag": response.headers["ETag"]})
    return parts


def download(api: HttpApi, file_id: str) -> requests.Response:
    """GET /v1/files/{id}/download and follow the redirect to the bytes."""
    response = api.session.get(f"{api.base_url}/v1/files/{file_id}/download", timeout=60)
    assert response.history and response.history[0].status_code == 302, response.text
    return response


def assert_error(response: requests.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert body["code"] == code
    assert isinstance(body["detail"], str) and body["detail"]
    return body
