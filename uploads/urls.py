from __future__ import annotations

from django.urls import URLPattern, URLResolver, include, path

from . import staff_views, views
from .storage.local import urls as local_store_urls

urlpatterns: list[URLPattern | URLResolver] = [
    path("", views.home, name="home"),
    path("upload/", views.upload_page, name="upload"),
    path("upload/<str:file_id>/discard/", views.upload_discard, name="upload-discard"),
    path("files/", views.file_list, name="file-list"),
    path("files/<str:file_id>/", views.file_detail, name="file-detail"),
    path("files/<str:file_id>/edit/", views.file_edit, name="file-edit"),
    path("files/<str:file_id>/parent/", views.file_set_parent, name="file-parent"),
    path("files/<str:file_id>/delete/", views.file_delete, name="file-delete"),
    path("", include(local_store_urls)),
]

staff_urlpatterns = [
    path("", staff_views.dashboard, name="staff-dashboard"),
    path("progress/", staff_views.progress, name="staff-progress"),
    path("bulk/", staff_views.bulk_action, name="staff-bulk"),
    path(
        "files/<str:file_id>/<str:action>/",
        staff_views.file_action,
        name="staff-file-action",
    ),
    path("cleanup/", staff_views.cleanup_run, name="staff-cleanup"),
    path("cleanup/<str:task_id>/", staff_views.cleanup_status, name="staff-cleanup-status"),
]
urlpatterns.append(path("staff/", include(staff_urlpatterns)))
