"""Small clients shared by the tests: one over Django's test client, one over real HTTP."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import requests
from django.middleware.csrf import get_token
from django.test import Client, RequestFactory

from uploads.auth import refresh_token_for


def access_token(user: Any) -> str:
    return str(refresh_token_for(user).access_token)


# The API's two ways in: a Bearer JWT (API clients) or the portal's session + CSRF header.
AUTH_MODES = ("jwt", "session")


def session_cookies(user: Any) -> dict[str, str]:
    """Cookies of a signed-in portal session for `user`, and the CSRF header value they need."""
    client = Client()
    client.force_login(user)
    token = get_token(RequestFactory().get("/"))
    return {"sessionid": client.cookies["sessionid"].value, "csrftoken": token}


class ApiClient:
    """JSON calls to /v1/ through Django's test client, as `user` or anonymous.

    `auth="jwt"` sends a Bearer access token, as API clients do; `auth="session"` signs the
    user in and sends the CSRF header with CSRF checks enforced, as the portal's uploader does.
    """

    def __init__(self, user: Any = None, *, auth: str = "jwt") -> None:
        assert auth in AUTH_MODES, auth
        self.auth = auth
        self.client = Client(enforce_csrf_checks=auth == "session")
        self.headers: dict[str, str] = {}
        if user is None:
            return
        if auth == "jwt":
            self.headers = {"Authorization": f"Bearer {access_token(user)}"}
            return
        self.client.force_login(user)
        # The token the portal's pages carry: a real page sets the cookie the header must match.
        assert self.client.get("/accounts/login/").status_code == 200
        self.headers = {"X-CSRFToken": self.client.cookies["csrftoken"].value}

    def request(self, method: str, path: str, data: Any = None, **extra: Any) -> Any:
        kwargs: dict[str, Any] = {"headers": {**self.headers, **extra.pop("headers", {})}}
        if data is not None:
            kwargs["data"] = json.dumps(data)
            kwargs["content_type"] = "application/json"
        return getattr(self.client, method)(path, **kwargs, **extra)

    def get(self, path: str, **extra: Any) -> Any:
        return self.request("get", path, **extra)

    def post(self, path: str, data: Any = None, **extra: Any) -> Any:
        return self.request("post", path, data if data is not None else {}, **extra)

    def patch(self, path: str, data: Any = None, **extra: Any) -> Any:
        return self.request("patch", path, data, **extra)

    def delete(self, path: str, **extra: Any) -> Any:
        return self.request("delete", path, **extra)

    def put_part(self, url: str, body: bytes) -> Any:
        """PUT a part to a local-handler URL through the same Django client."""
        return self.client.put(url, data=body, content_type="application/octet-stream")

    def upload(self, content: bytes, **fields: Any) -> dict[str, Any]:
        """Initiate, PUT every part, complete; return the completed file."""
        init = self.post(
            "/v1/files/uploads",
            {"file_name": "data.bin", "file_size": len(content), **fields},
        )
        assert init.status_code == 201, init.content
        body = init.json()
        size = body["part_size"]
        parts = []
        for target in body["presigned_urls"]:
            n = target["part_number"]
            response = self.put_part(target["url"], content[(n - 1) * size : n * size])
            assert response.status_code == 200, response.content
            parts.append({"part_number": n, "etag": response["ETag"]})
        done = self.post(f"/v1/files/uploads/{body['id']}/complete", {"parts": parts})
        assert done.status_code == 200, done.content
        return done.json()  # type: ignore[no-any-return]


class HttpApi:
    """The same calls over real HTTP against a live server, parts PUT to whatever URL we get."""

    def __init__(self, base_url: str, user: Any, *, auth: str = "jwt") -> None:
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        if auth == "session":
            cookies = session_cookies(user)
            self.session.cookies.update(cookies)
            self.session.headers["X-CSRFToken"] = cookies["csrftoken"]
        else:
            self.session.headers["Authorization"] = f"Bearer {access_token(user)}"

    def call(self, method: str, path: str, data: Any = None) -> requests.Response:
        return self.session.request(method, self.base_url + path, json=data, timeout=60)

    def initiate(self, size: int, **fields: Any) -> dict[str, Any]:
        response = self.call(
            "POST", "/v1/files/uploads", {"file_name": "data.bin", "file_size": size, **fields}
        )
        assert response.status_code == 201, response.text
        return response.json()  # type: ignore[no-any-return]

    @staticmethod
    def put(url: str, body: bytes) -> requests.Response:
        # A bare PUT, as a browser or curl would send: no auth header, only the signed URL.
        return requests.put(url, data=body, timeout=60)

    def complete(self, file_id: str, parts: list[dict[str, Any]]) -> requests.Response:
        return self.call("POST", f"/v1/files/uploads/{file_id}/complete", {"parts": parts})


def local_part_files(directory: Path) -> list[Path]:
    """Part records and leftovers in a local upload's directory: everything but the object
    being assembled, its lock and the parts' claims."""
    if not directory.exists():
        return []
    return sorted(
        p
        for p in directory.iterdir()
        if p.name not in {"object", "lock"} and not p.name.endswith(".claim")
    )
