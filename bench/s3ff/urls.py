from __future__ import annotations

from django.urls import include, path

urlpatterns = [path("api/s3-upload/", include("s3_file_field.urls"))]
