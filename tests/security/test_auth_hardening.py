"""Auth hardening: the token endpoints' throttle, JWT lifetimes and expiry, secure cookies and
HSTS outside DEBUG, and `manage.py check --deploy` clean in a production-shaped environment."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from django.conf import settings as django_settings
from django.test import Client
from ninja_jwt.tokens import RefreshToken
from ninja_jwt.utils import aware_utcnow

from tests.helpers import ApiClient
from uploads.auth import refresh_token_for

ROOT = Path(__file__).resolve().parents[2]
PAIR = "/v1/auth/token/pair"
REFRESH = "/v1/auth/token/refresh"
GOOD = {"username": "alice", "password": "alice-pass"}
BAD = {"username": "alice", "password": "guess"}


def guess(n: int) -> dict[str, str]:
    """A wrong password for a different username each time: the per-address throttle counts
    them all, while the login lockout (per username and address) never trips."""
    return {"username": f"someone{n}", "password": "guess"}


def assert_throttled(response: Any) -> None:
    assert response.status_code == 429, response.content
    assert response.json() == {"detail": "Too many requests; try again later.", "code": "throttled"}
    assert 0 < int(response["Retry-After"]) <= 60


# --- Throttle --------------------------------------------------------------------------------


def test_default_rate_is_ten_a_minute_per_address(anon_api: ApiClient, user: Any) -> None:
    assert django_settings.AUTH_TOKEN_THROTTLE_RATE == "10/min"
    for n in range(10):
        assert anon_api.post(PAIR, guess(n)).status_code == 401
    assert_throttled(anon_api.post(PAIR, BAD))


def test_password_guessing_is_throttled_then_even_the_right_password_waits(
    anon_api: ApiClient, user: Any, settings: Any
) -> None:
    settings.AUTH_TOKEN_THROTTLE_RATE = "3/min"
    for _ in range(3):
        assert anon_api.post(PAIR, BAD).status_code == 401
    assert_throttled(anon_api.post(PAIR, BAD))
    assert_throttled(anon_api.post(PAIR, GOOD))
    # The refresh endpoint counts against the same allowance.
    assert_throttled(anon_api.post(REFRESH, {"refresh": "x"}))


def test_other_addresses_keep_their_allowance(anon_api: ApiClient, user: Any, settings: Any):
    settings.AUTH_TOKEN_THROTTLE_RATE = "2/min"
    for _ in range(2):
        anon_api.post(PAIR, BAD, REMOTE_ADDR="203.0.113.7")
    assert_throttled(anon_api.post(PAIR, GOOD, REMOTE_ADDR="203.0.113.7"))
    assert anon_api.post(PAIR, GOOD, REMOTE_ADDR="203.0.113.8").status_code == 200


def test_a_forged_forwarded_for_header_does_not_reset_the_count(
    anon_api: ApiClient, user: Any, settings: Any
) -> None:
    settings.AUTH_TOKEN_THROTTLE_RATE = "2/min"
    assert settings.NINJA_NUM_PROXIES == 0
    for n in range(2):
        anon_api.post(PAIR, BAD, HTTP_X_FORWARDED_FOR=f"198.51.100.{n}")
    assert_throttled(anon_api.post(PAIR, BAD, HTTP_X_FORWARDED_FOR="198.51.100.99"))


def test_behind_a_trusted_proxy_the_forwarded_client_address_counts(
    anon_api: ApiClient, user: Any, settings: Any
) -> None:
    settings.AUTH_TOKEN_THROTTLE_RATE = "2/min"
    settings.NINJA_NUM_PROXIES = 1
    # The proxy appends the address it saw; anything left of it is the client's own claim.
    for _ in range(2):
        anon_api.post(PAIR, BAD, HTTP_X_FORWARDED_FOR="spoofed, 192.0.2.1")
    assert_throttled(anon_api.post(PAIR, BAD, HTTP_X_FORWARDED_FOR="other-spoof, 192.0.2.1"))
    assert anon_api.post(PAIR, GOOD, HTTP_X_FORWARDED_FOR="192.0.2.2").status_code == 200


def test_an_empty_rate_turns_the_throttle_off(anon_api: ApiClient, user: Any, settings: Any):
    settings.AUTH_TOKEN_THROTTLE_RATE = ""
    for n in range(15):
        assert anon_api.post(PAIR, guess(n)).status_code == 401


def test_other_endpoints_are_not_throttled(api: ApiClient, settings: Any) -> None:
    settings.AUTH_TOKEN_THROTTLE_RATE = "1/min"
    for _ in range(5):
        assert api.get("/v1/files").status_code == 200


def test_the_429_is_documented_for_the_token_endpoints(anon_api: ApiClient) -> None:
    schema = anon_api.get("/v1/openapi.json").json()
    for path in (PAIR, REFRESH):
        responses = schema["paths"][path]["post"]["responses"]
        assert {"200", "401", "422", "429"} <= set(responses), responses


# --- JWT lifetimes ---------------------------------------------------------------------------


def _claims(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})  # type: ignore[no-any-return]


def test_token_lifetimes_follow_the_settings(anon_api: ApiClient, user: Any) -> None:
    pair = anon_api.post(PAIR, GOOD).json()
    access, refresh = _claims(pair["access"]), _claims(pair["refresh"])
    lifetimes = django_settings.NINJA_JWT
    assert access["exp"] - access["iat"] == lifetimes["ACCESS_TOKEN_LIFETIME"].total_seconds()
    assert refresh["exp"] - refresh["iat"] == lifetimes["REFRESH_TOKEN_LIFETIME"].total_seconds()
    assert lifetimes["ACCESS_TOKEN_LIFETIME"] == timedelta(minutes=15)  # the default


def _issued(token: Any, age: timedelta) -> str:
    """`token` as if issued `age` ago (signed properly, only the clock moved)."""
    at = aware_utcnow() - age
    token.set_iat(at_time=at)
    token.set_exp(from_time=at)
    return str(token)


def test_an_access_token_expires_after_its_lifetime(anon_api: ApiClient, user: Any) -> None:
    lifetime = django_settings.NINJA_JWT["ACCESS_TOKEN_LIFETIME"]
    fresh = _issued(refresh_token_for(user).access_token, lifetime - timedelta(seconds=30))
    stale = _issued(refresh_token_for(user).access_token, lifetime + timedelta(seconds=1))

    assert anon_api.get("/v1/files", HTTP_AUTHORIZATION=f"Bearer {fresh}").status_code == 200
    expired = anon_api.get("/v1/files", HTTP_AUTHORIZATION=f"Bearer {stale}")
    assert expired.status_code == 401
    assert expired.json()["code"] == "token_not_valid"


def test_a_refresh_token_expires_after_its_lifetime(anon_api: ApiClient, user: Any) -> None:
    lifetime = django_settings.NINJA_JWT["REFRESH_TOKEN_LIFETIME"]
    fresh = _issued(refresh_token_for(user), lifetime - timedelta(minutes=1))
    stale = _issued(refresh_token_for(user), lifetime + timedelta(seconds=1))

    assert anon_api.post(REFRESH, {"refresh": fresh}).status_code == 200
    expired = anon_api.post(REFRESH, {"refresh": stale})
    assert expired.status_code == 401
    assert expired.json()["code"] == "token_not_valid"


# --- Settings as the environment makes them --------------------------------------------------


def production_env(**extra: str) -> dict[str, str]:
    """A production-shaped environment: no DEBUG, a long random key, HTTPS hardening on."""
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    return {
        **keep,
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "SECRET_KEY": secrets.token_urlsafe(64),
        "ALLOWED_HOSTS": "uploads.example.com",
        "CSRF_TRUSTED_ORIGINS": "https://uploads.example.com",
        "SECURE_SSL_REDIRECT": "1",
        "SECURE_PROXY_SSL_HEADER": "1",
        "SECURE_HSTS_SECONDS": "31536000",
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": "1",
        "SECURE_HSTS_PRELOAD": "1",
        **extra,
    }


def settings_under(env: dict[str, str], *names: str) -> dict[str, Any]:
    code = (
        "import json; from django.conf import settings as s; "
        f"print(json.dumps({{n: getattr(s, n) for n in {list(names)!r}}}, default=str))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_cookies_are_secure_unless_debug() -> None:
    names = ("SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SESSION_COOKIE_HTTPONLY")
    production = settings_under(production_env(), *names)
    assert production == dict.fromkeys(names, True)
    development = settings_under(production_env(DEBUG="1"), *names[:2])
    assert development == dict.fromkeys(names[:2], False)


def test_hsts_and_jwt_lifetimes_come_from_the_environment() -> None:
    values = settings_under(
        production_env(JWT_ACCESS_MINUTES="3", JWT_REFRESH_DAYS="2"),
        "SECURE_HSTS_SECONDS", "SECURE_HSTS_INCLUDE_SUBDOMAINS", "SECURE_HSTS_PRELOAD",
        "NINJA_JWT", "AUTH_TOKEN_THROTTLE_RATE",
    )  # fmt: skip
    assert values["SECURE_HSTS_SECONDS"] == 31536000
    assert values["SECURE_HSTS_INCLUDE_SUBDOMAINS"] is True
    assert values["SECURE_HSTS_PRELOAD"] is True
    assert values["NINJA_JWT"]["ACCESS_TOKEN_LIFETIME"] == str(timedelta(minutes=3))
    assert values["NINJA_JWT"]["REFRESH_TOKEN_LIFETIME"] == str(timedelta(days=2))
    assert values["AUTH_TOKEN_THROTTLE_RATE"] == "10/min"


def test_without_debug_a_secret_key_is_required() -> None:
    env = production_env()
    env.pop("SECRET_KEY")
    done = subprocess.run(
        [sys.executable, "-c", "import project.settings"], env=env, cwd=ROOT,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode != 0
    assert "Set SECRET_KEY" in done.stderr


def test_check_deploy_is_clean_in_production_shape() -> None:
    done = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        env=production_env(), cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout


def test_check_deploy_names_what_is_missing_without_https_settings() -> None:
    env = production_env()
    for name in ("SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS"):
        env.pop(name)
    done = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode != 0
    assert "security.W004" in done.stderr and "security.W008" in done.stderr


# --- Cookies and HTTPS headers on real responses ---------------------------------------------


def test_session_and_csrf_cookies_carry_secure_and_httponly(user: Any, settings: Any) -> None:
    settings.SESSION_COOKIE_SECURE = True
    settings.CSRF_COOKIE_SECURE = True
    client = Client()
    client.get("/accounts/login/")
    csrf = client.cookies["csrftoken"]
    assert csrf["secure"] is True
    client.post("/accounts/login/", {"username": "alice", "password": "alice-pass"})
    session = client.cookies["sessionid"]
    assert session["secure"] is True and session["httponly"] is True
    assert session["samesite"] == "Lax"


def test_https_redirect_and_hsts(user: Any, settings: Any) -> None:
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    settings.SECURE_HSTS_PRELOAD = True
    client = Client()
    plain = client.get("/accounts/login/")
    assert plain.status_code == 301
    assert plain["Location"].startswith("https://")
    secure = client.get("/accounts/login/", secure=True)
    assert secure.status_code == 200
    assert secure["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
    assert secure["X-Frame-Options"] == "DENY"
    assert secure["X-Content-Type-Options"] == "nosniff"
    assert secure["Referrer-Policy"] == "same-origin"


def test_hsts_is_off_until_configured(client: Client, db: Any) -> None:
    response = client.get("/accounts/login/", secure=True)
    assert "Strict-Transport-Security" not in response


@pytest.mark.parametrize("path", ["/v1/files", "/v1/openapi.json"])
def test_api_answers_are_not_framable_either(client: Client, db: Any, path: str) -> None:
    response = client.get(path)
    assert response["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in response["Content-Security-Policy"]


# --- Tokens end with the account or its password ---------------------------------------------


def _pair(client: ApiClient) -> dict[str, str]:
    response = client.post(PAIR, GOOD)
    assert response.status_code == 200, response.content
    return response.json()  # type: ignore[no-any-return]


def _bearer(access: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {access}"}


def assert_token_refused(response: Any) -> None:
    assert response.status_code == 401, response.content
    body = response.json()
    assert set(body) <= {"detail", "code", "extra"} and body["detail"], body
    assert body["code"] == "token_not_valid", body


def test_refresh_fails_once_the_user_is_deactivated(anon_api: ApiClient, user: Any) -> None:
    pair = _pair(anon_api)
    assert anon_api.post(REFRESH, {"refresh": pair["refresh"]}).status_code == 200
    user.is_active = False
    user.save()
    assert_token_refused(anon_api.post(REFRESH, {"refresh": pair["refresh"]}))


def test_refresh_fails_once_the_user_is_deleted(anon_api: ApiClient, user: Any) -> None:
    pair = _pair(anon_api)
    user.delete()
    assert_token_refused(anon_api.post(REFRESH, {"refresh": pair["refresh"]}))


def test_an_access_token_of_a_deactivated_user_is_refused_at_once(
    anon_api: ApiClient, user: Any
) -> None:
    pair = _pair(anon_api)
    assert anon_api.get("/v1/files", headers=_bearer(pair["access"])).status_code == 200
    user.is_active = False
    user.save()
    refused = anon_api.get("/v1/files", headers=_bearer(pair["access"]))
    assert refused.status_code == 401, refused.content


def test_a_password_change_ends_every_token_issued_before_it(
    anon_api: ApiClient, user: Any
) -> None:
    first, second = _pair(anon_api), _pair(anon_api)
    user.set_password("a-new-password")
    user.save()
    for pair in (first, second):
        assert_token_refused(anon_api.post(REFRESH, {"refresh": pair["refresh"]}))
        assert_token_refused(anon_api.get("/v1/files", headers=_bearer(pair["access"])))
    # The new password gets tokens that work.
    fresh = anon_api.post(PAIR, {"username": "alice", "password": "a-new-password"}).json()
    assert anon_api.get("/v1/files", headers=_bearer(fresh["access"])).status_code == 200
    renewed = anon_api.post(REFRESH, {"refresh": fresh["refresh"]})
    assert renewed.status_code == 200, renewed.content
    assert anon_api.get("/v1/files", headers=_bearer(renewed.json()["access"])).status_code == 200


def test_a_token_without_the_password_stamp_is_refused(anon_api: ApiClient, user: Any) -> None:
    # Signed with the right key, but not minted by the token endpoint (no password stamp).
    refresh = RefreshToken.for_user(user)
    assert_token_refused(anon_api.post(REFRESH, {"refresh": str(refresh)}))
    assert_token_refused(anon_api.get("/v1/files", headers=_bearer(str(refresh.access_token))))
