"""The rules every client meets (API, portal JS, Python client): the part plan, names and
types, checksums. Parent resolution is in parents.py."""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import mimetypes
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone

from uploads.errors import (
    InvalidInput,
    UnsupportedFileType,
    UploadTooLarge,
    size_text,
)
from uploads.storage.base import (
    CHECKSUM_DIGEST_SIZES,
    S3_MAX_OBJECT_SIZE,
    S3_MAX_PART_SIZE,
    S3_MAX_PARTS,
    CompletedPart,
    normalize_etag,
)

_CONTENT_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*$")
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
MAX_NAME_LENGTH = 255
PRESIGN_ALL = "all"
PRESIGN_NONE = "none"


@dataclass(frozen=True, slots=True)
class PartPlan:
    part_size: int
    num_parts: int


def strict_int(value: object, field: str) -> int:
    # bool is an int subclass: `true` must never pass as 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{field} must be a whole number.", {"field": field})
    return value


def default_part_size(file_size: int) -> int:
    """The configured part size, grown (in whole MiB) until the file fits in 10,000 parts."""
    size = max(settings.UPLOADS_DEFAULT_PART_SIZE, settings.UPLOADS_MIN_PART_SIZE)
    needed = math.ceil(file_size / S3_MAX_PARTS)
    if needed > size:
        mib = 1024 * 1024
        size = math.ceil(needed / mib) * mib
    return size


def plan_parts(
    *, file_size: object, part_size: object = None, num_parts: object = None
) -> PartPlan:
    """Check the declared size and split; the one place these rules live."""
    size = strict_int(file_size, "file_size")
    if size < 0:
        raise InvalidInput("file_size cannot be negative.", {"field": "file_size"})
    limit = min(settings.MAX_FILE_UPLOAD_SIZE, S3_MAX_OBJECT_SIZE)
    if size > limit:
        raise UploadTooLarge(
            f"The file is {size_text(size)}; the largest allowed is {size_text(limit)}.",
            {"max_file_size": limit},
        )
    chosen = default_part_size(size) if part_size is None else strict_int(part_size, "part_size")
    if chosen <= 0:
        raise InvalidInput("part_size must be positive.", {"field": "part_size"})
    if chosen > S3_MAX_PART_SIZE:
        raise InvalidInput(
            f"part_size may be at most {size_text(S3_MAX_PART_SIZE)}.", {"field": "part_size"}
        )
    count = max(1, math.ceil(size / chosen))
    if num_parts is not None:
        count = strict_int(num_parts, "num_parts")
        if count < 1:
            raise InvalidInput("num_parts must be at least 1.", {"field": "num_parts"})
        fits = (count - 1) * chosen < size <= count * chosen or (size == 0 and count == 1)
        if not fits:
            raise InvalidInput(
                f"{count} parts of {size_text(chosen)} cannot hold exactly {size_text(size)}.",
                {"field": "num_parts"},
            )
    if count > S3_MAX_PARTS:
        raise InvalidInput(
            f"The upload would need {count} parts; at most {S3_MAX_PARTS} are allowed. "
            "Use a larger part_size.",
            {"field": "part_size"},
        )
    if count > 1 and chosen < settings.UPLOADS_MIN_PART_SIZE:
        raise InvalidInput(
            f"part_size must be at least {size_text(settings.UPLOADS_MIN_PART_SIZE)} "
            "when the file has more than one part.",
            {"field": "part_size"},
        )
    return PartPlan(part_size=chosen, num_parts=count)


def clean_file_name(value: str) -> str:
    # The name is display metadata only (keys never use it); keep the last path segment.
    name = _CONTROL_CHARS.sub("", value.replace("\\", "/").rsplit("/", 1)[-1]).strip()
    if not name or name in {".", ".."}:
        raise InvalidInput("file_name must be a file name.", {"field": "file_name"})
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidInput(
            f"file_name may be at most {MAX_NAME_LENGTH} characters.", {"field": "file_name"}
        )
    return name


