"""Typed views of the API's JSON: small frozen dataclasses, each keeping the raw body too."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class RemoteFile:
    """A file record as `GET /v1/files/{id}` describes it."""

    id: str
    name: str
    description: str
    file_name: str
    file_size: int
    file_content_type: str
    upload_status: str
    url: str | None
    created: str
    parent_content_type: str | None
    parent_object_id: str | None
    total_parts: int
    part_size: int
    failure_reason: str
    # The completed object's ETag (S3's multipart form "<md5 of the part MD5s>-<parts>") and,
    # when the parts carried checksums, its composite checksum ("<base64>-<parts>").
    etag: str
    checksum_algorithm: str
    checksum: str
    # Every field the server sent, new ones included: the API may add fields, never rename.
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> RemoteFile:
        return cls(
            id=str(body["id"]),
            name=str(body.get("name") or ""),
            description=str(body.get("description") or ""),
            file_name=str(body.get("file_name") or ""),
            file_size=int(body.get("file_size") or 0),
            file_content_type=str(body.get("file_content_type") or ""),
            upload_status=str(body.get("upload_status") or ""),
            url=body.get("url"),
            created=str(body.get("created") or ""),
            parent_content_type=body.get("parent_content_type"),
            parent_object_id=body.get("parent_object_id"),
            total_parts=int(body.get("total_parts") or 0),
            part_size=int(body.get("part_size") or 0),
            failure_reason=str(body.get("failure_reason") or ""),
            etag=str(body.get("etag") or ""),
            checksum_algorithm=str(body.get("checksum_algorithm") or ""),
            checksum=str(body.get("checksum") or ""),
            raw=dict(body),
        )


@dataclass(frozen=True, slots=True)
class StoredPart:
    part_number: int
    size: int
    etag: str
    # base64, in the upload's checksum algorithm; "" when the store does not say.
    checksum: str = ""


@dataclass(frozen=True, slots=True)
class UploadParts:
    """What the store already holds for an unfinished upload (`GET …/parts`)."""

    id: str
    upload_status: str
    file_size: int
    part_size: int
    total_parts: int
    uploaded_bytes: int
    parts: tuple[StoredPart, ...]
    checksum_algorithm: str = ""

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> UploadParts:
        return cls(
            id=str(body["id"]),
            upload_status=str(body.get("upload_status") or ""),
            file_size=int(body["file_size"]),
            part_size=int(body["part_size"]),
            total_parts=int(body["total_parts"]),
            uploaded_bytes=int(body.get("uploaded_bytes") or 0),
            parts=tuple(
                StoredPart(
                    int(p["part_number"]),
                    int(p["size"]),
                    str(p["etag"]),
                    str(p.get("checksum") or ""),
                )
                for p in body.get("parts", [])
            ),
            checksum_algorithm=str(body.get("checksum_algorithm") or ""),
        )


@dataclass(frozen=True, slots=True)
class PartURL:
    """Where to PUT one part, and the headers signed into that URL (if any)."""

    part_number: int
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> PartURL:
        return cls(int(body["part_number"]), str(body["url"]), dict(body.get("headers") or {}))


@dataclass(frozen=True, slots=True)
class UploadResult:
    """What `Client.upload` did: the completed file and how much of it this call sent."""

    file: RemoteFile
    path: Path
    parts_sent: int
    parts_reused: int
    bytes_sent: int
    seconds: float
    resumed: bool
    # Parts the store held that did not match the local file, and were sent again.
    parts_replaced: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "file": dict(self.file.raw),
            "resumed": self.resumed,
            "parts_sent": self.parts_sent,
            "parts_reused": self.parts_reused,
            "parts_replaced": self.parts_replaced,
            "bytes_sent": self.bytes_sent,
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True, slots=True)
class Verification:
    """What `Client.verify` compared: the local file's value and the stored file's, by `method`
    ("sha256": composite checksum, "etag": multipart ETag, "md5", or "size" when they differ)."""

    file: RemoteFile
    method: str
    local: str
    stored: str

    @property
    def matches(self) -> bool:
        return self.local == self.stored

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.file.id,
            "matches": self.matches,
            "method": self.method,
            "local": self.local,
            "stored": self.stored,
        }
