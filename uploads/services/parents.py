"""Which objects a file may be attached to: the one parent rule, shared by API and portal.

A parent must be a model of the project's own apps (or one listed in UPLOADS_PARENT_MODELS),
must exist, and must pass UPLOADS_PARENT_POLICY for the user. A missing object and one the
policy refuses get the same answer, so attaching never tells whether a row exists.
"""

from __future__ import annotations

import re
import sysconfig
from functools import cache
from pathlib import Path
from typing import Any

from django.apps import AppConfig, apps
from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db import models
from django.utils.module_loading import import_string

from uploads.errors import InvalidInput

# "app_label.model" as ContentType stores it; anything else (NUL included) never reaches a query.
_PARENT_LABEL = re.compile(r"\w+\.\w+", re.ASCII)
# Longest parent id the record stores (FileRecord.parent_object_id).
MAX_OBJECT_ID_LENGTH = 64


def allow_all(user: Any, obj: models.Model) -> bool:
    """The default UPLOADS_PARENT_POLICY: any existing object of an allowed model."""
    return True


@cache
def _policy(path: str) -> Any:
    try:
        return import_string(path)
    except ImportError as exc:
        raise ImproperlyConfigured(f"UPLOADS_PARENT_POLICY: cannot import {path!r}") from exc


@cache
def _library_dirs() -> tuple[Path, ...]:
    paths = sysconfig.get_paths()
    return tuple({Path(paths[name]).resolve() for name in ("purelib", "platlib")})


def _is_library_app(app: AppConfig) -> bool:
    """Django's own apps, apps installed as libraries (token tables, task queues, lockouts),
    and this app: their rows are never parents unless UPLOADS_PARENT_MODELS names them."""
    if app.name == "uploads" or app.name.startswith("django."):
        return True
    path = Path(app.path).resolve()
    return any(path.is_relative_to(directory) for directory in _library_dirs())


def _model_allowed(content_type: ContentType) -> bool:
    allowed = {item.lower() for item in settings.UPLOADS_PARENT_MODELS}
    if allowed:
        return f"{content_type.app_label}.{content_type.model}" in allowed
    return not _is_library_app(apps.get_app_config(content_type.app_label))


def _parent_type(label: str) -> ContentType:
    content_type = None
    if _PARENT_LABEL.fullmatch(label):
        app_label, _, model = label.partition(".")
        try:
            content_type = ContentType.objects.get_by_natural_key(app_label, model)
        except ContentType.DoesNotExist:
            content_type = None
    if content_type is None or content_type.model_class() is None:
        raise InvalidInput(
            f"Unknown parent type {label!r}; use 'app_label.model'.",
            {"field": "parent_content_type"},
        )
    if not _model_allowed(content_type):
        raise InvalidInput(
            f"Files cannot be attached to {label!r}.", {"field": "parent_content_type"}
        )
    return content_type


def _find(model_class: type[models.Model], object_id: str) -> models.Model | None:
    # PostgreSQL refuses NUL in text outright (a 500); no pk contains one anyway.
    if "\x00" in object_id:
        return None
    try:
        return model_class._default_manager.filter(pk=object_id).first()
    except (ValueError, TypeError, ValidationError):
        return None


def resolve_parent(
    user: Any, parent_content_type: str | None, parent_object_id: object
) -> tuple[ContentType | None, str]:
    """Check a parent reference for `user`; return what the record stores (None, "" = none)."""
    if parent_content_type in (None, "") and parent_object_id in (None, ""):
        return None, ""
    if parent_content_type in (None, "") or parent_object_id in (None, ""):
        raise InvalidInput(
            "parent_content_type and parent_object_id go together.",
            {"field": "parent_content_type"},
        )
    label = str(parent_content_type).strip().lower()
    content_type = _parent_type(label)
    model_class = content_type.model_class()
    assert model_class is not None
    object_id = str(parent_object_id).strip()
    parent = _find(model_class, object_id)
    # Store the parent's own pk as text: "01" and "1" name one post and must filter alike.
    canonical = str(parent.pk) if parent is not None else ""
    allowed = (
        parent is not None
        and len(canonical) <= MAX_OBJECT_ID_LENGTH
        and bool(_policy(settings.UPLOADS_PARENT_POLICY)(user, parent))
    )
    if not allowed:
        # One answer for "no such object" and "not yours to attach to".
        raise InvalidInput(
            f"No {label} with id {object_id!r} is available as a parent.",
            {"field": "parent_object_id"},
        )
    return content_type, canonical
