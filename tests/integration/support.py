"""Helpers shared by the integration tests (fixtures live in conftest.py)."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Any

import requests
from django.core.files.storage import storages

from tests.helpers import HttpApi
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


def local_parts(upload_id: str) -> list[tuple[int, str]]:
    """(part number, ETag) of each part the local store lists for an upload."""
    handler = LocalStorageHandler(storages["default"])
    upload = MultipartUpload(file_id="", key="", upload_id=upload_id)
    return [(p.part_number, p.etag) for p in handler.list_parts(upload)]
