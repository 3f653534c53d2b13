"""The local-disk store: handler, tokens and HTTP endpoints in one package."""

from __future__ import annotations

from .handler import LocalStorageHandler

__all__ = ["LocalStorageHandler"]
