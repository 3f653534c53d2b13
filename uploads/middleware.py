"""Small middlewares: the bucket's origin in the page's CSP, the portal's error mapping, and
which worker answered."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from urllib.parse import urlsplit

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.core.files.storage import storages
from django.db import DataError
from django.http import HttpRequest, HttpResponse
from storages.backends.s3 import S3Storage

from .errors import InvalidInput, UploadError
from .http import HtmxHttpRequest, render_error

logger = logging.getLogger(__name__)

Handler = Callable[[HttpRequest], HttpResponse]


def storage_origins() -> list[str]:
    """Origins the browser sends part PUTs to: the S3 endpoint of the configured bucket, if any.

    Taken from a URL the storage's own client presigns (no network call), so region, addressing
    style and custom endpoints come out exactly as the part URLs will be.
    """
    storage = storages["default"]
    if not isinstance(storage, S3Storage):
        return []  # local disk: parts go to this app, already 'self'
    cached: list[str] | None = getattr(storage, "_csp_origins", None)
    if cached is None:
        try:
            url = storage.connection.meta.client.generate_presigned_url(
                "upload_part",
                Params={
                    "Bucket": storage.bucket_name,
                    "Key": "csp-probe",
                    "UploadId": "csp-probe",
                    "PartNumber": 1,
                },
                ExpiresIn=60,
                HttpMethod="PUT",
            )
        except (BotoCoreError, ClientError) as exc:
            # No credentials yet: pages still render; part PUTs would fail anyway.
            logger.warning("cannot derive the bucket origin for CSP connect-src: %s", exc)
            return []
        parts = urlsplit(url)
        cached = [f"{parts.scheme}://{parts.netloc}"]
        storage._csp_origins = cached
    return cached


class StorageConnectSrcMiddleware:
    """Extends SECURE_CSP's connect-src on HTML responses with the store's origin (and
    UPLOADS_CSP_CONNECT_SRC, read per request so a test can change it).

    Sits inside django.middleware.csp.ContentSecurityPolicyMiddleware, which then builds the
    header from `response._csp_config` (the hook its `csp_override` decorator uses too).
    """

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        policy = settings.SECURE_CSP
        html = response.get("Content-Type", "").startswith("text/html")
        if not policy or not html or hasattr(response, "_csp_config"):
            return response
        allowed = list(policy.get("connect-src", []))
        wanted = [*settings.UPLOADS_CSP_CONNECT_SRC, *storage_origins()]
        extra = list(dict.fromkeys(origin for origin in wanted if origin not in allowed))
        if extra:
            response._csp_config = {**policy, "connect-src": [*allowed, *extra]}  # type: ignore[attr-defined]
        return response


class PortalErrorMiddleware:
    """The portal's one mapping of errors a client can cause to an answer (the API has its own
    in project/api.py): a domain error a view did not catch, or a value the database refuses
    (PostgreSQL: NUL in text, a number out of range) from a path, query or form, becomes the
    portal's error fragment with a 4xx, never a 500."""

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HtmxHttpRequest, exc: Exception) -> HttpResponse | None:
        if request.path.startswith("/v1/"):
            return None
        if isinstance(exc, DataError):
            logger.warning(
                "database refused a value in %s %s: %s", request.method, request.path, exc
            )
            exc = InvalidInput("The request contains a value that cannot be used.")
        if isinstance(exc, UploadError):
            return render_error(request, exc)
        return None


class ServedByMiddleware:
    """`X-Served-By: <pid>` on every response; enabled by SERVED_BY_HEADER=1 only."""

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        # Asked per request: with `gunicorn --preload` this object is built before the fork.
        response["X-Served-By"] = str(os.getpid())
        return response
