"""Template helpers of the portal: sizes in the product's units, the uploader's settings."""

from __future__ import annotations

from typing import Any

from django import template
from django.conf import settings
from django.urls import reverse
from django.utils.html import json_script
from django.utils.safestring import SafeString

from uploads.units import describe_parts, format_bytes

register = template.Library()


@register.filter
def filesize(value: int | float | None) -> str:
    return format_bytes(value)


@register.filter
def parts(file: Any) -> str:
    return describe_parts(file.total_parts, file.part_size, file.file_size)


@register.simple_tag
def uploader_settings() -> SafeString:
    """What static/uploads/uploader.js needs from the server, as a JSON <script> it reads."""
    return json_script(
        {
            "api": reverse("api-1:api-root"),
            # A file page's URL; the uploader puts the new file's id in place of FILE_ID.
            "fileUrl": reverse("file-detail", args=["FILE_ID"]),
            "concurrency": settings.UPLOADS_BROWSER_CONCURRENCY,
            "stallMs": settings.UPLOADS_BROWSER_STALL_SECONDS * 1000,
        },
        "uploader-settings",
    )
