"""The portal's request type and its one rendering of a domain error."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django_htmx.middleware import HtmxDetails

from .errors import UploadError

TITLES = {403: "Not allowed", 404: "Not found"}


class HtmxHttpRequest(HttpRequest):
    """A request that went through django_htmx's HtmxMiddleware (every portal request)."""

    htmx: HtmxDetails


def render_error(request: HtmxHttpRequest, exc: UploadError) -> HttpResponse:
    """A domain error as the portal's styled page (layout and menu) or, for htmx, a fragment;
    called by uploads.middleware.PortalErrorMiddleware for whatever a view raises."""
    if request.htmx:
        # htmx 2 does not swap 4xx answers, so fragments report errors with 200.
        return render(request, "uploads/_error.html", {"error": exc})
    title = TITLES.get(exc.http_status, "Cannot do that")
    context = {"error": exc, "title": title}
    return render(request, "uploads/error_page.html", context, status=exc.http_status)
