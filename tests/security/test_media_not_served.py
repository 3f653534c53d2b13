"""Stored bytes leave only through the signed download endpoint, never by path under MEDIA_URL,
not even in development (`make run` sets DEBUG, which once added Django's static() serving)."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client
from django.urls import clear_url_caches

from tests.helpers import ApiClient, pin_local_disk

pytestmark = pytest.mark.django_db


@pytest.fixture
def debug_urls(settings: Any) -> Iterator[None]:
    """The URL conf as `make run` builds it: imported with DEBUG on."""
    import project.urls

    settings.DEBUG = True
    importlib.reload(project.urls)
    clear_url_caches()
    yield
    settings.DEBUG = False
    importlib.reload(project.urls)
    clear_url_caches()


def test_media_url_serves_nothing_under_debug(debug_urls: None, user: Any, settings: Any) -> None:
    pin_local_disk(settings)
    content = b"private bytes " * 10
    done = ApiClient(user).upload(content)
    stored = next(
        p for p in settings.MEDIA_ROOT.rglob("*") if p.is_file() and ".parts" not in p.parts
    )
    path = stored.relative_to(settings.MEDIA_ROOT).as_posix()

    for client in (Client(), ApiClient(user).client):
        response = client.get(f"/{settings.MEDIA_URL.strip('/')}/{path}")
        assert response.status_code == 404, path
        assert content not in b"".join(getattr(response, "streaming_content", [response.content]))

    # The signed link is the way out, for its owner.
    owner = ApiClient(user)
    link = owner.get(f"/v1/files/{done['id']}/download")
    assert link.status_code == 302
    fetched = owner.client.get(link["Location"])
    assert b"".join(fetched.streaming_content) == content
