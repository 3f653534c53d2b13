"""Upload lifecycle: initiate → (parts go straight to the store) → complete, or abort.

Completion is in completion.py. Every state change re-checks the state where it writes (a locked
row, or one conditional UPDATE); no lock is held across a call to the store.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q, Sum
from django.utils import timezone

from uploads.errors import (
    InvalidInput,
    InvalidTransition,
    QuotaExceeded,
    UploadNotFound,
)
from uploads.models import FileRecord
from uploads.services.parents import resolve_parent
from uploads.services.rules import (
    PRESIGN_ALL,
    check_type_allowed,
    clean_checksum_algorithm,
    clean_checksums,
    clean_content_type,
    clean_description,
    clean_display_name,
    clean_file_name,
    plan_parts,
    presign_count,
    storage_key,
    strict_int,
)
from uploads.services.shared import (
    User,
    actor,
    locked,
    move,
    multipart,
    require_open,
    storage_failure,
)
from uploads.storage import StorageError, get_storage_handler
from uploads.storage.base import (
    GoneFromStore,
    PartTarget,
    PartToSign,
    StorageHandler,
    StoredPart,
)

logger = logging.getLogger(__name__)

Status = FileRecord.Status


# Most URLs one presign call signs: bounds the request's time and response size.
MAX_PRESIGN_BATCH = 1000


@dataclass(frozen=True, slots=True)
class InitiatedUpload:
    file: FileRecord
    presigned_urls: list[PartTarget]
    expires_in: int


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
    checksums: Mapping[str, str] | None = None,
) -> InitiatedUpload:
    # The API and the portal authenticate first: an upload always has an owner.
    assert user.is_authenticated
    plan = plan_parts(file_size=file_size, part_size=part_size, num_parts=num_parts)
    size = int(file_size)  # type: ignore[call-overload]  # plan_parts checked it is a whole number
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
    # A quota is checked and reserved in one transaction with the insert; without a quota the
    # insert needs none (a transaction costs two more round trips to the database).
    quota = settings.FILE_UPLOAD_QUOTA_PER_USER is not None
    with transaction.atomic() if quota else nullcontext():
        _reserve_quota(user, plan_size=size)
        record = FileRecord.objects.create(
            id=file_id,
            name=clean_display_name(name) or clean_name,
            description=clean_description(description),
            file_name=clean_name,
            file_size=size,
            file_content_type=declared_type,
            file=storage_key(file_id),
            upload_status=Status.PENDING,
            total_parts=plan.num_parts,
            part_size=plan.part_size,
            upload_expires_at=_new_expiry(),
            created_by_id=user.pk,
            parent_content_type=content_type,
            parent_object_id=object_id,
            checksum_algorithm=algorithm,
        )
    # The answer names its owner: the user at hand, rather than a query for it.
    record.created_by = user  # type: ignore[assignment]
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
    # Sign first, so that one write records the store's upload and keeps it open past its URLs.
    record.upload_id = upload.upload_id
    signed: list[PartTarget] | StorageError
    try:
        signed = _sign(handler, record, first_batch, part_checksums)
    except StorageError as exc:
        signed = exc  # the upload is recorded all the same, so cleanup aborts it in the store
    expiry = (
        {"upload_expires_at": _expiry_past_urls()} if isinstance(signed, list) and signed else {}
    )
    if not move(
        record, Status.UPLOADING, allowed=[Status.PENDING], upload_id=upload.upload_id, **expiry
    ):
        # Aborted or deleted before the store answered: keep the store's upload id on the row,
        # so cleanup aborts it there, and tell the client the upload ended.
        FileRecord.objects.filter(pk=file_id).update(upload_id=upload.upload_id)
        record.refresh_from_db()
        require_open(record, "started")
    if isinstance(signed, StorageError):
        raise storage_failure(signed) from signed
    return InitiatedUpload(
        file=record,
        presigned_urls=signed,
        expires_in=settings.FILE_UPLOAD_PRESIGNED_URL_EXPIRATION,
    )


def _new_expiry() -> Any:
    return timezone.now() + timedelta(seconds=settings.UPLOADS_EXPIRATION_SECONDS)


def _expiry_past_urls() -> Any:
    """The upload's expiry after signing URLs: past them, and a full expiry window on.

    Taken after signing, so no URL signed for the upload outlives it: cleanup never aborts an
    upload a client can still send parts to. Signing means the client is at work, too.
    """
    seconds = max(
        settings.UPLOADS_EXPIRATION_SECONDS, settings.FILE_UPLOAD_PRESIGNED_URL_EXPIRATION
    )
    return timezone.now() + timedelta(seconds=seconds)


def _keep_open_while_urls_live(record: FileRecord) -> None:
    """Push the upload's expiry past the URLs just signed (never earlier than it was)."""
    expires = _expiry_past_urls()
    later = Q(upload_expires_at__lt=expires) | Q(upload_expires_at__isnull=True)
    open_rows = FileRecord.objects.open().filter(pk=record.pk)
    if open_rows.filter(later).update(upload_expires_at=expires):
        record.upload_expires_at = expires


