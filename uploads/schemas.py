"""Ninja schemas: shape only. Value rules (sizes, parts, parents) live in the services."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, NotRequired, TypedDict
from uuid import UUID

from django.urls import get_script_prefix, get_urlconf, reverse
from ninja import Schema
from pydantic import ConfigDict, Field, StrictInt, ValidationInfo, model_validator
from pydantic.functional_validators import ModelWrapValidatorHandler

from .models import FileRecord
from .services.uploads import InitiatedUpload
from .storage.base import PartTarget


def _absolute(context: dict[str, Any] | None, url: str) -> str:
    # S3 URLs are absolute already; re-parsing 10,000 of them was most of initiate's time.
    if url.startswith(("https://", "http://")):
        return url
    request = (context or {}).get("request")
    return request.build_absolute_uri(url) if request is not None else url


_ANY_ID = "00000000-0000-0000-0000-000000000000"
_download_paths: dict[tuple[str | None, str], str] = {}


def _download_path(file_id: UUID) -> str:
    """`reverse()` of the download URL, resolved once per URLconf and script prefix: a list
    page has 50 to 500 of them, and reversing each one was a fifth of its time."""
    key = (get_urlconf(), get_script_prefix())
    template = _download_paths.get(key)
    if template is None:
        template = _download_paths[key] = reverse("api-1:file_download", args=[_ANY_ID])
    return template.replace(_ANY_ID, str(file_id))


class ErrorOut(Schema):
    detail: str
    code: str
    extra: dict[str, Any] = {}


class UploadCreateIn(Schema):
    file_name: str
    file_size: StrictInt
    file_content_type: str | None = None
    part_size: StrictInt | None = None
    num_parts: StrictInt | None = None
    name: str = ""
    description: str = ""
    parent_content_type: str | None = None
    parent_object_id: StrictInt | str | None = None
    # "all" (default), "none", or how many part URLs to sign now; the rest via /presign.
    presign: StrictInt | str | None = None
    # Opt-in per-part integrity: "SHA256" or "CRC32", and part number → base64 checksum.
    # With an algorithm, initiate signs exactly the parts whose checksum is given.
    checksum_algorithm: str | None = None
    checksums: dict[str, str] | None = None


class PartIn(TypedDict):
    # StrictInt: JSON `true` is not part 1. A TypedDict, not a Schema: pydantic checks 10,000
    # of them without a Python call each (a Schema runs Ninja's validator per part).
    part_number: StrictInt
    etag: str


class UploadCompleteIn(Schema):
    parts: list[PartIn]


class FileUpdateIn(Schema):
    # Forbid the rest: file_name and file_content_type describe the stored bytes.
    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    description: str | None = None


class SetParentIn(Schema):
    parent_content_type: str | None
    parent_object_id: StrictInt | str | None


class FileOut(Schema):
    id: UUID
    name: str
    description: str
    file_name: str
    file_size: int
    file_content_type: str
    url: str | None
    upload_status: str
    created_by: int
    created_by_name: str
    created: datetime
    modified: datetime
    parent_content_type: str | None
    parent_object_id: str | None
    total_parts: int
    part_size: int
    uploaded_parts: int
    upload_expires_at: datetime | None
    completed_at: datetime | None
    etag: str
    checksum_algorithm: str
    checksum: str
    failure_reason: str

    @model_validator(mode="wrap")
    @classmethod
    def _from_record(
        cls, value: Any, handler: ModelWrapValidatorHandler[Any], info: ValidationInfo
    ) -> Any:
        """A record's answer, built straight from its attributes: they already have the types
        above, and reading each through Ninja's per-field getter was a third of the time of a
        list page (50 to 500 rows)."""
        if cls is not FileOut or not isinstance(value, FileRecord):
            return handler(value)
        user = value.created_by
        content_type = value.parent_content_type
        completed = value.upload_status == FileRecord.Status.COMPLETED
        return cls.model_construct(
            **{name: getattr(value, name) for name in _RECORD_FIELDS},
            url=_absolute(info.context, _download_path(value.pk)) if completed else None,
            created_by=int(value.created_by_id),
            created_by_name=user.get_full_name() or user.get_username(),
            parent_content_type=f"{content_type.app_label}.{content_type.model}"
            if content_type
            else None,
            parent_object_id=value.parent_object_id or None,
        )


# FileOut's fields read from the record as they are; the others are computed above.
_RECORD_FIELDS = tuple(
    name
    for name in FileOut.model_fields
    if name
    not in {"url", "created_by", "created_by_name", "parent_content_type", "parent_object_id"}
)


class PartTargetOut(TypedDict):
    # A TypedDict, not a Schema: an initiate answers up to 10,000 of them, built as plain dicts
    # by `part_targets_out` (a Schema costs a Python validator call per part).
    part_number: int
    url: str
    # Headers the PUT must send as given (signed into the URL), e.g. a part checksum.
    headers: NotRequired[Annotated[dict[str, str], Field(default={})]]


def part_targets_out(
    targets: Sequence[PartTarget], context: dict[str, Any] | None
) -> list[PartTargetOut]:
    """The part URLs as the API answers them: absolute, with the headers each PUT must send."""
    return [
        {"part_number": t.part_number, "url": _absolute(context, t.url), "headers": dict(t.headers)}
        for t in targets
    ]


class UploadInitiatedOut(FileOut):
    upload_id: str
    presigned_urls: list[PartTargetOut]
    expires_in: int

    @model_validator(mode="wrap")
    @classmethod
    def _record_and_urls(
        cls, value: Any, handler: ModelWrapValidatorHandler[Any], info: ValidationInfo
    ) -> Any:
        """The record's fields as FileOut reads them, side by side with the part URLs."""
        if not isinstance(value, InitiatedUpload):
            return handler(value)
        file = FileOut.model_validate(value.file, context=info.context)
        # Built here from the store's targets, so they need no second check.
        urls = part_targets_out(value.presigned_urls, info.context)
        return cls.model_construct(
            **dict(file),
            upload_id=value.file.upload_id,
            presigned_urls=urls,
            expires_in=value.expires_in,
        )


class StoredPartOut(Schema):
    part_number: int
    size: int
    etag: str
    # The part's checksum in the upload's algorithm (base64) as the store reports it; "" when the
    # upload has none or the store does not say. Clients compare it with their own file on resume.
    checksum: str = ""


class UploadPartsOut(Schema):
    id: UUID
    upload_status: str
    file_size: int
    part_size: int
    total_parts: int
    uploaded_bytes: int
    # "SHA256" / "CRC32" when the parts carry checksums, else "".
    checksum_algorithm: str = ""
    parts: list[StoredPartOut]


class PresignIn(Schema):
    part_numbers: list[StrictInt] = Field(..., min_length=1)
    checksums: dict[str, str] | None = None


class PresignOut(Schema):
    expires_in: int
    presigned_urls: list[PartTargetOut]

    @staticmethod
    def resolve_presigned_urls(obj: Any, context: dict[str, Any]) -> list[PartTargetOut]:
        return part_targets_out(obj.presigned_urls, context)
