from __future__ import annotations

from django.contrib import admin

from .models import FileRecord


@admin.register(FileRecord)
class FileRecordAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
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
    raw_id_fields = ["created_by"]
    readonly_fields = [
        "id",
        "file",
        "upload_id",
        "total_parts",
        "part_size",
        "uploaded_parts",
        "etag",
        "etag_digest",
        "created",
        "modified",
        "completed_at",
        "deleted_at",
    ]
    date_hierarchy = "created"
