from __future__ import annotations

import math
import threading
from typing import Any, cast

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.signals import user_logged_in
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.crypto import constant_time_compare, salted_hmac
from ninja import Schema
from ninja.security import SessionAuth
from ninja.throttling import AnonRateThrottle
from ninja_extra.router import Router
from ninja_jwt.authentication import JWTAuth
from ninja_jwt.exceptions import AuthenticationFailed, InvalidToken, TokenError
from ninja_jwt.schema import TokenObtainPairInputSchema
from ninja_jwt.tokens import RefreshToken

from .errors import error_body
from .schemas import ErrorOut


class PortalSessionAuth(SessionAuth):
    """Session auth whose CSRF check applies to signed-in sessions only.

    Ninja's SessionAuth checks CSRF before it knows whether anyone is signed in, so an anonymous
    API call would get 403 "CSRF" instead of the 401 that tells a client to authenticate.
    """

    def _get_key(self, request: HttpRequest) -> Any:
        if not request.user.is_authenticated:
            return None
        return super()._get_key(request)


session_auth = PortalSessionAuth()


# --- Tokens bound to the account and its password ------------------------------------------

# A claim that changes with the user's password: a password change (any way: the admin, a
# command, set_password) ends every token issued before it, on every web worker, with no
# token table to keep. An HMAC with SECRET_KEY, so the token reveals nothing of the hash.
PASSWORD_CLAIM = "pwd"


def _password_stamp(user: AbstractBaseUser) -> str:
    return salted_hmac(
        "uploads.auth.token-password", user.password, algorithm="sha256"
    ).hexdigest()[:32]


def refresh_token_for(user: AbstractBaseUser) -> RefreshToken:
    """A refresh token (and, through `.access_token`, its access token) for `user`."""
    # ninja_jwt annotates `for_user` as returning the class, not an instance of it.
    token = cast(RefreshToken, RefreshToken.for_user(user))  # type: ignore[misc]
    token[PASSWORD_CLAIM] = _password_stamp(user)
    return token


class TokenAuth(JWTAuth):
    """ninja_jwt's Bearer auth (the user must exist and be active), plus the password stamp."""

    def get_user(self, validated_token: Any) -> AbstractBaseUser:
        try:
            user = super().get_user(validated_token)
        except AuthenticationFailed as exc:
            raise InvalidToken("The token's user no longer exists or is inactive.") from exc
        stamp = str(validated_token.get(PASSWORD_CLAIM, ""))
        if not constant_time_compare(stamp, _password_stamp(user)):
            raise InvalidToken("The token was issued before the password changed.")
        return user


token_auth = TokenAuth()


# --- Token endpoints -----------------------------------------------------------------------


class AuthTokenThrottle(AnonRateThrottle):
    """Per-client-address limit on the token endpoints, against password guessing.

    The rate is read from AUTH_TOKEN_THROTTLE_RATE on every request (empty = no limit), and the
    address from REMOTE_ADDR unless NINJA_NUM_PROXIES trusted proxies stand in front: Ninja's
    default otherwise keys on the whole X-Forwarded-For header, which a client can vary at will
    to get a fresh allowance on every guess.
    """

    scope = "auth_token"

    def __init__(self) -> None:
        super().__init__(rate=settings.AUTH_TOKEN_THROTTLE_RATE or "1/s")
        # Ninja's throttle keeps per-request state on the instance, which threads share.
        self._local = threading.local()

    def allow_request(self, request: HttpRequest) -> bool:
        rate = settings.AUTH_TOKEN_THROTTLE_RATE
        key = self.get_cache_key(request) if rate else None
        if key is None:
            return True
        allowed, window = self.parse_rate(rate)
        assert allowed is not None and window is not None
        now = self.timer()  # type: ignore[misc]
        history = [at for at in self.cache.get(key, []) if at > now - window]
        if len(history) >= allowed:
            self._local.wait = window - (now - history[-1])
            return False
        self.cache.set(key, [now, *history], window)
        return True

    def wait(self) -> float | None:
        return getattr(self._local, "wait", None)

    def get_ident(self, request: HttpRequest) -> str | None:
        return client_ip(request)


def client_ip(request: HttpRequest) -> str | None:
    """The client's address: the socket's, or the one the nearest of NINJA_NUM_PROXIES trusted
    proxies appended to X-Forwarded-For (anything left of it is the client's own claim)."""
    remote_addr: str | None = request.META.get("REMOTE_ADDR")
    proxies = int(settings.NINJA_NUM_PROXIES or 0)
    forwarded = str(request.META.get("HTTP_X_FORWARDED_FOR", ""))
    if proxies <= 0 or not forwarded:
        return remote_addr
    addresses = [item.strip() for item in forwarded.split(",")]
    return addresses[-min(proxies, len(addresses))]


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None, credentials: Any
) -> HttpResponse:
    """django-axes' answer to a locked-out sign-in: the API's JSON error, or a page."""
    minutes = math.ceil(settings.AXES_COOLOFF_TIME.total_seconds() / 60)
    detail = (
        "Too many failed sign-ins for this account from your address; "
        f"try again in {minutes} minutes."
    )
    response: HttpResponse
    if request.path.startswith("/v1/"):
        response = JsonResponse(error_body(detail, "locked_out"), status=429)
    else:
        response = render(request, "registration/locked_out.html", {"detail": detail}, status=429)
    response["Retry-After"] = str(minutes * 60)
    return response


class TokenPairIn(TokenObtainPairInputSchema):
    """ninja_jwt's username/password check (through `authenticate()`), our tokens."""

    @classmethod
    def get_token(cls, user: Any) -> dict[str, str]:
        refresh = refresh_token_for(user)
        return {"refresh": str(refresh), "access": str(refresh.access_token)}


class TokenRefreshIn(Schema):
    refresh: str


class TokenRefreshOut(Schema):
    refresh: str
    access: str


# The same two endpoints as ninja_jwt's `obtain_pair_router` (same paths, URL names and
# operation ids), throttled, and with every error they answer declared in the OpenAPI schema.
_TOKEN_ERRORS: dict[int, Any] = {400: ErrorOut, 401: ErrorOut, 422: ErrorOut, 429: ErrorOut}
token_router = Router(tags=["auth"])


@token_router.post(
    "/pair",
    response={200: TokenPairIn.get_response_schema(), **_TOKEN_ERRORS},
    url_name="token_obtain_pair",
    operation_id="token_obtain_pair",
    auth=None,
    throttle=AuthTokenThrottle(),
)
def obtain_token(request: HttpRequest, user_token: TokenPairIn) -> Any:
    user_token.check_user_authentication_rule()
    # A sign-in like the portal's: the login lockout forgets this user's failures from here.
    user_logged_in.send(sender=type(user_token._user), request=request, user=user_token._user)
    return user_token.to_response_schema()  # type: ignore[no-untyped-call]  # unannotated upstream


@token_router.post(
    "/refresh",
    response={200: TokenRefreshOut, **_TOKEN_ERRORS},
    url_name="token_refresh",
    operation_id="token_refresh",
    auth=None,
    throttle=AuthTokenThrottle(),
)
def refresh_token(request: HttpRequest, payload: TokenRefreshIn) -> Any:
    try:
        refresh = RefreshToken(payload.refresh)
    except TokenError as exc:
        raise InvalidToken(str(exc)) from exc
    # The same checks as every API call: the user exists, is active, has the same password.
    token_auth.get_user(refresh)
    return {"refresh": payload.refresh, "access": str(refresh.access_token)}
