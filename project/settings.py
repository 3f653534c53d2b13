"""Settings, read from environment variables (12-factor) with safe defaults for a laptop.

Every variable is listed in README.md's configuration table.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any, overload

import dj_database_url
from botocore.config import Config
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def env_bool(name: str, default: bool = False) -> bool:
    value = env_str(name)
    if not value:
        return default
    return value.lower() in {"1", "true", "yes", "on"}


@overload
def env_int(name: str, default: int) -> int: ...
@overload
def env_int(name: str, default: None) -> int | None: ...
def env_int(name: str, default: int | None) -> int | None:
    value = env_str(name)
    if not value:
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be a whole number, got {value!r}") from exc


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


DEBUG = env_bool("DEBUG")

SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("Set SECRET_KEY (or DEBUG=1 for local development).")
    SECRET_KEY = "dev-only-insecure-key-do-not-use-in-production"  # noqa: S105

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "django_q",
    # Serves Swagger UI for /v1/docs from our static files instead of a CDN, so the docs page
    # keeps working under the Content-Security-Policy below.
    "ninja",
    "ninja_extra",
    "ninja_jwt",
    "storages",
    "axes",
    "uploads",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # SECURE_CSP below; the next one adds the bucket's origin to connect-src for S3 mode.
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "uploads.middleware.StorageConnectSrcMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "uploads.middleware.PortalErrorMiddleware",
    # Last, as django-axes requires: turns a locked-out sign-in into its 429 answer.
    "axes.middleware.AxesMiddleware",
]

# django-axes first: it refuses a locked-out sign-in before any password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "project.urls"
WSGI_APPLICATION = "project.wsgi.application"
ASGI_APPLICATION = "project.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                # {{ csp_nonce }} for the page's scripts ({% htmx_script %} reads it too).
                "django.template.context_processors.csp",
            ],
        },
    },
]

# Persistent connections: opening one costs a request several milliseconds (PostgreSQL forks a
# backend for it). Each web worker thread keeps its own open, checked at the start of the
# request that reuses it, so a connection the database dropped is replaced, not an error.
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 600),
        conn_health_checks=env_bool("DATABASE_CONN_HEALTH_CHECKS", True),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Portal, API and the django-q2 worker write to one file: wait for the lock instead of
    # failing, and take it when a transaction starts, so a read-then-write (the quota check)
    # cannot interleave with another one.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "transaction_mode": "IMMEDIATE"}
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(BASE_DIR / "media")))

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# --- Storage -------------------------------------------------------------------------------
# Setting AWS_STORAGE_BUCKET_NAME switches the default storage to S3; otherwise files stay on
# local disk under MEDIA_ROOT and the app itself plays the part of the presigned-URL endpoint.
AWS_ACCESS_KEY_ID = env_str("AWS_ACCESS_KEY_ID")
AWS_SECRET_ACCESS_KEY = env_str("AWS_SECRET_ACCESS_KEY")
AWS_SESSION_TOKEN = env_str("AWS_SESSION_TOKEN")
AWS_STORAGE_BUCKET_NAME = env_str("AWS_STORAGE_BUCKET_NAME")
AWS_S3_REGION_NAME = env_str("AWS_S3_REGION_NAME", "us-east-1")
AWS_S3_ENDPOINT_URL = env_str("AWS_S3_ENDPOINT_URL")
# Every call to the store is bounded, so a store that accepts connections but never answers
# costs a request about 2 x 5 s + backoff (about 11 s) before its 503, not minutes. S3 answers
# these small calls in well under a second. Completion is the exception: S3 may work for
# minutes on a large upload (sending whitespace meanwhile), so CompleteMultipartUpload alone
# waits up to AWS_S3_COMPLETE_READ_TIMEOUT of silence, and is not retried.
AWS_S3_CONNECT_TIMEOUT = env_int("AWS_S3_CONNECT_TIMEOUT", 3)
AWS_S3_READ_TIMEOUT = env_int("AWS_S3_READ_TIMEOUT", 5)
AWS_S3_MAX_ATTEMPTS = env_int("AWS_S3_MAX_ATTEMPTS", 2)
AWS_S3_COMPLETE_READ_TIMEOUT = env_int("AWS_S3_COMPLETE_READ_TIMEOUT", 120)


def s3_storage_options(
    *,
    bucket: str,
    region: str,
    endpoint_url: str,
    access_key: str,
    secret_key: str,
    session_token: str = "",
    connect_timeout: int = AWS_S3_CONNECT_TIMEOUT,
    read_timeout: int = AWS_S3_READ_TIMEOUT,
    max_attempts: int = AWS_S3_MAX_ATTEMPTS,
) -> dict[str, object]:
    """OPTIONS for django-storages' S3Storage; tests build the same dict for moto."""
    return {
        "bucket_name": bucket,
        "region_name": region,
        "endpoint_url": endpoint_url or None,
        "access_key": access_key or None,
        "secret_key": secret_key or None,
        "security_token": session_token or None,
        "file_overwrite": False,
        "default_acl": None,
        "querystring_auth": True,
        "client_config": Config(
            # boto3 without a Config presigns with SigV2, which new regions refuse.
            signature_version="s3v4",
            # S3-compatible stores usually serve path-style URLs only.
            s3={"addressing_style": "path" if endpoint_url else "auto"},
            # boto3 >= 1.36 adds CRC32 checksums by default, which breaks presigned part PUTs
            # on several S3-compatible stores.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            # "standard" retries throttling and transient errors with backoff; the first try
            # counts as one of the attempts.
            retries={"total_max_attempts": max_attempts, "mode": "standard"},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_pool_connections=32,
        ),
    }


