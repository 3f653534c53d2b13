"""Upload lifecycle: initiate → (parts go straight to the store) → complete, or abort.

Every state change locks the row and re-checks the state; no lock is held across a call to the
store. Where a store call and a state change race (two completes, complete vs cleanup), the
loser inspects the store, so a file ends completed with its bytes or not completed with nothing
stored, never a mix.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import math
import mimetypes
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, NoReturn

import filetype
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q, Sum
from django.utils import timezone

from uploads.errors import (
    InsufficientStorage,
    InvalidInput,
    InvalidTransition,
    PartsMismatch,
    QuotaExceeded,
    StorageUnavailable,
    UnsupportedFileType,
    UploadError,
    UploadNotFound,
    UploadTooLarge,
    VerificationFailed,
    size_text,
)
from uploads.models import FileRecord
from uploads.selectors import file_queryset_for_user
from uploads.services.cleanup import claim_for_purge, purge_from_store
from uploads.services.parents import resolve_parent
from uploads.storage import StorageError, get_storage_handler
from uploads.storage.base import (
    CHECKSUM_DIGEST_SIZES,
    S3_MAX_OBJECT_SIZE,
    S3_MAX_PART_SIZE,
    S3_MAX_PARTS,
    CompletedPart,
    MultipartUpload,
    ObjectInfo,
    PartNotFound,
    PartsRejected,
    PartTarget,
    PartToSign,
    StorageBusy,
    StorageFull,
    StorageHandler,
    StorageMisconfigured,
    StoredPart,
    UploadRejected,
    normalize_etag,
)

logger = logging.getLogger(__name__)

User = AbstractBaseUser | AnonymousUser
Status = FileRecord.Status

_CONTENT_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*$")
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
MAX_NAME_LENGTH = 255
PRESIGN_ALL = "all"
PRESIGN_NONE = "none"
# Most URLs one presign call signs: bounds the request's time and response size.
MAX_PRESIGN_BATCH = 1000
# Bytes read from a completed file to find its real type.
SNIFF_BYTES = 8192
# A completion claim older than this is taken to be from a crashed process. S3 may take
# minutes to complete a 10,000-part upload; a local combine of 50 GB takes a few too.
COMPLETING_TIMEOUT = timedelta(minutes=15)
# Seconds a client is told to wait (Retry-After) when the store is busy or unreachable.
STORAGE_RETRY_AFTER = 5


# --- Validation shared by every client (API, portal JS, Python client) ---------------------


@dataclass(frozen=True, slots=True)
class PartPlan:
    part_size: int
    num_parts: int


def _strict_int(value: object, field: str) -> int:
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
    size = _strict_int(file_size, "file_size")
    if size < 0:
        raise InvalidInput("file_size cannot be negative.", {"field": "file_size"})
    limit = min(settings.MAX_FILE_UPLOAD_SIZE, S3_MAX_OBJECT_SIZE)
    if size > limit:
        raise UploadTooLarge(
            f"The file is {size} bytes; the largest allowed is {limit} bytes.",
            {"max_file_size": limit},
        )
    chosen = default_part_size(size) if part_size is None else _strict_int(part_size, "part_size")
    if chosen <= 0:
        raise InvalidInput("part_size must be positive.", {"field": "part_size"})
    if chosen > S3_MAX_PART_SIZE:
        raise InvalidInput(
            f"part_size may be at most {S3_MAX_PART_SIZE} bytes (5 GiB).", {"field": "part_size"}
        )
    count = max(1, math.ceil(size / chosen))
    if num_parts is not None:
        count = _strict_int(num_parts, "num_parts")
        if count < 1:
            raise InvalidInput("num_parts must be at least 1.", {"field": "num_parts"})
        fits = (count - 1) * chosen < size <= count * chosen or (size == 0 and count == 1)
        if not fits:
            raise InvalidInput(
                f"{count} parts of {chosen} bytes cannot hold exactly {size} bytes.",
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
            f"part_size must be at least {settings.UPLOADS_MIN_PART_SIZE} bytes "
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


def parts_digest(parts: Sequence[CompletedPart]) -> str:
    text = ",".join(f"{p.part_number}:{normalize_etag(p.etag)}" for p in parts)
    return hashlib.sha256(text.encode()).hexdigest()


# --- Lookups with the access rule --------------------------------------------------------


def _locked(
    user: User, file_id: object, *, staff_ok: bool = True, deleted_ok: bool = False
) -> FileRecord:
    queryset = file_queryset_for_user(user, staff_ok=staff_ok, deleted_ok=deleted_ok)
    try:
        return queryset.select_for_update(of=("self",)).get(pk=file_id)
    except (FileRecord.DoesNotExist, ValidationError, ValueError) as exc:
        raise UploadNotFound() from exc


def _actor(user: User) -> str:
    name = user.get_username() if user.is_authenticated else "anonymous"
    return f"staff {name}" if getattr(user, "is_staff", False) else f"user {name}"


def _multipart(record: FileRecord) -> MultipartUpload:
    return MultipartUpload(
        file_id=str(record.pk),
        key=record.storage_key,
        upload_id=record.upload_id,
        checksum_algorithm=record.checksum_algorithm,
    )


def storage_failure(exc: StorageError) -> StorageUnavailable | InsufficientStorage:
    """What a client hears when the store failed: 503 (507 when it is full), never blamed on
    the upload."""
    if isinstance(exc, StorageFull):
        logger.error("storage full: %s", exc, exc_info=exc)
        return InsufficientStorage()
    if isinstance(exc, StorageMisconfigured):
        # Every call to the store will fail the same way until someone fixes the settings.
        logger.error(
            "STORAGE MISCONFIGURED (credentials, bucket, region or clock): %s", exc, exc_info=exc
        )
        return StorageUnavailable(
            "The storage service refused this server's request (a server configuration "
            "problem, now logged). Please try again later."
        )
    if isinstance(exc, StorageBusy):
        logger.warning("storage busy or unreachable, client told to retry: %s", exc)
        return StorageUnavailable(retry_after=STORAGE_RETRY_AFTER)
    logger.error("storage call failed (%s): %s", exc.kind, exc, exc_info=exc)
    return StorageUnavailable()


# --- Initiate ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InitiatedUpload:
    file: FileRecord
    presigned_urls: list[PartTarget]
    expires_in: int

    def __getattr__(self, name: str) -> Any:
        # Lets one response schema read the record's fields and the part URLs side by side.
        return getattr(self.file, name)


def upload_initiate(
    *,
    user: User,
    file_name: str,
    file_size: object,
    file_content_type: str | None = None,
    part_size: object = None,
    num_parts: object = None,
    name: str = "",
    description: str = "",
    parent_content_type: str | None = None,
    parent_object_id: object = None,
    presign: object = PRESIGN_ALL,
    checksum_algorithm: str | None = None,
    checksums: Mapping[object, object] | None = None,
) -> InitiatedUpload:
    plan = plan_parts(file_size=file_size, part_size=part_size, num_parts=num_parts)
    algorithm = clean_checksum_algorithm(checksum_algorithm)
    part_checksums = clean_checksums(algorithm, checksums, plan.num_parts)
    # With checksums, a URL can only be signed for a part whose checksum is known.
    first_batch = (
        sorted(part_checksums)
        if algorithm
        else list(range(1, presign_count(presign, plan.num_parts) + 1))
    )
    clean_name = clean_file_name(file_name)
    declared_type = clean_content_type(file_content_type, clean_name)
    check_type_allowed(declared_type)
    content_type, object_id = resolve_parent(user, parent_content_type, parent_object_id)
    file_id = uuid.uuid4()
    with transaction.atomic():
        _reserve_quota(user, plan_size=int(file_size))  # type: ignore[call-overload]
        record = FileRecord.objects.create(
            id=file_id,
            name=clean_display_name(name) or clean_name,
            description=clean_description(description),
            file_name=clean_name,
            file_size=file_size,
            file_content_type=declared_type,
            file=storage_key(file_id),
            upload_status=Status.PENDING,
            total_parts=plan.num_parts,
            part_size=plan.part_size,
            upload_expires_at=_new_expiry(),
            created_by=user,
            parent_content_type=content_type,
            parent_object_id=object_id,
            checksum_algorithm=algorithm,
        )
    handler = get_storage_handler()
    try:
        upload = handler.initiate(
            file_id=str(file_id),
            key=record.storage_key,
            content_type=record.file_content_type,
            checksum_algorithm=algorithm,
        )
    except StorageError as exc:
        # Nothing exists in the store; leave nothing behind in the database either.
        record.delete()
        raise storage_failure(exc) from exc
    FileRecord.objects.filter(pk=file_id).update(
        upload_id=upload.upload_id, upload_status=Status.UPLOADING
    )
    record.upload_id = upload.upload_id
    record.upload_status = Status.UPLOADING
    targets = _presign(handler, record, first_batch, part_checksums)
    return InitiatedUpload(
        file=record,
        presigned_urls=targets,
        expires_in=settings.FILE_UPLOAD_PRESIGNED_URL_EXPIRATION,
    )


def _new_expiry() -> Any:
    return timezone.now() + timedelta(seconds=settings.UPLOADS_EXPIRATION_SECONDS)


def _keep_open_while_urls_live(record: FileRecord, urls_expire_in: int) -> None:
    """Push the upload's expiry past the URLs just signed, and a full expiry window on.

    Called after signing, so no URL signed for the upload outlives it: cleanup never aborts an
    upload a client can still send parts to. Signing means the client is at work, too.
    """
    seconds = max(settings.UPLOADS_EXPIRATION_SECONDS, urls_expire_in)
    expires = timezone.now() + timedelta(seconds=seconds)
    later = Q(upload_expires_at__lt=expires) | Q(upload_expires_at__isnull=True)
    open_rows = FileRecord.objects.filter(pk=record.pk, upload_status__in=FileRecord.OPEN_STATES)
    if open_rows.filter(later).update(upload_expires_at=expires):
        record.upload_expires_at = expires


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
    algorithm: str, checksums: Mapping[object, object] | None, num_parts: int
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
        f"Files of type {content_type} are not accepted.", {"allowed": allowed}
    )


def _reserve_quota(user: User, *, plan_size: int) -> None:
    """Refuse an upload that would take the user over quota. Call inside a transaction."""
    quota = settings.FILE_UPLOAD_QUOTA_PER_USER
    if quota is None:
        return
    # Lock the user's row: two initiates for one user queue here, so both cannot slip under.
    # The user model, not type(user): a session's request.user is a lazy proxy (a 500 here).
    get_user_model()._default_manager.select_for_update().filter(pk=user.pk).first()
    used = (
        FileRecord.objects.filter(
            created_by=user, upload_status__in=[Status.COMPLETED, *FileRecord.OPEN_STATES]
        ).aggregate(total=Sum("file_size"))["total"]
        or 0
    )
    if used + plan_size > quota:
        raise QuotaExceeded(
            f"This upload needs {plan_size} bytes but only {max(0, quota - used)} of your "
            f"{quota}-byte quota are left.",
            {"quota": quota, "used": used},
        )


def _presign(
    handler: StorageHandler,
    record: FileRecord,
    numbers: Sequence[int],
    checksums: Mapping[int, str],
) -> list[PartTarget]:
    """Sign URLs that take exactly each part's planned bytes (and checksum, if any)."""
    if not numbers:
        return []
    expires_in = settings.FILE_UPLOAD_PRESIGNED_URL_EXPIRATION
    parts = [
        PartToSign(
            n, record.expected_part_size(n), checksums.get(n, ""), (n - 1) * record.part_size
        )
        for n in numbers
    ]
    try:
        targets = handler.presign_parts(_multipart(record), parts, expires_in=expires_in)
    except StorageError as exc:
        raise storage_failure(exc) from exc
    _keep_open_while_urls_live(record, expires_in)
    return targets


