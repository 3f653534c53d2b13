"""Domain errors. project/api.py maps them to HTTP in one place; services never build responses."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from uploads.units import format_bytes


def size_text(size: int) -> str:
    """A byte count in the units every surface shows, with the exact figure:
    "8.0 MiB (8,388,608 bytes)"."""
    if size < 1024:
        return f"{size:,} byte{'' if size == 1 else 's'}"
    return f"{format_bytes(size)} ({size:,} bytes)"


def error_body(detail: str, code: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The one error shape of every JSON response: `{"detail", "code"}` (+ `extra` if any)."""
    body: dict[str, Any] = {"detail": detail, "code": code}
    if extra:
        body["extra"] = extra
    return body


class UploadError(Exception):
    """Base of every error a client may see; `message` is safe to show."""

    code = "error"
    http_status = 400
    # Seconds after which the same request may work (a `Retry-After` header), if known.
    retry_after: int | None = None

    def __init__(self, message: str, extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra or {}


class InvalidInput(UploadError):
    """The request is well formed but its values are not acceptable."""

    code = "invalid"
    http_status = 400


class InvalidCursor(InvalidInput):
    """A `cursor` that this server did not hand out, or not for this listing."""

    code = "invalid_cursor"

    def __init__(self) -> None:
        super().__init__(
            "The cursor is not valid: use the next or previous link of a listing.",
            {"field": "cursor"},
        )


class ChecksumMismatch(UploadError):
    """A part's bytes do not match the checksum given for it."""

    code = "checksum_mismatch"
    http_status = 400


class UploadTooLarge(UploadError):
    """The file or a part exceeds a size limit."""

    code = "too_large"
    http_status = 413


class QuotaExceeded(UploadError):
    """The user's storage quota would be exceeded."""

    code = "quota_exceeded"
    http_status = 413


class UnsupportedFileType(UploadError):
    """The file's type is not in ALLOWED_FILE_TYPES."""

    code = "unsupported_type"
    http_status = 415


class UploadNotFound(UploadError):
    """No such file, or not one the caller may see."""

    code = "not_found"
    http_status = 404

    def __init__(self, message: str = "File not found.", extra: dict[str, Any] | None = None):
        super().__init__(message, extra)


class InvalidTransition(UploadError):
    """The file is not in a state that allows this action."""

    code = "invalid_state"
    http_status = 409


class VerificationFailed(UploadError):
    """The stored parts do not match what was declared; the upload is now failed."""

    code = "verification_failed"
    http_status = 400


def _numbers_text(numbers: Sequence[int], shown: int = 10) -> str:
    words = [str(n) for n in numbers[:shown]]
    if len(numbers) > shown:
        return f"{', '.join(words)} and {len(numbers) - shown} more"
    return f"{', '.join(words[:-1])} and {words[-1]}" if len(words) > 1 else words[0]


class PartsMismatch(UploadError):
    """The client's part list disagrees with the store; the upload stays open for a re-send."""

    code = "parts_mismatch"
    http_status = 400

    def __init__(self, parts: Sequence[int], upload_status: str) -> None:
        if not parts:
            message = "The store refused the part list, but its parts match it now; complete again."
        elif len(parts) == 1:
            message = (
                f"Part {parts[0]} does not match what the store holds; send it again, "
                "then complete."
            )
        else:
            message = (
                f"Parts {_numbers_text(parts)} do not match what the store holds; "
                "send them again, then complete."
            )
        super().__init__(message, {"parts": list(parts), "upload_status": upload_status})


class AccessDenied(UploadError):
    """A signed link is invalid, expired or no longer usable."""

    code = "forbidden"
    http_status = 403


class LengthRequired(UploadError):
    """A part body arrived without a Content-Length."""

    code = "length_required"
    http_status = 411


class StorageUnavailable(UploadError):
    """The storage backend failed; details are only in the server log."""

    code = "storage_unavailable"
    http_status = 503

    def __init__(
        self,
        message: str = "The storage service is unavailable. Please try again shortly.",
        extra: dict[str, Any] | None = None,
        *,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message, extra)
        self.retry_after = retry_after


class InsufficientStorage(UploadError):
    """The store has no room for what was sent; nothing partial was kept."""

    code = "insufficient_storage"
    http_status = 507

    def __init__(
        self,
        message: str = (
            "The server has no room to store this right now; nothing was stored and the upload "
            "is still open. Try again later."
        ),
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message, extra)
