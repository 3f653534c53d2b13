"""API tests run with a JWT and with the portal's session; the session also with every
optional setting on, the combination that once broke (a quota with a session user)."""

from __future__ import annotations

from typing import Any

import pytest

# Values every file these tests upload satisfies, so the same assertions hold in every run
# while the quota lock, the type checks (declared and sniffed) and the parent allowlist run.
ALL_ON = {
    "FILE_UPLOAD_QUOTA_PER_USER": 1024**4,
    "ALLOWED_FILE_TYPES": ["application/*", "text/*", "image/*", "audio/*", "video/*", "font/*"],
    "UPLOADS_PARENT_MODELS": ["testapp.post", "testapp.comment"],
}


@pytest.fixture(params=["jwt", "session", "session+all-on"])
def auth_mode(request: pytest.FixtureRequest, settings: Any) -> str:
    """Overrides the root fixture. A test that sets one of ALL_ON itself keeps its value."""
    mode, _, options = str(request.param).partition("+")
    if options:
        for name, value in ALL_ON.items():
            setattr(settings, name, value)
    return mode
