"""Staff dashboard: everyone's files, totals, live progress of uploads in flight, cleanup.

Actions go through the same services as the API (abort, delete), and restore or purge of
deleted files; the services log who did what.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import timedelta
from functools import wraps
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST
from django_q.models import Schedule, Task
from django_q.tasks import async_task

from . import selectors
from .errors import UploadError
from .forms import StaffFilterForm
from .http import HtmxHttpRequest
from .models import FileRecord
from .pagination import number_pager
from .schedules import SCHEDULES
from .services.files import file_delete, file_purge, file_restore
from .services.uploads import upload_abort

logger = logging.getLogger(__name__)

PAGE_SIZE = 50
CHART_WIDTH, CHART_HEIGHT = 600, 120
BULK_LIMIT = 500
CLEANUP_TASK = "uploads.tasks.cleanup_all"
STEP_LABELS = {
    "cleanup_expired_uploads": "Expired uploads",
    "cleanup_failed_uploads": "Failed uploads",
    "purge_deleted_files": "Purge deleted files",
    "reconcile_storage": "Reconcile the store",
}
COUNTS = ("aborted", "deleted", "errors")
# Each row and bulk action, with the service that does it and the word the notice uses.
ACTIONS: dict[str, tuple[Callable[..., Any], str]] = {
    "abort": (upload_abort, "aborted"),
    "delete": (file_delete, "deleted"),
    "restore": (file_restore, "restored"),
    "purge": (file_purge, "purged"),
}

View = Callable[..., HttpResponse]


def staff_required(view: View) -> View:
    """Anonymous → sign-in page; signed-in non-staff → 403."""

    @wraps(view)
    def wrapper(request: HtmxHttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not request.user.is_staff:
            raise PermissionDenied
        return view(request, *args, **kwargs)

    return wrapper


def _filters(request: HtmxHttpRequest) -> tuple[StaffFilterForm, selectors.StaffFilters, str]:
    form = StaffFilterForm(request.GET or None)
    values = form.cleaned_filters()
    failed_24h = values.pop("failed_24h")
    filters = selectors.StaffFilters(
        **values, failed_since=timezone.now() - timedelta(hours=24) if failed_24h else None
    )
    query = request.GET.copy()
    query.pop("page", None)
    return form, filters, query.urlencode()


def _table_context(request: HtmxHttpRequest, **extra: Any) -> dict[str, Any]:
    form, filters, query = _filters(request)
    page = Paginator(selectors.staff_file_list(filters), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    rows = list(page.object_list)
    in_flight = [row for row in rows if row.is_open]
    return {
        "form": form,
        "filters": filters,
        "query": query,
        "page": page,
        "pager": number_pager(page, query),
        "rows": rows,
        "in_flight_ids": ",".join(str(row.pk) for row in in_flight),
        **extra,
    }


def _chart(per_day: list[tuple[Any, int]]) -> dict[str, Any]:
    top = max((count for _, count in per_day), default=0) or 1
    step = CHART_WIDTH / max(len(per_day), 1)
    bars = []
    for index, (day, count) in enumerate(per_day):
        height = round((CHART_HEIGHT - 20) * count / top)
        bars.append(
            {
                "x": round(index * step + 1, 1),
                "y": CHART_HEIGHT - 16 - height,
                "width": round(step - 2, 1),
                "height": height,
                "day": day,
                "count": count,
            }
        )
    return {"bars": bars, "width": CHART_WIDTH, "height": CHART_HEIGHT, "max": top}


def _run_summary(task: Task) -> dict[str, Any]:
    """One cleanup run as the dashboard shows it: what ran, when, how long, and its counts.

    A step returns its counts; "run cleanup now" returns them per step, which are added up.
    """
    step = task.func.rsplit(".", 1)[-1]
    # Scheduled runs get random task names; the step says what ran. A run started from the
    # dashboard is named after who started it.
    label = task.name if task.func == CLEANUP_TASK else STEP_LABELS.get(step, step)
    result = task.result if task.success and isinstance(task.result, dict) else {}
    steps = [counts for counts in result.values() if isinstance(counts, dict)] or [result]
    totals = {key: sum(int(counts.get(key, 0)) for counts in steps) for key in COUNTS}
    return {
        "label": label,
        "started": task.started,
        "took": task.time_taken(),
        "success": task.success,
        **totals,
    }


def _cleanup_context() -> dict[str, Any]:
    names = [spec["name"] for spec in SCHEDULES]
    runs = Task.objects.filter(func__startswith="uploads.tasks.").order_by("-stopped")[:8]
    return {
        "runs": [_run_summary(run) for run in runs],
        "schedules": Schedule.objects.filter(name__in=names).order_by("next_run"),
    }


@staff_required
@require_GET
def dashboard(request: HtmxHttpRequest) -> HttpResponse:
    if request.htmx:
        return render(request, "uploads/staff/dashboard.html#staff-table", _table_context(request))
    stats = selectors.dashboard_stats()
    context = _table_context(
        request,
        stats=stats,
        chart=_chart(stats.per_day),
        notice=request.session.pop("staff_notice", None),
        **_cleanup_context(),
    )
    return render(request, "uploads/staff/dashboard.html", context)


@staff_required
@require_GET
def progress(request: HtmxHttpRequest) -> HttpResponse:
    """Polled while uploads are in flight: parts stored per row, read from the store."""
    ids = _file_ids(request.GET.get("ids", "").split(","))[:PAGE_SIZE]
    records = list(FileRecord.objects.filter(pk__in=ids)) if ids else []
    progress = selectors.upload_progress(records)
    rows = [(record, progress.get(str(record.pk))) for record in records]
    return render(request, "uploads/staff/_progress.html", {"rows": rows})


def _file_ids(values: list[str]) -> list[str]:
    """The values that can be file ids: anything else would fail the query itself (a 500)."""
    ids = []
    for value in values:
        try:
            ids.append(str(uuid.UUID(value)))
        except ValueError:
            continue
    return ids


def _act(request: HtmxHttpRequest, action: str, ids: list[str]) -> tuple[int, list[str]]:
    """Run one action on each id through the services; refusals become per-row messages."""
    service, _ = ACTIONS[action]
    done, refused = 0, []
    for file_id in ids:
        try:
            service(user=request.user, file_id=file_id)
            done += 1
        except UploadError as exc:
            found = FileRecord.objects.filter(pk__in=_file_ids([file_id]))
            name = found.values_list("file_name", flat=True).first()
            refused.append(f"{name or file_id}: {exc.message}")
    return done, refused


@staff_required
@require_POST
def file_action(request: HtmxHttpRequest, file_id: str, action: str) -> HttpResponse:
    if action not in ACTIONS:
        raise Http404
    done, refused = _act(request, action, [file_id])
    return _after_action(request, action, done, refused)


@staff_required
@require_POST
def bulk_action(request: HtmxHttpRequest) -> HttpResponse:
    action = request.POST.get("action", "")
    ids = list(dict.fromkeys(request.POST.getlist("ids")))[:BULK_LIMIT]
    if action not in ACTIONS or not ids:
        # Nothing was tried, so nothing is counted: the notice only says what to do.
        return _after_action(request, action, None, ["Select at least one file and an action."])
    if request.POST.get("confirm") != "yes":
        # Deleted files too: restore and purge act on them.
        records = FileRecord.objects.filter(pk__in=_file_ids(ids)).select_related("created_by")
        return render(
            request,
            "uploads/staff/_bulk_confirm.html",
            {
                "action": action,
                "ids": ids,
                "count": len(ids),
                "files": records.order_by("file_name"),
                "query": request.POST.get("query", ""),
            },
        )
    done, refused = _act(request, action, ids)
    return _after_action(request, action, done, refused)


def _after_action(
    request: HtmxHttpRequest, action: str, done: int | None, refused: list[str]
) -> HttpResponse:
    verb = ACTIONS[action][1] if action in ACTIONS else "changed"
    notice = {"done": done, "verb": verb, "refused": refused}
    # The filters the page was showing travel with the form, so the table comes back the same.
    query = request.POST.get("query", "")
    if request.htmx:
        request.GET = QueryDict(query)
        context = _table_context(request, notice=notice)
        return render(request, "uploads/staff/dashboard.html#staff-table", context)
    request.session["staff_notice"] = notice
    return redirect(f"{reverse('staff-dashboard')}?{query}")


@staff_required
@require_POST
def cleanup_run(request: HtmxHttpRequest) -> HttpResponse:
    task_id = async_task(CLEANUP_TASK, task_name=f"cleanup by {request.user.get_username()}")
    logger.info("%s started a cleanup run (task %s)", request.user.get_username(), task_id)
    return render(request, "uploads/staff/_cleanup_status.html", {"task_id": task_id, "task": None})


@staff_required
@require_GET
def cleanup_status(request: HtmxHttpRequest, task_id: str) -> HttpResponse:
    task = Task.objects.filter(id=task_id).first()
    context = {
        "task_id": task_id,
        "task": task,
        "run": _run_summary(task) if task else None,
        **(_cleanup_context() if task else {}),
    }
    return render(request, "uploads/staff/_cleanup_status.html", context)
