"""What the tests share: a client over Django's test client, one over real HTTP, the error
shape check and the store pin."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import pytest
import requests
from django.conf import settings
from django.middleware.csrf import get_token
from django.test import Client, RequestFactory

from uploads.auth import refresh_token_for
from uploads.storage.base import StoredPart

# tests/settings.py lowers the minimum part to 1 KiB so multi-part uploads stay tiny.
PART = 1024
UPLOADS = "/v1/files/uploads"
LOCAL_DISK = {"BACKEND": "django.core.files.storage.FileSystemStorage"}


def pin_local_disk(settings: Any) -> None:
    """The local-disk handler, whatever the environment configured (pytest-django `settings`)."""
    settings.STORAGES = {**settings.STORAGES, "default": LOCAL_DISK}


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    """The one error shape: {"detail": str, "code": str} and sometimes "extra", as JSON."""
    assert response.status_code == status, response.content
    assert response.headers["Content-Type"].startswith("application/json"), response.headers
    body = response.json()
    assert set(body) <= {"detail", "code", "extra"}, body
    assert isinstance(body["detail"], str) and body["detail"], body
    assert body["code"] == code, body
    return body  # type: ignore[no-any-return]


def initiate(api: ApiClient | HttpApi, size: int, **fields: Any) -> dict[str, Any]:
    """Start an upload of `size` bytes (parts of PART unless `part_size` is given); 201 or fail."""
    return api.initiate(size, **{"part_size": PART, **fields})


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


def put_parts(
    put: Callable[[str, bytes], Any], init: dict[str, Any], content: bytes
) -> list[dict[str, Any]]:
    """PUT, with `put`, the parts of `content` that `init` has URLs for; each must answer 200.
    Returns the part list complete expects."""
    size = init["part_size"]
    parts = []
    for target in init["presigned_urls"]:
        n = target["part_number"]
        response = put(target["url"], content[(n - 1) * size : n * size])
        assert response.status_code == 200, response.content
        parts.append({"part_number": n, "etag": response.headers["ETag"]})
    return parts


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

    def initiate(self, size: int, **fields: Any) -> dict[str, Any]:
        response = self.post(UPLOADS, {"file_name": "data.bin", "file_size": size, **fields})
        assert response.status_code == 201, response.content
        return response.json()  # type: ignore[no-any-return]

    def put_part(self, url: str, body: bytes) -> Any:
        """PUT a part to a local-handler URL through the same Django client."""
        return self.client.put(url, data=body, content_type="application/octet-stream")

    def put_parts(self, init: dict[str, Any], content: bytes) -> list[dict[str, Any]]:
        """PUT the parts of `content` that `init` has URLs for; return what complete expects."""
        return put_parts(self.put_part, init, content)

    def upload(self, content: bytes, **fields: Any) -> dict[str, Any]:
        """Initiate, PUT every part, complete; return the completed file."""
        init = self.post(
            "/v1/files/uploads",
            {"file_name": "data.bin", "file_size": len(content), **fields},
        )
        assert init.status_code == 201, init.content
        body = init.json()
        parts = self.put_parts(body, content)
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
            "POST", UPLOADS, {"file_name": "data.bin", "file_size": size, **fields}
        )
        assert response.status_code == 201, response.text
        return response.json()  # type: ignore[no-any-return]

    @staticmethod
    def put(url: str, body: bytes) -> requests.Response:
        # A bare PUT, as a browser or curl would send: no auth header, only the signed URL.
        return requests.put(url, data=body, timeout=60)

    def put_parts(self, init: dict[str, Any], content: bytes) -> list[dict[str, Any]]:
        """PUT the parts of `content` that `init` has URLs for; return what complete expects."""
        return put_parts(self.put, init, content)

    def complete(self, file_id: str, parts: list[dict[str, Any]]) -> requests.Response:
        return self.call("POST", f"/v1/files/uploads/{file_id}/complete", {"parts": parts})


def local_part_files(directory: Path) -> list[Path]:
    """Part records and leftovers in a local upload's directory: everything but the object
    being assembled and the parts' claims."""
    if not directory.exists():
        return []
    return sorted(
        p for p in directory.iterdir() if p.name != "object" and not p.name.endswith(".claim")
    )


class Store:
    """Looks into the store behind the handler, around the application, to check what it holds."""

    def __init__(self, backend: str, s3: Any = None) -> None:
        self.backend = backend
        self.s3 = s3

    @classmethod
    def of(cls, backend: str, request: pytest.FixtureRequest) -> Store:
        """The store behind `backend`: "local", or the name of an S3 fixture."""
        return cls(backend, None if backend == "local" else request.getfixturevalue(backend))

    @property
    def parts_dir(self) -> Path:
        return Path(settings.UPLOADS_LOCAL_PARTS_DIR)

    def upload_alive(self, upload_id: str) -> bool:
        """Whether the store still holds the multipart upload `upload_id`."""
        if self.s3 is None:
            return (self.parts_dir / upload_id).exists()
        uploads: list[dict[str, Any]] = []
        pages = self.s3.client.get_paginator("list_multipart_uploads")
        for page in pages.paginate(Bucket=self.s3.bucket):
            uploads.extend(page.get("Uploads", []))
        return any(item["UploadId"] == upload_id for item in uploads)

    def object_bytes(self, key: str) -> bytes | None:
        """The stored object at `key`, or None when there is none."""
        if self.s3 is None:
            path = Path(settings.MEDIA_ROOT) / key
            return path.read_bytes() if path.is_file() else None
        try:
            response = self.s3.client.get_object(Bucket=self.s3.bucket, Key=key)
        except self.s3.client.exceptions.NoSuchKey:
            return None
        return response["Body"].read()  # type: ignore[no-any-return]

    def local_part_files(self, upload_id: str) -> list[Path]:
        """Part records and leftovers (temp files) in a local upload's directory."""
        return local_part_files(self.parts_dir / upload_id)


def unavailable(reason: str) -> NoReturn:
    """Skip a test this machine can't run (a service down, no root), or fail it where the run
    must have everything: CI sets TESTS_REQUIRE_SERVICES=1, so nothing it needs is skipped."""
    if os.environ.get("TESTS_REQUIRE_SERVICES") == "1":
        pytest.fail(f"required for this run: {reason}", pytrace=False)
    pytest.skip(reason)


def botocore_stored_part(part: dict[str, Any], algorithm: str) -> StoredPart:
    """One part of a ListParts response parsed by botocore, as the S3 handler reported it
    before it read ListParts itself: the reference its own reader is compared with."""
    return StoredPart(
        part_number=part["PartNumber"],
        size=part["Size"],
        etag=part["ETag"],
        last_modified=part.get("LastModified"),
        checksum=part.get(f"Checksum{algorithm}", "") if algorithm else "",
    )