def clean_content_type(value: str | None, file_name: str) -> str:
    content_type = (value or "").strip().lower()
    if not content_type:
        return mimetypes.guess_type(file_name)[0] or "application/octet-stream"
    if len(content_type) > 255 or not _CONTENT_TYPE.match(content_type):
        raise InvalidInput(
            "file_content_type must look like 'type/subtype'.", {"field": "file_content_type"}
        )
    return content_type


def clean_description(value: str) -> str:
    # Free text keeps its line breaks; only NUL goes, which PostgreSQL cannot store.
    return value.replace("\x00", "")


def clean_display_name(value: str, field: str = "name") -> str:
    name = _CONTROL_CHARS.sub("", value).strip()
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidInput(
            f"{field} may be at most {MAX_NAME_LENGTH} characters.", {"field": field}
        )
    return name


def storage_key(file_id: uuid.UUID) -> str:
    # Derived once, from our own id only: no client-chosen segment or extension reaches the key.
    return f"{settings.UPLOADS_KEY_PREFIX}/{timezone.now():%Y/%m/%d}/{file_id.hex}"


def parts_digest(parts: Sequence[CompletedPart], etags: Sequence[str] | None = None) -> str:
    """What a completion's part list is remembered by; `etags`: normalized, if already known."""
    if etags is None:
        etags = [normalize_etag(p.etag) for p in parts]
    text = ",".join(f"{p.part_number}:{etag}" for p, etag in zip(parts, etags, strict=True))
    return hashlib.sha256(text.encode()).hexdigest()


def presign_count(presign: object, num_parts: int) -> int:
    """How many part URLs initiate signs: all (the spec's clients read them all), none, or N."""
    if presign is None or presign == PRESIGN_ALL:
        return num_parts
    if presign == PRESIGN_NONE:
        return 0
    if isinstance(presign, bool) or not isinstance(presign, int) or presign < 0:
        raise InvalidInput(
            "presign must be 'all', 'none' or a number of parts to sign now.", {"field": "presign"}
        )
    return min(presign, num_parts)


def clean_checksum_algorithm(value: str | None) -> str:
    if not value:
        return ""
    algorithm = value.strip().upper()
    if algorithm not in CHECKSUM_DIGEST_SIZES:
        raise InvalidInput(
            f"checksum_algorithm must be one of: {', '.join(CHECKSUM_DIGEST_SIZES)}.",
            {"field": "checksum_algorithm"},
        )
    return algorithm


def clean_checksums(
    algorithm: str, checksums: Mapping[str, str] | None, num_parts: int
) -> dict[int, str]:
    """Part number → base64 checksum, each of the algorithm's digest size."""
    if not checksums:
        return {}
    if not algorithm:
        raise InvalidInput("checksums need a checksum_algorithm.", {"field": "checksums"})
    cleaned: dict[int, str] = {}
    for raw_number, raw_value in checksums.items():
        try:
            number = int(str(raw_number))
        except ValueError:
            number = 0
        if not 1 <= number <= num_parts:
            raise InvalidInput(
                f"checksums: {raw_number!r} is not a part number of this upload.",
                {"field": "checksums"},
            )
        try:
            digest = base64.b64decode(str(raw_value), validate=True)
        except (binascii.Error, ValueError):
            digest = b""
        if len(digest) != CHECKSUM_DIGEST_SIZES[algorithm]:
            raise InvalidInput(
                f"The checksum of part {number} is not a base64 {algorithm} digest.",
                {"field": "checksums", "part_number": number},
            )
        cleaned[number] = str(raw_value)
    return cleaned


def check_type_allowed(content_type: str) -> None:
    allowed = [item.lower() for item in settings.ALLOWED_FILE_TYPES]
    if not allowed:
        return
    major = content_type.split("/", 1)[0]
    if content_type in allowed or f"{major}/*" in allowed:
        return
    raise UnsupportedFileType(
        f"Files of type {content_type} are not accepted. Accepted types: {', '.join(allowed)}.",
        {"allowed": allowed},
    )
