"""Portal pages: server-rendered, HTMX-enhanced, and every link still works without JavaScript.

Views parse the request, call a selector or a service, and render. Uploads themselves go through
the JSON API from static/uploads/uploader.js, the same endpoints every client uses.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from . import selectors
from .errors import UploadError
from .forms import FileEditForm, FileFilterForm, ParentForm
from .models import FileRecord
from .services import files
from .services.uploads import upload_abort

PAGE_SIZE = 25


def render_error(request: HttpRequest, exc: UploadError) -> HttpResponse:
    """The portal's one place that turns a domain error into a page or fragment (views call it,
    and uploads.middleware.PortalErrorMiddleware for what no view caught)."""
    # htmx 2 does not swap 4xx answers, so fragments report errors with 200.
    status = 200 if request.htmx else exc.http_status  # type: ignore[attr-defined]
    return render(request, "uploads/_error.html", {"error": exc}, status=status)


def _template(request: HttpRequest, name: str, fragment: str) -> str:
    return f"{name}#{fragment}" if request.htmx else name  # type: ignore[attr-defined]


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("file-list")
    return redirect("login")


@login_required
@require_GET
def file_list(request: HttpRequest) -> HttpResponse:
    form = FileFilterForm(request.GET or None)
    filters = form.cleaned_filters()
    try:
        queryset = selectors.file_list_for_user(user=request.user, **filters)
    except UploadError as exc:
        return render_error(request, exc)
    page = Paginator(queryset, PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context = {"form": form, "page": page, "query": query.urlencode(), **filters}
    return render(request, _template(request, "uploads/files.html", "file-table"), context)


@login_required
@require_GET
def upload_page(request: HttpRequest) -> HttpResponse:
    unfinished = selectors.file_list_for_user(
        user=request.user, status=FileRecord.Status.UPLOADING, owner_only=True
    )[:50]
    return render(
        request,
        "uploads/upload.html",
        {"unfinished": unfinished, "checksums": settings.UPLOADS_BROWSER_CHECKSUMS},
    )


@login_required
@require_POST
def upload_discard(request: HttpRequest, file_id: str) -> HttpResponse:
    try:
        upload_abort(user=request.user, file_id=file_id)
    except UploadError as exc:
        return render_error(request, exc)
    if request.htmx:  # type: ignore[attr-defined]
        return HttpResponse("")
    return redirect("upload")


def _detail_context(request: HttpRequest, record: FileRecord, **extra: Any) -> dict[str, Any]:
    return {
        "file": record,
        "edit_form": extra.pop("edit_form", None) or FileEditForm(record=record),
        "parent_form": extra.pop("parent_form", None) or ParentForm(record=record),
        **extra,
    }


@login_required
@require_GET
def file_detail(request: HttpRequest, file_id: str) -> HttpResponse:
    try:
        record = selectors.file_get_for_user(user=request.user, file_id=file_id)
    except UploadError as exc:
        return render_error(request, exc)
    return render(request, "uploads/file_detail.html", _detail_context(request, record))


@login_required
@require_http_methods(["GET", "POST"])
def file_edit(request: HttpRequest, file_id: str) -> HttpResponse:
    """Inline edit of name and description: GET shows the form, POST saves through the service."""
    try:
        record = selectors.file_get_for_user(user=request.user, file_id=file_id)
    except UploadError as exc:
        return render_error(request, exc)
    if request.method == "GET":
        context = _detail_context(request, record, editing=True)
        return render(request, _template(request, "uploads/file_detail.html", "meta"), context)
    form = FileEditForm(request.POST, record=record)
    if form.is_valid():
        try:
            record = files.file_update(user=request.user, file_id=file_id, **form.cleaned_data)
        except UploadError as exc:
            form.add_error(None, exc.message)
    if form.errors:
        context = _detail_context(request, record, edit_form=form, editing=True)
        return render(request, _template(request, "uploads/file_detail.html", "meta"), context)
    if not request.htmx:  # type: ignore[attr-defined]
        return redirect("file-detail", file_id=record.pk)
    context = _detail_context(request, record, refreshed=True)
    return render(request, "uploads/file_detail.html#meta", context)


@login_required
@require_POST
def file_set_parent(request: HttpRequest, file_id: str) -> HttpResponse:
    try:
        record = selectors.file_get_for_user(user=request.user, file_id=file_id)
    except UploadError as exc:
        return render_error(request, exc)
    form = ParentForm(request.POST, record=record)
    if form.is_valid():
        try:
            record = files.file_set_parent(user=request.user, file_id=file_id, **form.cleaned_data)
            form = ParentForm(record=record)
        except UploadError as exc:
            form.add_error(None, exc.message)
    if not request.htmx and not form.errors:  # type: ignore[attr-defined]
        return redirect("file-detail", file_id=record.pk)
    context = _detail_context(request, record, parent_form=form, parent_saved=not form.errors)
    return render(request, _template(request, "uploads/file_detail.html", "parent"), context)


@login_required
@require_http_methods(["GET", "POST"])
def file_delete(request: HttpRequest, file_id: str) -> HttpResponse:
    """GET asks for confirmation (the no-JS path); POST deletes through the service."""
    try:
        record = selectors.file_get_for_user(user=request.user, file_id=file_id)
    except UploadError as exc:
        return render_error(request, exc)
    if request.method == "GET":
        return render(request, "uploads/file_confirm_delete.html", {"file": record})
    try:
        files.file_delete(user=request.user, file_id=file_id)
    except UploadError as exc:
        return render_error(request, exc)
    if request.htmx:  # type: ignore[attr-defined]
        return HttpResponseClientRedirect(reverse("file-list"))
    return redirect("file-list")
