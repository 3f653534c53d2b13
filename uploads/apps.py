from __future__ import annotations

from django.apps import AppConfig


class UploadsConfig(AppConfig):
    name = "uploads"
    verbose_name = "Direct Uploads"
    default_auto_field = "django.db.models.BigAutoField"