# --- Complete ------------------------------------------------------------------------------


def _check_part_list(record: FileRecord, parts: Sequence[CompletedPart]) -> list[CompletedPart]:
    numbers = [_strict_int(p.part_number, "part_number") for p in parts]
    expected = list(range(1, record.total_parts + 1))
    if sorted(numbers) != expected:
        seen: set[int] = set()
        duplicates = sorted({n for n in numbers if n in seen or seen.add(n)})  # type: ignore[func-returns-value]
        missing = sorted(set(expected) - set(numbers))
        extra = sorted(set(numbers) - set(expected))
        raise InvalidInput(
            f"parts must list each of parts 1..{record.total_parts} exactly once.",
            {"missing": missing[:20], "duplicates": duplicates[:20], "unexpected": extra[:20]},
        )
    for part in parts:
        if not isinstance(part.etag, str) or not normalize_etag(part.etag):
            raise InvalidInput(f"Part {part.part_number} has no etag.", {"field": "etag"})
    return sorted(parts, key=lambda p: p.part_number)


def mismatched_parts(
    record: FileRecord, parts: Sequence[CompletedPart], stored: Sequence[StoredPart]
) -> list[int]:
    """The listed parts the store does not hold as listed: the ones to send again.

    A part is wrong when the store lacks it, or holds it with another size than the plan's or
    another ETag than the client's. With every part right, the sizes add up to the file's.
    Parts the store holds beyond the plan are left out of the object and need nothing.
    """
    by_number = {p.part_number: p for p in stored}
    wrong = []
    for part in parts:
        held = by_number.get(part.part_number)
        if (
            held is None
            or held.size != record.expected_part_size(part.part_number)
            or normalize_etag(held.etag) != normalize_etag(part.etag)
        ):
            wrong.append(part.part_number)
    return wrong


