"""Where Chromium is and how to start it here: shared by the browser tests and the benches."""

from __future__ import annotations

import os

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def system_chromium() -> str | None:
    """CHROMIUM_PATH (as given, even if unusable), else a distribution Chromium, else None."""
    configured = os.environ.get("CHROMIUM_PATH")
    if configured:
        return configured
    return next((path for path in CHROMIUM_CANDIDATES if os.access(path, os.X_OK)), None)
