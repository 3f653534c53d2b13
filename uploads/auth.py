from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja.security import SessionAuth


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