def upload_complete(*, user: User, file_id: object, parts: Sequence[CompletedPart]) -> FileRecord:
    with transaction.atomic():
        # The owner's deleted uploads too: completing one says why it cannot (409), not 404.
        record = _locked(user, file_id, staff_ok=False, deleted_ok=True)
        if record.upload_status == Status.COMPLETED and not record.deleted_at:
            return _repeat_completion(record, parts)
        _require_open(record, "completed")
        ordered = _check_part_list(record, parts)
        claim = _claim_completion(record)
    try:
        return _complete_claimed(user, record, ordered)
    finally:
        # Whatever happened, the claim ends with this request (completion clears it too).
        FileRecord.objects.filter(pk=record.pk, completing_since=claim).update(
            completing_since=None
        )


def _claim_completion(record: FileRecord) -> Any:
    """Mark the row as being completed, so a second complete answers 409 instead of racing.

    The claim is a timestamp, not a held lock: no lock spans the store's calls, and a claim
    left by a crashed process lapses after COMPLETING_TIMEOUT.
    """
    now = timezone.now()
    if record.completing_since and now - record.completing_since < COMPLETING_TIMEOUT:
        raise InvalidTransition(
            "This upload is being completed by another request; try again shortly.",
            {"upload_status": record.upload_status},
        )
    record.completing_since = now
    record.save(update_fields=["completing_since"])
    return now


