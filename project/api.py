"""The NinjaAPI instance and the one place where errors become HTTP responses."""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.db import DataError
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.http import require_safe
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, Throttled, ValidationError
from ninja.openapi.docs import Swagger, render_template
from ninja_extra.exceptions import Throttled as ExtraThrottled

from uploads.api import router as uploads_router
from uploads.auth import token_router
from uploads.errors import UploadError, error_body

from .jsonio import ORJSONParser, ORJSONRenderer

logger = logging.getLogger(__name__)


class SessionSwagger(Swagger):
    """The docs page, whose "Try it out" works for a signed-in portal user: the routers take
    the session with its CSRF token, but ninja sends the token only when the API itself
    declares an auth that wants it (ours is declared per router)."""

    def render_page(self, request: HttpRequest, api: NinjaAPI, **kwargs: Any) -> HttpResponse:
        self.settings["url"] = self.get_openapi_url(api, kwargs)
        context = {
            "swagger_settings": json.dumps(self.settings, indent=1),
            "api": api,
            "add_csrf": True,
        }
        return render_template(request, self.template, self.template_cdn, context)


api = NinjaAPI(
    title="Direct Uploads API",
    version="1",
    description="Multipart uploads straight to S3 (or local disk) through presigned URLs.",
    urls_namespace="api-1",
    # The schema and the docs page are read-only: GET/HEAD, anything else is 405.
    docs=SessionSwagger(),
    docs_decorator=require_safe,
    renderer=ORJSONRenderer(),
    parser=ORJSONParser(),
)
# ninja_jwt's token pair/refresh, throttled against password guessing (uploads/auth.py).
api.add_router("/auth/token", token_router, tags=["auth"])
api.add_router("/", uploads_router)


@api.exception_handler(UploadError)
def upload_error(request: HttpRequest, exc: UploadError) -> HttpResponse:
    response = api.create_response(
        request, error_body(exc.message, exc.code, exc.extra), status=exc.http_status
    )
    if exc.retry_after is not None:
        response["Retry-After"] = str(exc.retry_after)
    return response


@api.exception_handler(ValidationError)
def validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    errors: list[dict[str, Any]] = [
        {
            "loc": list(error.get("loc", [])),
            "msg": str(error.get("msg", "")),
            "type": error.get("type"),
        }
        for error in exc.errors
    ]
    first = errors[0] if errors else {"loc": [], "msg": "Invalid input."}
    where = ".".join(str(part) for part in first["loc"] if part not in ("body", "payload", "query"))
    detail = f"{where}: {first['msg']}" if where else str(first["msg"])
    return api.create_response(
        request, error_body(detail, "invalid", {"errors": errors}), status=422
    )


@api.exception_handler(AuthenticationError)
def authentication_error(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return api.create_response(
        request,
        error_body(
            "Authentication credentials were not provided or are not valid.", "not_authenticated"
        ),
        status=401,
    )


@api.exception_handler(Throttled)
def throttled(request: HttpRequest, exc: Throttled | ExtraThrottled) -> HttpResponse:
    response = api.create_response(
        request, error_body("Too many requests; try again later.", "throttled"), status=429
    )
    if exc.wait:
        # Whole seconds, rounded up (RFC 9110): never tell a client to retry too early.
        response["Retry-After"] = str(math.ceil(exc.wait))
    return response


# The token endpoints run on ninja_extra's router, which raises its own Throttled.
api.add_exception_handler(ExtraThrottled, throttled)  # type: ignore[arg-type]


@api.exception_handler(HttpError)
def http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    # ninja_jwt's errors are HttpErrors whose detail is already {"detail", "code"}.
    detail: Any = getattr(exc, "detail", None)
    if isinstance(detail, dict) and "detail" in detail:
        body = error_body(str(detail["detail"]), str(detail.get("code", "error")))
    else:
        code = {400: "invalid", 401: "not_authenticated", 403: "forbidden"}.get(
            exc.status_code, "error"
        )
        body = error_body(str(detail or exc.message), code)
    return api.create_response(request, body, status=exc.status_code)


@api.exception_handler(Http404)
def not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return api.create_response(request, error_body("Not found.", "not_found"), status=404)


@api.exception_handler(DataError)
def data_error(request: HttpRequest, exc: DataError) -> HttpResponse:
    # A value the database refuses (PostgreSQL: NUL in text), e.g. in a library's query such as
    # ninja_jwt's user lookup: the client sent it, so it is a 400, not a 500.
    logger.warning("database refused a value in %s %s: %s", request.method, request.path, exc)
    return api.create_response(
        request,
        error_body("The request contains a value that cannot be stored.", "invalid"),
        status=400,
    )


@api.exception_handler(RequestDataTooBig)
def request_too_big(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
    # A JSON body over DATA_UPLOAD_MAX_MEMORY_SIZE: the client's doing, so 413, not a 500.
    return api.create_response(
        request, error_body("The request body is too large.", "too_large"), status=413
    )


@api.exception_handler(Exception)
def unexpected_error(request: HttpRequest, exc: Exception) -> HttpResponse:
    # Details go to the log only; a client never sees a stack trace or a backend message.
    logger.exception("unhandled error in %s %s", request.method, request.path, exc_info=exc)
    return api.create_response(
        request, error_body("Internal server error.", "server_error"), status=500
    )