STORAGES: dict[str, dict[str, object]] = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
if AWS_STORAGE_BUCKET_NAME:
    STORAGES["default"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": s3_storage_options(
            bucket=AWS_STORAGE_BUCKET_NAME,
            region=AWS_S3_REGION_NAME,
            endpoint_url=AWS_S3_ENDPOINT_URL,
            access_key=AWS_ACCESS_KEY_ID,
            secret_key=AWS_SECRET_ACCESS_KEY,
            session_token=AWS_SESSION_TOKEN,
        ),
    }

# --- Uploads -------------------------------------------------------------------------------
MAX_FILE_UPLOAD_SIZE = env_int("MAX_FILE_UPLOAD_SIZE", 5 * 1024**3)
FILE_UPLOAD_PRESIGNED_URL_EXPIRATION = env_int("FILE_UPLOAD_PRESIGNED_URL_EXPIRATION", 3600)
# S3 part URLs from our own SigV4 signer (checked against botocore's at each use); off, botocore
# signs every URL itself: slower, for ruling the fast signer out.
UPLOADS_FAST_PRESIGN = env_bool("UPLOADS_FAST_PRESIGN", True)
# How long an unfinished upload may stay open before cleanup aborts it.
UPLOADS_EXPIRATION_SECONDS = env_int("UPLOADS_EXPIRATION_SECONDS", 24 * 3600)
# S3 refuses non-last parts under 5 MiB; only tests lower this, and only on local disk.
UPLOADS_MIN_PART_SIZE = env_int("UPLOADS_MIN_PART_SIZE", 5 * 1024**2)
UPLOADS_DEFAULT_PART_SIZE = env_int("UPLOADS_DEFAULT_PART_SIZE", 8 * 1024**2)
# Models files may be attached to ("app_label.model"); empty = the project's own apps' models
# (never Django's, installed libraries' or this app's). The policy is `can_attach(user, obj)`.
UPLOADS_PARENT_MODELS = env_list("UPLOADS_PARENT_MODELS")
UPLOADS_PARENT_POLICY = env_str("UPLOADS_PARENT_POLICY", "uploads.services.parents.allow_all")
# Bytes a user may hold: completed files plus bytes reserved by unfinished uploads. None = no limit.
FILE_UPLOAD_QUOTA_PER_USER = env_int("FILE_UPLOAD_QUOTA_PER_USER", None)
# Content types accepted ("image/png", "image/*"); empty = all. Checked at initiate against the
# declared type and after completion against the type sniffed from the stored bytes.
ALLOWED_FILE_TYPES = env_list("ALLOWED_FILE_TYPES")
UPLOADS_KEY_PREFIX = env_str("UPLOADS_KEY_PREFIX", "uploads").strip("/")
UPLOADS_DOWNLOAD_URL_EXPIRATION = env_int("UPLOADS_DOWNLOAD_URL_EXPIRATION", 300)
# Days a deleted file's bytes are kept (restorable by staff, counted in the owner's quota)
# before cleanup purges them.
UPLOADS_DELETED_RETENTION_DAYS = env_int("UPLOADS_DELETED_RETENTION_DAYS", 7)
# Where the local handler keeps parts until completion; never served directly.
UPLOADS_LOCAL_PARTS_DIR = Path(env_str("UPLOADS_LOCAL_PARTS_DIR", str(MEDIA_ROOT / ".parts")))
# The portal's uploader signs each part's SHA-256 into its URL; off only for an S3-compatible
# store that refuses x-amz-checksum-sha256 (the upload then rests on ETags and sizes).
UPLOADS_BROWSER_CHECKSUMS = env_bool("UPLOADS_BROWSER_CHECKSUMS", True)
# Part PUTs the portal's uploader runs at once, shared by every file on the page.
UPLOADS_BROWSER_CONCURRENCY = env_int("UPLOADS_BROWSER_CONCURRENCY", 4)
# A part PUT with no upload progress for this long is aborted and sent again.
UPLOADS_BROWSER_STALL_SECONDS = env_int("UPLOADS_BROWSER_STALL_SECONDS", 30)

