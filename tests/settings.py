"""Test settings: the project's settings with small parts and a throwaway media root."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production")
# moto must not add permissive CORS: the browser tests need S3's real behaviour.
os.environ.setdefault("MOTO_DISABLE_GLOBAL_CORS", "1")

from project.settings import *  # noqa: E402,F403
from project.settings import INSTALLED_APPS, Q_CLUSTER  # noqa: E402

DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = [*INSTALLED_APPS, "tests.testapp"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False

MEDIA_ROOT = Path(tempfile.mkdtemp(prefix="direct-uploads-test-media-"))
UPLOADS_LOCAL_PARTS_DIR = MEDIA_ROOT / ".parts"
# Small parts keep tests fast; S3-mode tests raise this back to S3's 5 MiB.
UPLOADS_MIN_PART_SIZE = 1024
UPLOADS_DEFAULT_PART_SIZE = 5 * 1024 * 1024
UPLOADS_PARENT_MODELS = []

Q_CLUSTER = {**Q_CLUSTER, "sync": True}

# Tests switch the default storage to a moto bucket at run time, sometimes after a browser page
# was loaded (its Content-Security-Policy then named no bucket): let pages reach any loopback
# endpoint. tests/security checks the real policy with this emptied.
UPLOADS_CSP_CONNECT_SRC = ["http://127.0.0.1:*", "http://localhost:*"]

# The SQLite test database is a file, not memory: live-server tests send parallel requests
# (parallel part PUTs), and Django shares a single in-memory connection across server threads,
# which SQLite refuses under concurrency. A file gives each thread its own connection.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    DATABASES["default"]["TEST"] = {  # noqa: F405
        "NAME": str(Path(tempfile.mkdtemp(prefix="direct-uploads-test-db-")) / "test.sqlite3")
    }

# django-axes logs every sign-in at INFO (force_login included): keep its warnings only.
LOGGING = {**LOGGING, "loggers": {**LOGGING["loggers"], "axes": {"level": "WARNING"}}}  # noqa: F405