def _reserve_quota(user: AbstractBaseUser, *, plan_size: int) -> None:
    """Refuse an upload that would take the user over quota. Call inside a transaction."""
    quota = settings.FILE_UPLOAD_QUOTA_PER_USER
    if quota is None:
        return
    # Lock the user's row: two initiates for one user queue here, so both cannot slip under.
    # The user model, not type(user): a session's request.user is a lazy proxy (a 500 here).
    get_user_model()._default_manager.select_for_update().filter(pk=user.pk).first()
    used = (
        FileRecord.objects.holding_quota()
        .filter(created_by_id=user.pk)
        .aggregate(total=Sum("file_size"))["total"]
        or 0
    )
    if used + plan_size > quota:
        raise QuotaExceeded(
            f"This upload needs {plan_size} bytes but only {max(0, quota - used)} of your "
            f"{quota}-byte quota are left.",
            {"quota": quota, "used": used},
        )


def _sign(
    handler: StorageHandler,
    record: FileRecord,
    numbers: Sequence[int],
    checksums: Mapping[int, str],
) -> list[PartTarget]:
    """Sign URLs that take exactly each part's planned bytes (and checksum, if any)."""
    if not numbers:
        return []
    parts = [
        PartToSign(
            n, record.expected_part_size(n), checksums.get(n, ""), (n - 1) * record.part_size
        )
        for n in numbers
    ]
    return handler.presign_parts(
        multipart(record), parts, expires_in=settings.FILE_UPLOAD_PRESIGNED_URL_EXPIRATION
    )


def upload_abort(*, user: User, file_id: UUID | str) -> FileRecord:
    with transaction.atomic():
        record = locked(user, file_id, deleted_ok=True)
        # Aborted but still holding its upload id: an earlier abort got a 503 from the store.
        # The client's retry finishes that abort instead of meeting a 409.
        retrying = record.upload_status == Status.ABORTED and bool(record.upload_id)
        if not retrying:
            require_open(record, "aborted")
            move(record, Status.ABORTED)
    if record.upload_id:
        try:
            get_storage_handler().abort(multipart(record))
        except GoneFromStore:
            pass  # nothing of it is left in the store
        except StorageError as exc:
            # The record stays aborted with its upload id, so cleanup retries the store.
            raise storage_failure(exc) from exc
    FileRecord.objects.filter(pk=record.pk, upload_status=Status.ABORTED).update(upload_id="")
    record.upload_id = ""
    logger.info("%s aborted upload %s (%s)", actor(user), record.pk, record.file_name)
    return record


# --- Resume: what the store holds, fresh URLs -------------------------------------------


@dataclass(frozen=True, slots=True)
class UploadParts:
    """What the store holds of an unfinished upload, beside the plan it must match."""

    id: uuid.UUID
    upload_status: str
    file_size: int
    part_size: int
    total_parts: int
    checksum_algorithm: str
    parts: list[StoredPart]

    @classmethod
    def of(cls, record: FileRecord, parts: list[StoredPart]) -> UploadParts:
        return cls(
            id=record.pk,
            upload_status=record.upload_status,
            file_size=record.file_size,
            part_size=record.part_size,
            total_parts=record.total_parts,
            checksum_algorithm=record.checksum_algorithm,
            parts=sorted(parts, key=lambda p: p.part_number),
        )

    @property
    def uploaded_bytes(self) -> int:
        return sum(part.size for part in self.parts)


def _open_upload(user: User, file_id: UUID | str, action: str) -> FileRecord:
    try:
        record = FileRecord.objects.visible_to(user, staff_ok=False).get(pk=file_id)
    except (FileRecord.DoesNotExist, ValidationError, ValueError) as exc:
        raise UploadNotFound() from exc
    require_open(record, action)
    if not record.upload_id:
        raise InvalidTransition("This upload has not started in the store yet.")
    return record


def upload_parts(*, user: User, file_id: UUID | str) -> UploadParts:
    """The parts the store really holds: the source of truth for resuming."""
    record = _open_upload(user, file_id, "resumed")
    try:
        parts = get_storage_handler().list_parts(multipart(record))
    except GoneFromStore as exc:
        raise InvalidTransition("This upload no longer exists in the store.") from exc
    except StorageError as exc:
        raise storage_failure(exc) from exc
    return UploadParts.of(record, parts)


@dataclass(frozen=True, slots=True)
class PresignedParts:
    presigned_urls: list[PartTarget]
    expires_in: int


def upload_presign(
    *,
    user: User,
    file_id: UUID | str,
    part_numbers: Sequence[object],
    checksums: Mapping[str, str] | None = None,
) -> PresignedParts:
    """Fresh URLs for parts of an unfinished upload (resume, expiry, lazy signing)."""
    record = _open_upload(user, file_id, "signed")
    part_checksums = clean_checksums(record.checksum_algorithm, checksums, record.total_parts)
    numbers = [strict_int(n, "part_numbers") for n in part_numbers]
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
    try:
        targets = _sign(get_storage_handler(), record, unique, part_checksums)
    except StorageError as exc:
        raise storage_failure(exc) from exc
    _keep_open_while_urls_live(record)
    return PresignedParts(
        presigned_urls=targets, expires_in=settings.FILE_UPLOAD_PRESIGNED_URL_EXPIRATION
    )