def _complete_claimed(user: User, record: FileRecord, ordered: list[CompletedPart]) -> FileRecord:
    handler = get_storage_handler()
    upload = _multipart(record)
    try:
        stored = handler.list_parts(upload)
    except PartNotFound:
        # The upload is gone from the store: a completion that crashed after the store
        # finished, or cleanup. The store says which.
        return _finish_from_store(user, record, handler, ordered)
    except StorageError as exc:
        raise _store_failed(record, handler, exc) from exc
    wrong = mismatched_parts(record, ordered, stored)
    if wrong:
        # Parts vanish from a listing while an abort removes them: then that is the answer.
        # Otherwise nothing is lost: the client sends the wrong parts again.
        raise _ended_meanwhile(record, handler) or PartsMismatch(wrong, record.upload_status)
    checksums = {part.part_number: part.checksum for part in stored}
    ordered = [replace(part, checksum=checksums.get(part.part_number, "")) for part in ordered]
    try:
        info = handler.complete(upload, ordered, content_type=record.file_content_type)
    except PartNotFound:
        return _finish_from_store(user, record, handler, ordered)
    except PartsRejected as exc:
        # The list matched the store a moment ago: a part was sent again in between.
        raise _parts_rejected(record, handler, ordered) from exc
    except UploadRejected as exc:
        logger.error("store refused to complete %s as planned: %s", record.pk, exc)
        _fail(
            record,
            handler,
            "The store refuses parts smaller than 5 MiB except the last; this upload's parts "
            f"are {size_text(record.part_size)}. Upload the file again with larger parts.",
        )
    except StorageError as exc:
        raise _store_failed(record, handler, exc) from exc
    return _mark_completed(user, record, handler, ordered, info)


