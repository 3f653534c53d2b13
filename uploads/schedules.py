"""The django-q2 schedules, created or updated after every migrate: no admin step needed."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

SCHEDULES: list[dict[str, Any]] = [
    {
        "name": "cleanup_expired_uploads",
        "func": "uploads.tasks.cleanup_expired_uploads",
        "schedule_type": "H",  # hourly
    },
    {
        "name": "cleanup_failed_uploads",
        "func": "uploads.tasks.cleanup_failed_uploads",
        "kwargs": "{'days_old': 7}",
        "schedule_type": "D",  # daily
    },
    {
        "name": "purge_deleted_files",
        "func": "uploads.tasks.purge_deleted_files",
        "schedule_type": "H",
    },
    {
        "name": "reconcile_storage",
        "func": "uploads.tasks.reconcile_storage",
        "schedule_type": "D",
    },
]


def ensure_schedules(**kwargs: Any) -> None:
    from django_q.models import Schedule

    for spec in SCHEDULES:
        defaults = {"kwargs": None, "repeats": -1, **spec}
        name = defaults.pop("name")
        # The first run is set once, at creation; later migrates keep the running cadence.
        Schedule.objects.update_or_create(
            name=name, defaults=defaults, create_defaults={**defaults, "next_run": timezone.now()}
        )
