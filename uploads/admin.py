from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from .errors import UploadError
from .models import FileRecord
from .services.files import file_delete
from .services.uploads import upload_abort


@admin.register(FileRecord)
class FileRecordAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """File records to look at. Status, sizes, keys, checksums and owner move only through the
    services (the API, the portal, cleanup): here no field is editable, nothing is added, and
    delete and abort are the services' own, with their checks and their effect on the store."""

    list_display = [
        "file_name",
        "created_by",
        "upload_status",
        "file_size",
        "created",
        "deleted_at",
    ]
    list_filter = ["upload_status", "created", "deleted_at"]
    search_fields = ["file_name", "name", "created_by__username"]
    date_hierarchy = "created"
    actions = ["abort_uploads"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [field.name for field in self.model._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def delete_model(self, request: HttpRequest, obj: FileRecord) -> None:
        self._each(request, [obj], file_delete, "deleted")

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[FileRecord]) -> None:
        self._each(request, list(queryset), file_delete, "deleted")

    @admin.action(description="Abort the selected uploads")
    def abort_uploads(self, request: HttpRequest, queryset: QuerySet[FileRecord]) -> None:
        self._each(request, list(queryset), upload_abort, "aborted")

    def _each(
        self, request: HttpRequest, records: list[FileRecord], action: Any, verb: str
    ) -> None:
        done = 0
        for record in records:
            try:
                action(user=request.user, file_id=record.pk)
                done += 1
            except UploadError as exc:
                self.message_user(request, f"{record.file_name}: {exc.message}", messages.ERROR)
        if done:
            self.message_user(request, f"{done} file(s) {verb}.", messages.SUCCESS)
