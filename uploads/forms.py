"""Portal-only forms for inputs that are not uploads. They check shape; services check values."""

from __future__ import annotations

from typing import Any

from django import forms

from .models import FileRecord
from .selectors import ORDERINGS, STATUS_ALL

STATUS_CHOICES = [*FileRecord.Status.choices, (STATUS_ALL, "All")]
SORT_CHOICES = [
    ("-created", "Newest first"),
    ("created", "Oldest first"),
    ("name", "Name A–Z"),
    ("-name", "Name Z–A"),
    ("-file_size", "Largest first"),
    ("file_size", "Smallest first"),
    ("upload_status", "Status"),
]
assert {value for value, _ in SORT_CHOICES} <= set(ORDERINGS)


class FileFilterForm(forms.Form):
    q = forms.CharField(label="Search names", required=False, max_length=255)
    status = forms.ChoiceField(
        label="Status", choices=STATUS_CHOICES, required=False, initial="completed"
    )
    sort = forms.ChoiceField(label="Sort", choices=SORT_CHOICES, required=False, initial="-created")

    def cleaned_filters(self) -> dict[str, Any]:
        """Valid filters, falling back to the defaults for anything missing or invalid."""
        data: dict[str, Any] = {}
        if self.is_bound:
            self.is_valid()
            # Field by field: a stale sort in a bookmark must not drop the search with it.
            data = {k: v for k, v in self.cleaned_data.items() if k not in self.errors}
        return {
            "status": data.get("status") or "completed",
            "search": data.get("q") or "",
            "ordering": data.get("sort") or "-created",
        }


class FileEditForm(forms.Form):
    name = forms.CharField(label="Name", max_length=255)
    description = forms.CharField(
        label="Description", required=False, widget=forms.Textarea(attrs={"rows": 3})
    )

    def __init__(self, *args: Any, record: FileRecord, **kwargs: Any) -> None:
        kwargs.setdefault("initial", {"name": record.name, "description": record.description})
        super().__init__(*args, **kwargs)


class ParentForm(forms.Form):
    parent_content_type = forms.CharField(
        label="Parent type (app_label.model)", required=False, max_length=100
    )
    parent_object_id = forms.CharField(label="Parent id", required=False, max_length=64)

    def __init__(self, *args: Any, record: FileRecord, **kwargs: Any) -> None:
        content_type = record.parent_content_type
        kwargs.setdefault(
            "initial",
            {
                "parent_content_type": (
                    f"{content_type.app_label}.{content_type.model}" if content_type else ""
                ),
                "parent_object_id": record.parent_object_id,
            },
        )
        super().__init__(*args, **kwargs)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        # Empty fields mean "detach"; the service takes None for that.
        return {
            "parent_content_type": data.get("parent_content_type") or None,
            "parent_object_id": data.get("parent_object_id") or None,
        }


class StaffFilterForm(forms.Form):
    """Filters of the staff table; every field optional, invalid values fall back to defaults."""

    user = forms.CharField(label="User", required=False, max_length=150)
    status = forms.ChoiceField(label="Status", choices=STATUS_CHOICES, required=False)
    content_type = forms.CharField(label="Content type", required=False, max_length=255)
    parent_type = forms.CharField(label="Parent type", required=False, max_length=100)
    created_from = forms.DateField(
        label="From", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    created_to = forms.DateField(
        label="To", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    q = forms.CharField(label="Name", required=False, max_length=255)
    sort = forms.ChoiceField(label="Sort", choices=SORT_CHOICES, required=False)
    stale = forms.BooleanField(label="Stale only", required=False)
    failed_24h = forms.BooleanField(label="Failed in the last 24 h", required=False)
    deleted = forms.BooleanField(label="Deleted (awaiting purge)", required=False)

    def cleaned_filters(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if self.is_bound:
            self.is_valid()
            # Keep every field that validated; drop only the invalid ones.
            data = {k: v for k, v in self.cleaned_data.items() if k not in self.errors}
        return {
            "user": data.get("user") or "",
            "status": data.get("status") or STATUS_ALL,
            "content_type": data.get("content_type") or "",
            "parent_type": data.get("parent_type") or "",
            "created_from": data.get("created_from"),
            "created_to": data.get("created_to"),
            "search": data.get("q") or "",
            "ordering": data.get("sort") or "-created",
            "stale": bool(data.get("stale")),
            "failed_24h": bool(data.get("failed_24h")),
            "deleted": bool(data.get("deleted")),
        }
