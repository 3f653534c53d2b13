"""HTTP side of the local-disk handler: the app answers the "presigned" part and download URLs."""

from __future__ import annotations

from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from .errors import UploadError, error_body
from .services.local_store import local_download_open, local_part_receive


def _error(exc: UploadError) -> JsonResponse:
    response = JsonResponse(error_body(exc.message, exc.code, exc.extra), status=exc.http_status)
    if exc.retry_after is not None:
        response["Retry-After"] = str(exc.retry_after)
    return response


def _content_length(request: HttpRequest) -> int | None:
    try:
        length = int(request.META.get("CONTENT_LENGTH") or "")
    except ValueError:
        return None
    return length if length >= 0 else None


# The signed token in the URL is the credential, as with S3 presigned URLs; there is no session.
@csrf_exempt
@require_http_methods(["PUT"])
def part_upload(request: HttpRequest, token: str) -> HttpResponse:
    try:
        # The body is read from the request stream in chunks: `request.body` would load it whole.
        etag = local_part_receive(token=token, body=request, length=_content_length(request))
    except UploadError as exc:
        return _error(exc)
    response = HttpResponse(status=200)
    response["ETag"] = f'"{etag}"'
    return response


@require_http_methods(["GET", "HEAD"])
def download(request: HttpRequest, token: str) -> HttpResponse:
    try:
        stream, file_name = local_download_open(token=token)
    except UploadError as exc:
        return _error(exc)
    return FileResponse(stream, as_attachment=True, filename=file_name)