def _parts_rejected(
    record: FileRecord, handler: StorageHandler, parts: Sequence[CompletedPart]
) -> UploadError:
    """The parts to send again after the store refused the list it had just agreed with."""
    try:
        stored = handler.list_parts(_multipart(record))
    except StorageError as exc:
        return _store_failed(record, handler, exc)
    wrong = mismatched_parts(record, parts, stored)
    return _ended_meanwhile(record, handler) or PartsMismatch(wrong, record.upload_status)


def _store_failed(record: FileRecord, handler: StorageHandler, exc: StorageError) -> UploadError:
    """A store call of a completion failed: a 409 if the upload ended meanwhile, else a 503."""
    ended = _ended_meanwhile(record, handler)
    if ended is None:
        return storage_failure(exc)
    logger.info("completion of %s failed in the store after it ended: %s", record.pk, exc)
    return ended


def _ended_meanwhile(record: FileRecord, handler: StorageHandler) -> InvalidTransition | None:
    """The 409 to answer if the upload ended (abort, delete, cleanup) while completing, or None.

    Those commit the row's new state before they touch the store, so whatever the store said
    that looked wrong is explained by the row.
    """
    current = FileRecord.objects.filter(pk=record.pk).first()
    if current is not None and current.is_open:
        return None
    return _ended_while_completing(current, handler, record.storage_key)


def _ended_while_completing(
    current: FileRecord | None, handler: StorageHandler, key: str
) -> InvalidTransition:
    """The 409 for a completion that lost to an abort, a delete or cleanup.

    Whatever the store made of our completion must not outlive the upload: a completed file
    (ours or another request's) keeps its bytes; anything else loses them.
    """
    if current is None or current.upload_status != Status.COMPLETED:
        _delete_object_quietly(handler, key)
    if current is None or current.deleted_at:
        how = "deleted"
    elif current.upload_status == Status.COMPLETED:
        how = "completed by another request"
    else:
        how = str(current.upload_status)
    return InvalidTransition(
        f"This upload was {how} while this request was completing it.",
        {"upload_status": current.upload_status if current else Status.ABORTED},
    )


def _require_open(record: FileRecord, action: str) -> None:
    if record.deleted_at:
        raise InvalidTransition(
            f"This upload was deleted; it can no longer be {action}.",
            {"upload_status": record.upload_status},
        )
    if not record.is_open:
        raise InvalidTransition(
            f"This upload is {record.upload_status}; it can no longer be {action}.",
            {"upload_status": record.upload_status},
        )


def _repeat_completion(record: FileRecord, parts: Sequence[CompletedPart]) -> FileRecord:
    try:
        ordered = sorted(parts, key=lambda p: _strict_int(p.part_number, "part_number"))
    except InvalidInput:
        ordered = []
    if ordered and parts_digest(ordered) == record.etag_digest:
        return record
    raise InvalidTransition(
        "This upload is already completed with other parts.",
        {"upload_status": record.upload_status},
    )


def _finish_from_store(
    user: User, record: FileRecord, handler: StorageHandler, parts: Sequence[CompletedPart]
) -> FileRecord:
    try:
        info = handler.head(record.storage_key)
    except PartNotFound:
        info = None
    except StorageError as exc:
        raise _store_failed(record, handler, exc) from exc
    if info is None or info.size != record.file_size:
        _fail(record, handler, "The upload no longer exists in the store.")
    return _mark_completed(user, record, handler, parts, info)


