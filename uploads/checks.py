"""System checks: settings that would make the product fail later are refused at startup."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, register

# SigV4 presigned URLs live at most 7 days; S3 refuses `X-Amz-Expires` outside 1..604,800.
MAX_URL_LIFETIME_SECONDS = 7 * 24 * 3600
URL_LIFETIMES = {
    "FILE_UPLOAD_PRESIGNED_URL_EXPIRATION": ("uploads.E001", "part upload URLs"),
    "UPLOADS_DOWNLOAD_URL_EXPIRATION": ("uploads.E002", "download URLs"),
}


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@register()
def check_url_lifetimes(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    for name, (check_id, what) in URL_LIFETIMES.items():
        value = getattr(settings, name, None)
        if _whole(value) and 1 <= value <= MAX_URL_LIFETIME_SECONDS:  # type: ignore[operator]
            continue
        errors.append(
            Error(
                f"{name} is {value!r}: the lifetime of {what} must be between 1 and "
                f"{MAX_URL_LIFETIME_SECONDS:,} seconds (7 days).",
                hint=f"Set {name} to a number of seconds in that range, e.g. 3600 for an hour. "
                "S3 refuses a presigned URL whose lifetime is under 1 second or over 7 days.",
                id=check_id,
            )
        )
    retention = getattr(settings, "UPLOADS_DELETED_RETENTION_DAYS", None)
    if not _whole(retention) or retention < 0:  # type: ignore[operator]
        errors.append(
            Error(
                f"UPLOADS_DELETED_RETENTION_DAYS is {retention!r}: it must be a whole number of "
                "days, 0 or more.",
                hint="0 purges deleted files at the next cleanup run; the default is 7.",
                id="uploads.E003",
            )
        )
    return errors
