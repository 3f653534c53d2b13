"""A parent policy as a project would write one: private posts are for staff only."""

from __future__ import annotations

from typing import Any


def can_attach(user: Any, obj: Any) -> bool:
    return user.is_staff or not str(getattr(obj, "title", "")).startswith("private")
