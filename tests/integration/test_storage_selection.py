"""Which handler serves a request, what client it signs with, and which key it writes to."""

from __future__ import annotations

import inspect
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from django.core.files.storage import FileSystemStorage, default_storage, storages
from storages.backends.s3 import S3Storage

from tests.helpers import HttpApi, Store
from uploads.models import FileRecord
from uploads.storage import get_storage_handler
from uploads.storage.base import MultipartUpload
from uploads.storage.local import LocalStorageHandler
from uploads.storage.s3 import S3StorageHandler

from .support import Sizes, download, payload, put_parts


class MediaStorage(S3Storage):  # type: ignore[misc]
    """Projects often subclass S3Storage (a location, a custom domain): still S3."""

    location = "media"


class LocalMediaStorage(FileSystemStorage):
    pass


def test_s3_storage_selects_the_s3_handler(s3: Any) -> None:
    storage = storages["default"]
    assert isinstance(storage, S3Storage)
    # The lazy wrapper is not an S3Storage by type: asking it would pick the wrong handler.
    assert not issubclass(type(default_storage), S3Storage)

    handler = get_storage_handler()

    assert isinstance(handler, S3StorageHandler)
    assert handler.bucket == s3.bucket
    # The client is django-storages' own, so credentials and endpoint come from STORAGES.
    assert handler.client is storage.connection.meta.client
    assert handler.client.meta.endpoint_url == s3.endpoint
    assert handler.client.meta.config.signature_version == "s3v4"


def test_a_subclass_of_s3storage_is_still_s3(s3: Any, settings: Any) -> None:
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            **settings.STORAGES["default"],
            "BACKEND": f"{__name__}.MediaStorage",
        },
    }
    assert isinstance(get_storage_handler(), S3StorageHandler)


@pytest.mark.parametrize(
    "backend_path",
    ["django.core.files.storage.FileSystemStorage", f"{__name__}.LocalMediaStorage"],
)
def test_any_other_storage_selects_the_local_handler(settings: Any, backend_path: str) -> None:
    settings.STORAGES = {**settings.STORAGES, "default": {"BACKEND": backend_path}}

    handler = get_storage_handler()

    assert isinstance(handler, LocalStorageHandler)
    assert handler.storage is storages["default"]


@pytest.mark.usefixtures("transactional_db")
def test_s3_urls_are_signed_with_sigv4(s3: Any, http_api: HttpApi) -> None:
    sizes = Sizes(part=5 * 1024 * 1024)
    content = payload(sizes.file_size(2, tail=10), seed=5)
    upload = http_api.initiate(len(content), part_size=sizes.part)

    for target in upload["presigned_urls"]:
        query = parse_qs(urlsplit(target["url"]).query)
        assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"], target["url"]
        assert "X-Amz-Signature" in query
        assert "AWSAccessKeyId" not in query  # SigV2's marker

    parts = put_parts(upload, content)
    assert http_api.complete(upload["id"], parts).status_code == 200
    fetched = download(http_api, upload["id"])
    assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in fetched.url
    assert fetched.content == content


def spy_on_keys(monkeypatch: pytest.MonkeyPatch, handler_class: type) -> list[tuple[str, str]]:
    """Record (method, key) for every handler call that names a stored object or upload."""
    seen: list[tuple[str, str]] = []
    for name, original in list(vars(handler_class).items()):
        if name.startswith("_") or not inspect.isfunction(original):
            continue
        parameters = inspect.signature(original).parameters
        if "key" not in parameters and "upload" not in parameters:
            continue

        def wrapper(
            self: Any, *args: Any, __name: str = name, __f: Any = original, **kwargs: Any
        ) -> Any:
            bound = inspect.signature(__f).bind(self, *args, **kwargs).arguments
            upload = bound.get("upload")
            key = upload.key if isinstance(upload, MultipartUpload) else bound["key"]
            seen.append((__name, key))
            return __f(self, *args, **kwargs)

        monkeypatch.setattr(handler_class, name, wrapper)
    return seen


@pytest.mark.usefixtures("transactional_db")
def test_storage_key_is_derived_once_and_ignores_the_client_name(
    backend: str, http_api: HttpApi, sizes: Sizes, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    handler_class = LocalStorageHandler if backend == "local" else S3StorageHandler
    seen = spy_on_keys(monkeypatch, handler_class)
    content = payload(sizes.file_size(2, tail=321), seed=6)

    upload = http_api.initiate(
        len(content), part_size=sizes.part, file_name="../../etc/passwd.html"
    )

    record = FileRecord.objects.get(pk=upload["id"])
    key = record.file.name
    assert key
    assert ".." not in key
    assert "passwd" not in key
    assert ".html" not in key
    assert record.file_name == "passwd.html"  # display only
    assert seen == [("initiate", key), ("presign_parts", key)]
    if store.s3 is not None:
        for target in upload["presigned_urls"]:
            assert unquote(urlsplit(target["url"]).path) == f"/{store.s3.bucket}/{key}"

    # Were a later call to derive the key again, it would get this one instead.
    monkeypatch.setattr(
        "uploads.services.uploads.storage_key", lambda file_id: "uploads/re-derived"
    )
    parts = put_parts(upload, content)
    done = http_api.complete(upload["id"], parts)
    assert done.status_code == 200, done.text
    assert download(http_api, upload["id"]).content == content

    names = [name for name, _ in seen]
    assert {"initiate", "presign_parts", "list_parts", "complete", "download_url"} <= set(names)
    assert {k for _, k in seen} == {key}
    assert FileRecord.objects.get(pk=upload["id"]).file.name == key
    assert store.object_bytes(key) == content
