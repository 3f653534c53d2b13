"""The URLs of the local store's endpoints, by route name (the routes are in `urls.py`)."""

from __future__ import annotations

from django.urls import reverse

PART_ROUTE = "local-part"
DOWNLOAD_ROUTE = "local-download"


def part_url(token: str) -> str:
    return reverse(PART_ROUTE, args=[token])


def download_url(token: str) -> str:
    return reverse(DOWNLOAD_ROUTE, args=[token])