def _mark_completed(
    user: User,
    record: FileRecord,
    handler: StorageHandler,
    parts: Sequence[CompletedPart],
    info: ObjectInfo,
) -> FileRecord:
    digest = parts_digest(parts)
    problem = _sniffed_type_problem(record, handler)
    if problem:
        _delete_object_quietly(handler, record.storage_key)
        _fail(record, handler, problem)
    with transaction.atomic():
        # By id: the owner was checked at the start, and a delete meanwhile must not hide it.
        current = FileRecord.objects.select_for_update().filter(pk=record.pk).first()
        if current is not None and current.upload_status == Status.COMPLETED:
            if current.deleted_at:
                raise _ended_while_completing(current, handler, record.storage_key)
            if current.etag_digest == digest:
                return current
            raise InvalidTransition("This upload is already completed with other parts.")
        if current is not None and current.is_open:
            current.upload_status = Status.COMPLETED
            current.uploaded_parts = len(parts)
            current.etag = normalize_etag(info.etag)
            current.checksum = info.checksum
            current.etag_digest = digest
            current.completed_at = timezone.now()
            current.failure_reason = ""
            current.save()
            return current
    # Aborted or deleted (cleanup, the owner, staff) while we were completing.
    raise _ended_while_completing(current, handler, record.storage_key)


def _fail(record: FileRecord, handler: StorageHandler, reason: str) -> NoReturn:
    """Abort the stored upload, commit the failed state, and tell the client why.

    Only for an upload that can never complete; anything the client can fix keeps it open.
    """
    aborted = _abort_quietly(handler, _multipart(record))
    with transaction.atomic():
        current = FileRecord.objects.select_for_update().filter(pk=record.pk).first()
        if current is None or not current.is_open:
            raise _ended_while_completing(current, handler, record.storage_key)
        current.upload_status = Status.FAILED
        current.failure_reason = reason
        if aborted:
            current.upload_id = ""
        current.save()
    # Raised after the atomic block: the failed state is committed, not rolled back with us.
    raise VerificationFailed(reason, {"upload_status": Status.FAILED})


def _abort_quietly(handler: StorageHandler, upload: MultipartUpload) -> bool:
    if not upload.upload_id:
        return True
    try:
        handler.abort(upload)
    except StorageError:
        logger.exception("could not abort upload %s; cleanup will retry", upload.upload_id)
        return False
    return True


def _delete_object_quietly(handler: StorageHandler, key: str) -> None:
    try:
        handler.delete(key)
    except StorageError:
        logger.exception("could not delete %s; reconcile will find it", key)


# --- Abort, delete, edit -----------------------------------------------------------------


def upload_abort(*, user: User, file_id: object) -> FileRecord:
    with transaction.atomic():
        record = _locked(user, file_id, deleted_ok=True)
        # Aborted but still holding its upload id: an earlier abort got a 503 from the store.
        # The client's retry finishes that abort instead of meeting a 409.
        retrying = record.upload_status == Status.ABORTED and bool(record.upload_id)
        if not retrying:
            _require_open(record, "aborted")
            record.upload_status = Status.ABORTED
            record.save(update_fields=["upload_status", "modified"])
    if record.upload_id:
        try:
            get_storage_handler().abort(_multipart(record))
        except PartNotFound:
            pass  # nothing of it is left in the store
        except StorageError as exc:
            # The record stays aborted with its upload id, so cleanup retries the store.
            raise storage_failure(exc) from exc
    FileRecord.objects.filter(pk=record.pk, upload_status=Status.ABORTED).update(upload_id="")
    record.upload_id = ""
    logger.info("%s aborted upload %s (%s)", _actor(user), record.pk, record.file_name)
    return record


