"""Portal pages: server-rendered, HTMX-enhanced, and every link still works without JavaScript.

Views parse the request, call a selector or a service, and render. Uploads themselves go through
the JSON API from static/uploads/uploader.js, the same endpoints every client uses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.forms import Form
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from . import selectors
from .errors import UploadError
from .forms import FileEditForm, FileFilterForm, ParentForm
from .http import HtmxHttpRequest
from .models import FileRecord
from .pagination import START, cursor_pager, keyset_page
from .services import files
from .services.uploads import upload_abort

PAGE_SIZE = 25


def _template(request: HtmxHttpRequest, name: str, fragment: str) -> str:
    return f"{name}#{fragment}" if request.htmx else name


@require_GET
def home(request: HtmxHttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("file-list")
    return redirect("login")


@login_required
@require_GET
def file_list(request: HtmxHttpRequest) -> HttpResponse:
    form = FileFilterForm(request.GET or None)
    filters = form.cleaned_filters()
    queryset = selectors.file_list_for_user(user=request.user, **filters)
    # By cursor: as fast on the last page as on the first, and stable while files arrive.
    page = keyset_page(queryset, cursor=request.GET.get("cursor", START), size=PAGE_SIZE)
    query = request.GET.copy()
    query.pop("cursor", None)
    # Links of the page-number pager this one replaced still open the first page.
    query.pop("page", None)
    pager = cursor_pager(page, query.urlencode())
    context = {"form": form, "files": page.items, "pager": pager, **filters}
    return render(request, _template(request, "uploads/files.html", "file-table"), context)


@login_required
@require_GET
def upload_page(request: HtmxHttpRequest) -> HttpResponse:
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
def upload_discard(request: HtmxHttpRequest, file_id: str) -> HttpResponse:
    upload_abort(user=request.user, file_id=file_id)
    if request.htmx:
        return HttpResponse("")
    return redirect("upload")


def _detail_context(request: HtmxHttpRequest, record: FileRecord, **extra: Any) -> dict[str, Any]:
    return {
        "file": record,
        "edit_form": extra.pop("edit_form", None) or FileEditForm(record=record),
        "parent_form": extra.pop("parent_form", None) or ParentForm(record=record),
        **extra,
    }


def _submit(form: Form, service: Callable[..., FileRecord], **kwargs: Any) -> FileRecord | None:
    """Save a valid form through its service. A refusal is shown on the form, which the view
    renders again (with 200, so htmx swaps it); every other error goes to the portal's mapping."""
    if not form.is_valid():
        return None
    try:
        return service(**kwargs, **form.cleaned_data)
    except UploadError as exc:
        form.add_error(None, exc.message)
        return None


@login_required
@require_GET
@never_cache  # Back after a delete asks again, and hears the file is gone
def file_detail(request: HtmxHttpRequest, file_id: str) -> HttpResponse:
    record = selectors.file_get_for_user(user=request.user, file_id=file_id)
    return render(request, "uploads/file_detail.html", _detail_context(request, record))


@login_required
@require_http_methods(["GET", "POST"])
def file_edit(request: HtmxHttpRequest, file_id: str) -> HttpResponse:
    """Inline edit of name and description: GET shows the form, POST saves through the service."""
    record = selectors.file_get_for_user(user=request.user, file_id=file_id)
    if request.method == "GET":
        context = _detail_context(request, record, editing=True)
        return render(request, _template(request, "uploads/file_detail.html", "meta"), context)
    form = FileEditForm(request.POST, record=record)
    record = _submit(form, files.file_update, user=request.user, file_id=file_id) or record
    if form.errors:
        context = _detail_context(request, record, edit_form=form, editing=True)
        return render(request, _template(request, "uploads/file_detail.html", "meta"), context)
    if not request.htmx:
        return redirect("file-detail", file_id=record.pk)
    context = _detail_context(request, record, refreshed=True)
    return render(request, "uploads/file_detail.html#meta", context)


@login_required
@require_POST
def file_set_parent(request: HtmxHttpRequest, file_id: str) -> HttpResponse:
    record = selectors.file_get_for_user(user=request.user, file_id=file_id)
    form = ParentForm(request.POST, record=record)
    saved = _submit(form, files.file_set_parent, user=request.user, file_id=file_id)
    if saved is not None:
        record = saved
        form = ParentForm(record=record)
    if not request.htmx and not form.errors:
        return redirect("file-detail", file_id=record.pk)
    context = _detail_context(request, record, parent_form=form, parent_saved=not form.errors)
    return render(request, _template(request, "uploads/file_detail.html", "parent"), context)


@login_required
@require_http_methods(["GET", "POST"])
def file_delete(request: HtmxHttpRequest, file_id: str) -> HttpResponse:
    """GET asks for confirmation (the no-JS path); POST deletes through the service."""
    record = selectors.file_get_for_user(user=request.user, file_id=file_id)
    if request.method == "GET":
        return render(request, "uploads/file_confirm_delete.html", {"file": record})
    files.file_delete(user=request.user, file_id=file_id)
    messages.success(request, f"“{record.name or record.file_name}” deleted.")
    if request.htmx:
        return HttpResponseClientRedirect(reverse("file-list"))
    return redirect("file-list")
