from __future__ import annotations

from django.urls import path

from . import local_views, views

urlpatterns = [
    path("", views.home, name="home"),
    path("local/parts/<str:token>/", local_views.part_upload, name="local-part"),
    path("local/download/<str:token>/", local_views.download, name="local-download"),
]
