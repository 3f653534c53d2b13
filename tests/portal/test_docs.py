"""/v1/docs: "Try it out" works for a user signed in to the portal (the session, with CSRF)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from tests.factories import FileRecordFactory


@pytest.mark.django_db
def test_the_docs_page_sends_the_csrf_token_with_the_session(user: Any) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    page = client.get("/v1/docs").content.decode()
    assert 'data-api-csrf="true"' in page
    token = re.search(r'data-csrf-token="([^"]+)"', page)
    assert token, page
    record = FileRecordFactory(created_by=user)

    # What Swagger UI sends on "Try it out" for PATCH /v1/files/{id}: the header from the page.
    changed = client.patch(
        f"/v1/files/{record.pk}",
        {"name": "Tried"},
        content_type="application/json",
        headers={"X-CSRFToken": token.group(1)},
    )
    assert changed.status_code == 200, changed.content
    assert changed.json()["name"] == "Tried"
