"""Reads. Every query of files goes through `file_queryset_for_user`, which holds the access rule."""

from __future__ import annotations

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet

from .errors import InvalidInput, UploadNotFound
from .models import FileRecord

STATUS_ALL = "all"
# Sort keys the portal offers, each with a unique tie-breaker so pages never overlap.
ORDERINGS = {
    "-created": ("-created", "-pk"),
    "created": ("created", "pk"),
    "name": ("name", "pk"),
    "-name": ("-name", "-pk"),
    "-file_size": ("-file_size", "-pk"),
    "file_size": ("file_size", "pk"),
    "upload_status": ("upload_status", "-created", "-pk"),
}


def file_queryset_for_user(
    user: AbstractBaseUser | AnonymousUser, *, staff_ok: bool = True
) -> QuerySet[FileRecord]:
    """Owners see their own files; staff see everyone's unless the action is owner-only."""
    queryset = FileRecord.objects.select_related("created_by", "parent_content_type")
    if not user.is_authenticated:
        return queryset.none()
    if staff_ok and getattr(user, "is_staff", False):
        return queryset
    return queryset.filter(created_by=user)


def file_get_for_user(
    *, user: AbstractBaseUser | AnonymousUser, file_id: object
) -> FileRecord:
    try:
        return file_queryset_for_user(user).get(pk=file_id)
    except (FileRecord.DoesNotExist, ValidationError, ValueError) as exc:
        raise UploadNotFound() from exc


def file_list_for_user(
    *,
    user: AbstractBaseUser | AnonymousUser,
    status: str | None = FileRecord.Status.COMPLETED,
    parent_content_type: str | None = None,
    parent_object_id: str | None = None,
    search: str = "",
    ordering: str = "-created",
    owner_only: bool = False,
) -> QuerySet[FileRecord]:
    queryset = file_queryset_for_user(user, staff_ok=not owner_only)
    # An empty `?status=` must not silently turn the filter off.
    if status is None:
        status = FileRecord.Status.COMPLETED
    if status != STATUS_ALL:
        if status not in FileRecord.Status.values:
            choices = ", ".join([*FileRecord.Status.values, STATUS_ALL])
            raise InvalidInput(f"status must be one of: {choices}.", {"field": "status"})
        queryset = queryset.filter(upload_status=status)
    if parent_content_type is not None:
        app_label, _, model = parent_content_type.strip().lower().partition(".")
        # NUL never names a model, and PostgreSQL would fail the query on it (a 500).
        if not app_label or not model or "\x00" in parent_content_type:
            raise InvalidInput(
                "parent_content_type must look like 'app_label.model'.",
                {"field": "parent_content_type"},
            )
        queryset = queryset.filter(
            parent_content_type__app_label=app_label, parent_content_type__model=model
        )
    if parent_object_id is not None:
        if "\x00" in parent_object_id:
            raise InvalidInput("parent_object_id is not a valid id.", {"field": "parent_object_id"})
        queryset = queryset.filter(parent_object_id=parent_object_id.strip())
    if search.strip():
        term = search.strip()
        queryset = queryset.filter(Q(name__icontains=term) | Q(file_name__icontains=term))
    if ordering not in ORDERINGS:
        raise InvalidInput(f"ordering must be one of: {', '.join(ORDERINGS)}.", {"field": "ordering"})
    return queryset.order_by(*ORDERINGS[ordering])
