"""Choose the storage handler from the real class behind the default storage."""

from __future__ import annotations

from django.core.files.storage import storages
from storages.backends.s3 import S3Storage

from .base import StorageError, StorageHandler
from .local import LocalStorageHandler
from .s3 import S3StorageHandler

__all__ = ["StorageError", "StorageHandler", "get_storage_handler"]


def get_storage_handler() -> StorageHandler:
    # `default_storage` is a lazy wrapper whose class is never S3Storage; ask the registry for
    # the configured instance instead.
    storage = storages["default"]
    if isinstance(storage, S3Storage):
        return S3StorageHandler(storage)
    return LocalStorageHandler(storage)
