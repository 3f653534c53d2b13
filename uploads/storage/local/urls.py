from __future__ import annotations

from django.urls import path

from . import links, views

urlpatterns = [
    path("local/parts/<str:token>", views.part_upload, name=links.PART_ROUTE),
    path("local/download/<str:token>", views.download, name=links.DOWNLOAD_ROUTE),
]
