"""The model field django-s3-file-field's views upload for: its uploads name this field."""

from __future__ import annotations

from django.db import models
from s3_file_field import S3FileField  # type: ignore[import-not-found]


class Blob(models.Model):
    # The table is never created: initialize and finalize only look the field up by its id.
    blob = S3FileField()
