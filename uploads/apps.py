from __future__ import annotations

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class UploadsConfig(AppConfig):
    name = "uploads"
    verbose_name = "Direct Uploads"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
        from .schedules import ensure_schedules

        # After django_q's tables exist: its post_migrate runs for its own app label too.
        post_migrate.connect(ensure_schedules, sender=self, dispatch_uid="uploads-schedules")
