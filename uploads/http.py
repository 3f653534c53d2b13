"""The portal's request type and its one rendering of a domain error."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django_htmx.middleware import HtmxDetails

from .errors import UploadError


class HtmxHttpRequest(HttpRequest):
    """A request that went through django_htmx's HtmxMiddleware (every portal request)."""

    htmx: HtmxDetails


def render_error(request: HtmxHttpRequest, exc: UploadError) -> HttpResponse:
    """A domain error as the portal's error page or fragment; called by
    uploads.middleware.PortalErrorMiddleware for whatever a view raises."""
    # htmx 2 does not swap 4xx answers, so fragments report errors with 200.
    status = 200 if request.htmx else exc.http_status
    return render(request, "uploads/_error.html", {"error": exc}, status=status)
