"""Completing an upload: check the parts against the store, have it assemble the file, record it.

Where a store call and a state change race (two completes, complete vs cleanup), the loser
inspects the store, so a file ends completed with its bytes or not completed with nothing
stored, never a mix.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta
from operator import attrgetter
from typing import Any, NoReturn
from uuid import UUID

import filetype
from django.conf import settings
from django.utils import timezone

from uploads.errors import (
    InvalidInput,
    InvalidTransition,
    PartsMismatch,
    UnsupportedFileType,
    UploadError,
    VerificationFailed,
    size_text,
)
from uploads.models import FileRecord
from uploads.services.rules import check_type_allowed, parts_digest, strict_int
from uploads.services.shared import (
    User,
    abort_quietly,
    delete_object_quietly,
    find,
    move,
    multipart,
    require_open,
    storage_failure,
)
from uploads.storage import StorageError, get_storage_handler
from uploads.storage.base import (
    CompletedPart,
    GoneFromStore,
    ObjectInfo,
    PartsRejected,
    StorageHandler,
    StoredPart,
    UploadRejected,
    normalize_etag,
)

logger = logging.getLogger(__name__)

Status = FileRecord.Status


# Bytes read from a completed file to find its real type.
SNIFF_BYTES = 8192
# Reads of the row before a completion gives up on claiming it (each lost to another change).
CLAIM_ATTEMPTS = 3


# --- Complete ------------------------------------------------------------------------------


def _check_part_list(
    record: FileRecord, parts: Sequence[CompletedPart]
) -> tuple[list[CompletedPart], list[str]]:
    """The parts in number order, and beside them their ETags as compared (normalize_etag).

    Each ETag is normalized here once: at 10,000 parts, every pass over them counts.
    """
    numbers = list(map(_PART_NUMBER, parts))
    # One look at the types for all 10,000; strict_int says what is wrong with any other value.
    if set(map(type, numbers)) != {int}:
        numbers = [strict_int(n, "part_number") for n in numbers]
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
    ordered = sorted(parts, key=_PART_NUMBER)
    etags = [normalize_etag(p.etag) if isinstance(p.etag, str) else "" for p in ordered]
    if not all(etags):
        part = next(p for p in parts if not isinstance(p.etag, str) or not normalize_etag(p.etag))
        raise InvalidInput(f"Part {part.part_number} has no etag.", {"field": "etag"})
    return ordered, etags


_PART_NUMBER = attrgetter("part_number")


def mismatched_parts(
    record: FileRecord,
    parts: Sequence[CompletedPart],
    stored: Sequence[StoredPart],
    etags: Sequence[str] | None = None,
) -> list[int]:
    """The listed parts the store does not hold as listed: the ones to send again.

    A part is wrong when the store lacks it, or holds it with another size than the plan's or
    another ETag than the client's. With every part right, the sizes add up to the file's.
    Parts the store holds beyond the plan are left out of the object and need nothing.
    `etags`: the parts' ETags already normalized, in the same order, if the caller has them.
    """
    if etags is None:
        etags = [normalize_etag(part.etag) for part in parts]
    by_number = {p.part_number: p for p in stored}
    wrong = []
    for part, etag in zip(parts, etags, strict=True):
        number = part.part_number
        held = by_number.get(number)
        if (
            held is None
            or held.size != record.expected_part_size(number)
            # As listed first, or quoted as S3 lists it: only another form needs normalizing.
            or (
                held.etag != etag and held.etag != f'"{etag}"' and normalize_etag(held.etag) != etag
            )
        ):
            wrong.append(number)
    return wrong


def upload_complete(
    *, user: User, file_id: UUID | str, parts: Sequence[CompletedPart]
) -> FileRecord:
    handler = get_storage_handler()
    # Read, check, claim: the claim is one conditional write of the row as it was read, so
    # a row that another request changed meanwhile is read and checked again, never
    # overwritten. No transaction: it would cost two more round trips to the database.
    for _ in range(CLAIM_ATTEMPTS):
        # The owner's deleted uploads too: completing one says why it cannot (409), not 404.
        record = find(user, file_id, staff_ok=False, deleted_ok=True)
        if record.upload_status == Status.COMPLETED and not record.deleted_at:
            return _repeat_completion(record, parts)
        require_open(record, "completed")
        ordered, etags = _check_part_list(record, parts)
        claim = _claim_completion(record, handler.completion_timeout)
        if claim is not None:
            break
    else:
        raise _being_completed(record)
    # Whatever happens, the claim ends with this request. Marking the upload completed clears
    # it in the same write; any other outcome clears it here.
    try:
        completed = _complete_claimed(user, record, handler, ordered, etags)
    except BaseException:
        _release_claim(record, claim)
        raise
    if completed.completing_since is not None:
        _release_claim(record, claim)
    return completed


def _release_claim(record: FileRecord, claim: Any) -> None:
    FileRecord.objects.filter(pk=record.pk, completing_since=claim).update(completing_since=None)


def _claim_completion(record: FileRecord, timeout: timedelta) -> Any | None:
    """Mark the row as being completed, so a second complete answers 409 instead of racing.

    The claim is a timestamp, not a held lock: no lock spans the store's calls, and a claim
    left by a crashed process lapses after the store's completion timeout. None: the row is
    no longer as `record` read it (claimed, ended or deleted since); read it again.
    """
    now = timezone.now()
    if record.completing_since and now - record.completing_since < timeout:
        raise _being_completed(record)
    as_read = FileRecord.objects.open().filter(
        pk=record.pk, deleted_at__isnull=True, completing_since=record.completing_since
    )
    if not as_read.update(completing_since=now):
        return None
    record.completing_since = now
    return now


def _being_completed(record: FileRecord) -> InvalidTransition:
    return InvalidTransition(
        "This upload is being completed by another request; try again shortly.",
        {"upload_status": record.upload_status},
    )


def _complete_claimed(
    user: User,
    record: FileRecord,
    handler: StorageHandler,
    ordered: list[CompletedPart],
    etags: list[str],
) -> FileRecord:
    digest = parts_digest(ordered, etags)
    upload = multipart(record)
    try:
        stored = handler.list_parts(upload)
    except GoneFromStore:
        # The upload is gone from the store: a completion that crashed after the store
        # finished, or cleanup. The store says which.
        return _finish_from_store(user, record, handler, ordered, digest)
    except StorageError as exc:
        raise _store_failed(record, handler, exc) from exc
    wrong = mismatched_parts(record, ordered, stored, etags)
    if wrong:
        # Parts vanish from a listing while an abort removes them: then that is the answer.
        # Otherwise nothing is lost: the client sends the wrong parts again.
        raise _ended_meanwhile(record, handler) or PartsMismatch(wrong, record.upload_status)
    if any(part.checksum for part in stored):
        checksums = {part.part_number: part.checksum for part in stored}
        ordered = [
            CompletedPart(part.part_number, part.etag, checksums.get(part.part_number, ""))
            for part in ordered
        ]
    try:
        info = handler.complete(upload, ordered, content_type=record.file_content_type)
    except GoneFromStore:
        return _finish_from_store(user, record, handler, ordered, digest)
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
    return _mark_completed(user, record, handler, ordered, info, digest)


def _parts_rejected(
    record: FileRecord, handler: StorageHandler, parts: Sequence[CompletedPart]
) -> UploadError:
    """The parts to send again after the store refused the list it had just agreed with."""
    try:
        stored = handler.list_parts(multipart(record))
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
        delete_object_quietly(handler, key)
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


def _repeat_completion(record: FileRecord, parts: Sequence[CompletedPart]) -> FileRecord:
    try:
        ordered = sorted(parts, key=lambda p: strict_int(p.part_number, "part_number"))
    except InvalidInput:
        ordered = []
    if ordered and parts_digest(ordered) == record.etag_digest:
        return record
    raise InvalidTransition(
        "This upload is already completed with other parts.",
        {"upload_status": record.upload_status},
    )


def _finish_from_store(
    user: User,
    record: FileRecord,
    handler: StorageHandler,
    parts: Sequence[CompletedPart],
    digest: str,
) -> FileRecord:
    try:
        info = handler.head(record.storage_key)
    except GoneFromStore:
        info = None
    except StorageError as exc:
        raise _store_failed(record, handler, exc) from exc
    if info is None or info.size != record.file_size:
        _fail(record, handler, "The upload no longer exists in the store.")
    return _mark_completed(user, record, handler, parts, info, digest)


def _mark_completed(
    user: User,
    record: FileRecord,
    handler: StorageHandler,
    parts: Sequence[CompletedPart],
    info: ObjectInfo,
    digest: str,
) -> FileRecord:
    problem = _sniffed_type_problem(record, handler)
    if problem:
        delete_object_quietly(handler, record.storage_key)
        _fail(record, handler, problem)
    # One conditional write, which moves the row only while it is still open (see `move`);
    # `record` then answers as it was read at the start, with this completion's changes.
    if move(
        record,
        Status.COMPLETED,
        uploaded_parts=len(parts),
        etag=normalize_etag(info.etag),
        checksum=info.checksum,
        etag_digest=digest,
        completed_at=timezone.now(),
        failure_reason="",
        completing_since=None,
    ):
        return record
    # By id: the owner was checked at the start, and a delete meanwhile must not hide it.
    current = (
        FileRecord.objects.select_related("created_by", "parent_content_type")
        .filter(pk=record.pk)
        .first()
    )
    if current is not None and current.upload_status == Status.COMPLETED and not current.deleted_at:
        if current.etag_digest == digest:
            return current
        raise InvalidTransition("This upload is already completed with other parts.")
    # Aborted or deleted (cleanup, the owner, staff) while we were completing.
    raise _ended_while_completing(current, handler, record.storage_key)


def _fail(record: FileRecord, handler: StorageHandler, reason: str) -> NoReturn:
    """Abort the stored upload, commit the failed state, and tell the client why.

    Only for an upload that can never complete; anything the client can fix keeps it open.
    """
    aborted = abort_quietly(handler, multipart(record))
    store_ended = {"upload_id": ""} if aborted else {}
    if not move(record, Status.FAILED, failure_reason=reason, **store_ended):
        raise _ended_while_completing(
            FileRecord.objects.filter(pk=record.pk).first(), handler, record.storage_key
        )
    raise VerificationFailed(reason, {"upload_status": Status.FAILED})


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