# --- API auth ------------------------------------------------------------------------------
NINJA_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=env_int("JWT_ACCESS_MINUTES", 15) or 15),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=env_int("JWT_REFRESH_DAYS", 7) or 7),
}

# --- Task queue ----------------------------------------------------------------------------
REDIS_URL = env_str("REDIS_URL")
Q_CLUSTER: dict[str, object] = {
    "name": "direct-uploads",
    "workers": env_int("Q_WORKERS", 2),
    # A cleanup run has a time budget well under this; retry must stay above timeout.
    "timeout": 600,
    "retry": 900,
    "max_attempts": 1,
    "catch_up": False,
    "orm": "default",
}
if REDIS_URL:
    Q_CLUSTER.pop("orm")
    Q_CLUSTER["redis"] = REDIS_URL

# --- Security ------------------------------------------------------------------------------
# Cookies travel over HTTPS only unless DEBUG; HSTS is opt-in because it outlives a bad config.
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("SECURE_PROXY_SSL_HEADER") else None
)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# --- Content-Security-Policy (Django's built-in middleware) ----------------------------------
# Scripts only from our origin or with the per-response nonce; no inline styles (htmx's
# indicator <style> is turned off in base.html). The browser PUTs parts to the bucket in S3
# mode: uploads.middleware adds the configured store's origin to connect-src, and
# UPLOADS_CSP_CONNECT_SRC lists any other origin the pages may call.
UPLOADS_CSP_CONNECT_SRC = env_list("UPLOADS_CSP_CONNECT_SRC")
SECURE_CSP: dict[str, list[str]] = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF],
    # blob: the uploader shows a picked image as its own thumbnail, without sending it anywhere.
    "img-src": [CSP.SELF, "data:", "blob:"],
    "connect-src": [CSP.SELF, *UPLOADS_CSP_CONNECT_SRC],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.SELF],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
}

# --- Throttling of the token endpoints -----------------------------------------------------
# Attempts per client address on /v1/auth/token/* ("10/min", "100/hour"; empty = no limit).
AUTH_TOKEN_THROTTLE_RATE = env_str("AUTH_TOKEN_THROTTLE_RATE", "10/min")
# Trusted proxies in front of the app (1 behind one load balancer): the throttle then takes the
# client address from X-Forwarded-For; with 0 it uses the socket's address only.
NINJA_NUM_PROXIES = env_int("NINJA_NUM_PROXIES", 0)
# The throttle counts in the cache: with Redis, every web worker shares one count.
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "direct-uploads",
        }
    }

# --- Login lockout (django-axes) -------------------------------------------------------------
# Failed passwords on the portal's and the admin's sign-in and on /v1/auth/token/pair, counted
# in the database (shared by every web worker) per username *and* client address: a guesser
# locks out only their own guesses, never the user from elsewhere nor other users.
LOGIN_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5)
AXES_ENABLED = bool(LOGIN_FAILURE_LIMIT)
AXES_FAILURE_LIMIT = LOGIN_FAILURE_LIMIT or 5
AXES_COOLOFF_TIME = timedelta(minutes=env_int("LOGIN_LOCKOUT_MINUTES", 15) or 15)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# The same client address as the token throttle (NINJA_NUM_PROXIES decides whom to trust).
AXES_CLIENT_IP_CALLABLE = "uploads.auth.client_ip"
AXES_LOCKOUT_CALLABLE = "uploads.auth.lockout_response"
# Failures are what we need; a row per successful sign-in is not.
AXES_DISABLE_ACCESS_LOG = True

# --- Which web worker answered -------------------------------------------------------------
# SERVED_BY_HEADER=1 adds `X-Served-By: <pid>` to every response (diagnostics, and the
# production-shape test that proves requests spread over several workers).
SERVED_BY_HEADER = env_bool("SERVED_BY_HEADER", False)
if SERVED_BY_HEADER:
    MIDDLEWARE.insert(0, "uploads.middleware.ServedByMiddleware")

LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"botocore": {"level": "WARNING"}, "urllib3": {"level": "WARNING"}},
}

# Browser origins allowed to PUT parts straight to the bucket (see `manage.py setup_bucket`).
UPLOADS_CORS_ORIGINS = env_list(
    "UPLOADS_CORS_ORIGINS", "http://127.0.0.1:8000,http://localhost:8000"
)

# An in-flight upload with no new part for this long is flagged as stalled on the dashboard.
UPLOADS_STALLED_MINUTES = env_int("UPLOADS_STALLED_MINUTES", 10)
# Seconds the dashboard caches what the store says about in-flight uploads.
UPLOADS_PROGRESS_CACHE_SECONDS = env_int("UPLOADS_PROGRESS_CACHE_SECONDS", 5)
