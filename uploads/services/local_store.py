"""The local-disk store's own endpoints: a part PUT to a local "presigned" URL, a download."""

from __future__ import annotations

from typing import IO

from uploads.errors import (
    AccessDenied,
    InvalidInput,
    LengthRequired,
    UploadNotFound,
    UploadTooLarge,
    size_text,
)
from uploads.models import FileRecord
from uploads.services.shared import multipart, storage_failure
from uploads.storage import StorageError, get_storage_handler
from uploads.storage.base import (
    GoneFromStore,
)
from uploads.storage.local import (
    LocalStorageHandler,
    Readable,
    verify_download_token,
    verify_part_token,
)

# --- Local-disk part endpoint --------------------------------------------------------------


def local_part_receive(*, token: str, body: Readable, length: int | None) -> str:
    """Store one part PUT to a local "presigned" URL; return its ETag."""
    grant = verify_part_token(token)
    handler = get_storage_handler()
    if not isinstance(handler, LocalStorageHandler):
        raise AccessDenied("This upload link is invalid.")
    record = FileRecord.objects.filter(pk=grant.file_id).first()
    # A link stays bound to its upload: once completed or aborted it is dead, even unexpired.
    if record is None or not record.is_open or record.upload_id != grant.upload_id:
        raise AccessDenied("This upload is no longer accepting parts.")
    if not 1 <= grant.part_number <= record.total_parts:
        raise AccessDenied("This upload link is invalid.")
    expected = record.expected_part_size(grant.part_number)
    if length is None:
        # A request with neither Content-Length nor a chunked body has an empty body (RFC 9112
        # 6.3), and some clients send an empty part that way: only the empty part may do it.
        if expected != 0:
            raise LengthRequired("Send the part with a Content-Length header.")
        length = 0
    if length != expected:
        # Refused before a byte is read, as S3 refuses a length other than the signed one.
        refusal = UploadTooLarge if length > expected else InvalidInput
        raise refusal(
            f"Part {grant.part_number} must be exactly {size_text(expected)}; this request "
            f"sends {size_text(length)}. Nothing was stored.",
            {"part_number": grant.part_number, "expected_size": expected},
        )
    try:
        return handler.receive_part(
            multipart(record), grant.part_number, body, length=length, checksum=grant.checksum
        )
    except GoneFromStore as exc:
        raise AccessDenied("This upload is no longer accepting parts.") from exc
    except StorageError as exc:
        raise storage_failure(exc) from exc


def local_download_open(*, token: str) -> tuple[IO[bytes], str]:
    key, file_name = verify_download_token(token)
    handler = get_storage_handler()
    if not isinstance(handler, LocalStorageHandler):
        raise AccessDenied("This download link is invalid.")
    try:
        return handler.open(key), file_name
    except OSError as exc:
        raise UploadNotFound() from exc