def file_delete(*, user: User, file_id: object) -> None:
    """Hide the file at once; its bytes stay (and count toward the quota) until purged.

    An upload still in flight is aborted: its parts go now, and a completion under way finds
    the row ended and removes whatever it stored.
    """
    with transaction.atomic():
        record = _locked(user, file_id)
        in_flight = record.is_open
        record.deleted_at = timezone.now()
        if in_flight:
            record.upload_status = Status.ABORTED
            record.failure_reason = "Deleted before it was completed."
        record.save(update_fields=["deleted_at", "upload_status", "failure_reason", "modified"])
    # No lock across the store call. If the abort fails, the row keeps its upload id and
    # cleanup retries it: the delete itself is done.
    if in_flight and _abort_quietly(get_storage_handler(), _multipart(record)):
        FileRecord.objects.filter(pk=record.pk).update(upload_id="")
    logger.info("%s deleted file %s (%s)", _actor(user), record.pk, record.file_name)


def _locked_deleted(user: User, file_id: object, action: str) -> FileRecord:
    """Staff only: the deleted file's row, locked. Call inside a transaction."""
    # Anyone else learns nothing, not even that the id exists.
    if not getattr(user, "is_staff", False):
        raise UploadNotFound()
    record = _locked(user, file_id, deleted_ok=True)
    if not record.deleted_at:
        raise InvalidTransition(f"Only deleted files can be {action}; this one is not deleted.")
    return record


def file_restore(*, user: User, file_id: object) -> FileRecord:
    """Staff: bring a deleted file back before its purge."""
    with transaction.atomic():
        record = _locked_deleted(user, file_id, "restored")
        # A purge under way marks the row aborted first: its bytes may be gone already.
        if record.upload_status != Status.COMPLETED:
            raise InvalidTransition(
                f"Only completed files can be restored; this one is {record.upload_status}.",
                {"upload_status": record.upload_status},
            )
        record.deleted_at = None
        record.save(update_fields=["deleted_at", "modified"])
    logger.info("%s restored file %s (%s)", _actor(user), record.pk, record.file_name)
    return record


def file_purge(*, user: User, file_id: object) -> None:
    """Staff: remove a deleted file's bytes and record now, before its retention ends."""
    with transaction.atomic():
        record = _locked_deleted(user, file_id, "purged")
        claim_for_purge([record.pk], timezone.now())
    try:
        purge_from_store(get_storage_handler(), record.storage_key, record.upload_id)
    except StorageError as exc:
        # The row stays deleted (and can no longer be restored); purging again finishes it.
        raise storage_failure(exc) from exc
    FileRecord.objects.deleted().filter(pk=record.pk).delete()
    logger.info("%s purged file %s (%s)", _actor(user), record.pk, record.file_name)


def file_update(*, user: User, file_id: object, **changes: Any) -> FileRecord:
    unknown = set(changes) - {"name", "description"}
    if unknown:
        raise InvalidInput(f"Only name and description can be changed, not {sorted(unknown)}.")
    with transaction.atomic():
        record = _locked(user, file_id)
        if changes.get("name") is not None:
            name = clean_display_name(changes["name"])
            if not name:
                raise InvalidInput("name cannot be empty.", {"field": "name"})
            record.name = name
        if changes.get("description") is not None:
            record.description = clean_description(changes["description"])
        record.save(update_fields=["name", "description", "modified"])
    return record


def file_set_parent(
    *, user: User, file_id: object, parent_content_type: str | None, parent_object_id: object
) -> FileRecord:
    content_type, object_id = resolve_parent(user, parent_content_type, parent_object_id)
    with transaction.atomic():
        record = _locked(user, file_id)
        record.parent_content_type = content_type
        record.parent_object_id = object_id
        record.save(update_fields=["parent_content_type", "parent_object_id", "modified"])
    return record


def file_download_url(*, user: User, file_id: object) -> str:
    queryset = file_queryset_for_user(user)
    try:
        record = queryset.get(pk=file_id)
    except (FileRecord.DoesNotExist, ValidationError, ValueError) as exc:
        raise UploadNotFound() from exc
    if record.upload_status != Status.COMPLETED:
        raise InvalidTransition(
            f"This file is {record.upload_status}; only completed files can be downloaded.",
            {"upload_status": record.upload_status},
        )
    try:
        return get_storage_handler().download_url(
            record.storage_key,
            file_name=record.file_name,
            expires_in=settings.UPLOADS_DOWNLOAD_URL_EXPIRATION,
        )
    except StorageError as exc:
        raise storage_failure(exc) from exc


