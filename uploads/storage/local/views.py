"""The HTTP edge of the local store: the app answers the "presigned" part and download URLs.

The one place where the local store's refusals become the API's errors.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from uploads.errors import (
    AccessDenied,
    ChecksumMismatch,
    InvalidInput,
    LengthRequired,
    UploadError,
    UploadNotFound,
    UploadTooLarge,
    error_body,
    size_text,
)
from uploads.selectors import upload_accepts_part
from uploads.services.shared import storage_failure
from uploads.storage import get_storage_handler
from uploads.storage.base import GoneFromStore, StorageError

from .body import part_body
from .errors import (
    BodyCutShort,
    ChecksumRefused,
    LengthMissing,
    LinkExpired,
    LinkRefused,
    PartRefused,
    WrongLength,
)
from .handler import LocalStorageHandler
from .tokens import read_download_token, read_part_token

GONE = "This upload is no longer accepting parts."


def _error(exc: UploadError) -> JsonResponse:
    response = JsonResponse(error_body(exc.message, exc.code, exc.extra), status=exc.http_status)
    if exc.retry_after is not None:
        response["Retry-After"] = str(exc.retry_after)
    return response


def _link_error(exc: LinkRefused, kind: str) -> UploadError:
    if isinstance(exc, LinkExpired):
        return AccessDenied("This link has expired; ask for a new one.")
    return AccessDenied(f"This {kind} link is invalid.")


def _part_error(exc: PartRefused) -> UploadError:
    number, expected = exc.part_number, exc.expected
    if isinstance(exc, LengthMissing):
        return LengthRequired("Send the part with a Content-Length header.")
    if isinstance(exc, WrongLength):
        refusal = UploadTooLarge if exc.received > expected else InvalidInput
        return refusal(
            f"Part {number} must be exactly {size_text(expected)}; this request sends "
            f"{size_text(exc.received)}. Nothing was stored.",
            {"part_number": number, "expected_size": expected},
        )
    if isinstance(exc, ChecksumRefused):
        return ChecksumMismatch(
            f"Part {number} does not match its checksum; nothing was stored.",
            {"part_number": number},
        )
    if isinstance(exc, BodyCutShort):
        return InvalidInput(
            f"Part {number} ended after {size_text(exc.received)} of {size_text(expected)}.",
            {"field": "body"},
        )
    return InvalidInput(f"Part {number} was refused; nothing was stored.")


def _answers_errors(
    view: Callable[[HttpRequest, str], HttpResponseBase],
) -> Callable[..., HttpResponseBase]:
    @wraps(view)
    def answer(request: HttpRequest, token: str) -> HttpResponseBase:
        try:
            return view(request, token)
        except UploadError as exc:
            return _error(exc)

    return answer


def _local_handler(kind: str) -> LocalStorageHandler:
    handler = get_storage_handler()
    if not isinstance(handler, LocalStorageHandler):
        raise AccessDenied(f"This {kind} link is invalid.")
    return handler


def _content_length(request: HttpRequest) -> int | None:
    try:
        length = int(request.META.get("CONTENT_LENGTH") or "")
    except ValueError:
        return None
    return length if length >= 0 else None


# The signed token in the URL is the credential, as with S3 presigned URLs; there is no session.
@csrf_exempt
@require_http_methods(["PUT"])
@_answers_errors
def part_upload(request: HttpRequest, token: str) -> HttpResponse:
    try:
        grant = read_part_token(token)
    except LinkRefused as exc:
        raise _link_error(exc, "upload") from exc
    handler = _local_handler("upload")
    # A link stays bound to its upload: once completed or aborted it is dead, even unexpired.
    if not upload_accepts_part(
        file_id=grant.file_id, upload_id=grant.upload_id, part_number=grant.part_number
    ):
        raise AccessDenied(GONE)
    try:
        # The body is read in chunks as it arrives: `request.body` would load it whole.
        with part_body(request) as body:
            etag = handler.receive_part(grant, body, length=_content_length(request))
    except PartRefused as exc:
        raise _part_error(exc) from exc
    except GoneFromStore as exc:
        raise AccessDenied(GONE) from exc
    except StorageError as exc:
        raise storage_failure(exc) from exc
    response = HttpResponse(status=200)
    response["ETag"] = f'"{etag}"'
    return response


@require_http_methods(["GET", "HEAD"])
@_answers_errors
def download(request: HttpRequest, token: str) -> HttpResponseBase:
    try:
        grant = read_download_token(token)
    except LinkRefused as exc:
        raise _link_error(exc, "download") from exc
    handler = _local_handler("download")
    try:
        stream = handler.open(grant.key)
    except GoneFromStore as exc:
        raise UploadNotFound() from exc
    except StorageError as exc:
        raise storage_failure(exc) from exc
    return FileResponse(stream, as_attachment=True, filename=grant.file_name)