def _sniffed_type_problem(record: FileRecord, handler: StorageHandler) -> str | None:
    """Why the stored bytes' real type is not allowed, or None. Only with ALLOWED_FILE_TYPES."""
    if not settings.ALLOWED_FILE_TYPES or record.file_size == 0:
        return None
    try:
        head = handler.read_head(record.storage_key, SNIFF_BYTES)
    except StorageError as exc:
        raise storage_failure(exc) from exc
    kind = filetype.guess(head)
    if kind is None:
        return None
    try:
        check_type_allowed(kind.mime)
    except UnsupportedFileType:
        return f"The file's content is {kind.mime}, which is not accepted."
    return None


# --- Resume: what the store holds, fresh URLs -------------------------------------------


@dataclass(frozen=True, slots=True)
class UploadParts:
    file: FileRecord
    parts: list[StoredPart]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.file, name)

    @property
    def uploaded_bytes(self) -> int:
        return sum(part.size for part in self.parts)


def _open_upload(user: User, file_id: object, action: str) -> FileRecord:
    try:
        record = file_queryset_for_user(user, staff_ok=False).get(pk=file_id)
    except (FileRecord.DoesNotExist, ValidationError, ValueError) as exc:
        raise UploadNotFound() from exc
    _require_open(record, action)
    if not record.upload_id:
        raise InvalidTransition("This upload has not started in the store yet.")
    return record


def upload_parts(*, user: User, file_id: object) -> UploadParts:
    """The parts the store really holds: the source of truth for resuming."""
    record = _open_upload(user, file_id, "resumed")
    try:
        parts = get_storage_handler().list_parts(_multipart(record))
    except PartNotFound as exc:
        raise InvalidTransition("This upload no longer exists in the store.") from exc
    except StorageError as exc:
        raise storage_failure(exc) from exc
    return UploadParts(file=record, parts=sorted(parts, key=lambda p: p.part_number))


@dataclass(frozen=True, slots=True)
class PresignedParts:
    presigned_urls: list[PartTarget]
    expires_in: int


def upload_presign(
    *,
    user: User,
    file_id: object,
    part_numbers: Sequence[object],
    checksums: Mapping[object, object] | None = None,
) -> PresignedParts:
    """Fresh URLs for parts of an unfinished upload (resume, expiry, lazy signing)."""
    record = _open_upload(user, file_id, "signed")
    part_checksums = clean_checksums(record.checksum_algorithm, checksums, record.total_parts)
    numbers = [_strict_int(n, "part_numbers") for n in part_numbers]
    if not numbers:
        raise InvalidInput("part_numbers cannot be empty.", {"field": "part_numbers"})
    if len(numbers) > MAX_PRESIGN_BATCH:
        raise InvalidInput(
            f"At most {MAX_PRESIGN_BATCH} parts can be signed per request.",
            {"field": "part_numbers"},
        )
    outside = [n for n in numbers if not 1 <= n <= record.total_parts]
    if outside:
        raise InvalidInput(
            f"Part numbers must be between 1 and {record.total_parts}.",
            {"field": "part_numbers", "invalid": outside[:20]},
        )
    unique = list(dict.fromkeys(numbers))
    missing = [n for n in unique if record.checksum_algorithm and n not in part_checksums]
    if missing:
        raise InvalidInput(
            f"This upload uses {record.checksum_algorithm} checksums: give one for each part "
            "to sign.",
            {"field": "checksums", "missing": missing[:20]},
        )
    targets = _presign(get_storage_handler(), record, unique, part_checksums)
    return PresignedParts(
        presigned_urls=targets, expires_in=settings.FILE_UPLOAD_PRESIGNED_URL_EXPIRATION
    )
