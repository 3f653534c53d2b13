"""One contract, every store: the same HTTP flow against `live_server`, parts PUT as bare
requests to the URLs the API returns (the app's /local/parts/ URLs, or presigned URLs to moto
and to the verifying S3 store, which checks their signatures).

Only the part size differs per backend (S3 needs 5 MiB for every part but the last)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.core.files.storage import storages

from tests.helpers import HttpApi
from uploads.models import FileRecord
from uploads.storage.base import MultipartUpload
from uploads.storage.s3 import S3StorageHandler

from .support import Sizes, Store, assert_error, download, md5, payload, put_parts

pytestmark = pytest.mark.usefixtures("transactional_db")

Status = FileRecord.Status


def initiate(api: HttpApi, content: bytes, sizes: Sizes, **fields: Any) -> dict[str, Any]:
    return api.initiate(len(content), part_size=sizes.part, **fields)


def test_upload_then_download_gives_the_same_bytes(
    backend: str, http_api: HttpApi, sizes: Sizes, store: Store, live_server: Any
) -> None:
    content = payload(sizes.file_size(3, tail=sizes.part // 3 + 7))
    upload = initiate(http_api, content, sizes, file_name="report.bin")
    assert upload["upload_status"] == Status.UPLOADING
    assert [t["part_number"] for t in upload["presigned_urls"]] == [1, 2, 3]
    expected_host = store.s3.endpoint if store.s3 else f"{live_server.url}/local/parts/"
    assert all(t["url"].startswith(expected_host) for t in upload["presigned_urls"])

    # Order of arrival must not matter: send the parts last to first.
    upload["presigned_urls"].reverse()
    parts = put_parts(upload, content)
    assert {p["etag"].strip('"') for p in parts} == {
        md5(content[i * sizes.part : (i + 1) * sizes.part]) for i in range(3)
    }

    response = http_api.complete(upload["id"], parts)
    assert response.status_code == 200, response.text
    done = response.json()
    assert done["upload_status"] == Status.COMPLETED
    assert done["file_size"] == len(content)
    assert done["id"] == upload["id"]

    fetched = download(http_api, upload["id"])
    assert fetched.status_code == 200
    assert fetched.content == content
    assert "report.bin" in fetched.headers["Content-Disposition"]

    record = FileRecord.objects.get(pk=upload["id"])
    assert record.upload_status == Status.COMPLETED
    assert store.object_bytes(record.storage_key) == content
    assert not store.upload_alive(upload["upload_id"])

    # Complete is idempotent: the same parts again give the same file.
    again = http_api.complete(upload["id"], parts)
    assert again.status_code == 200, again.text
    assert again.json()["id"] == upload["id"]
    assert again.json()["etag"] == done["etag"]


def test_abort_removes_the_upload_from_the_store(
    backend: str, http_api: HttpApi, sizes: Sizes, store: Store
) -> None:
    content = payload(sizes.file_size(2, tail=100), seed=1)
    upload = initiate(http_api, content, sizes)
    put_parts(upload, content, skip=(2,))
    assert store.upload_alive(upload["upload_id"])

    response = http_api.call("DELETE", f"/v1/files/uploads/{upload['id']}")
    assert response.status_code == 204, response.text

    assert not store.upload_alive(upload["upload_id"])
    detail = http_api.call("GET", f"/v1/files/{upload['id']}")
    assert detail.status_code == 200
    assert detail.json()["upload_status"] == Status.ABORTED
    assert FileRecord.objects.get(pk=upload["id"]).upload_status == Status.ABORTED
    assert store.object_bytes(FileRecord.objects.get(pk=upload["id"]).storage_key) is None


def _truncated(upload: dict[str, Any], content: bytes, sizes: Sizes) -> list[dict[str, Any]]:
    parts = put_parts(upload, content, skip=(1,))
    short = HttpApi.put(upload["presigned_urls"][0]["url"], content[: sizes.part - 1])
    assert short.status_code == 200, short.text
    return [{"part_number": 1, "etag": short.headers["ETag"]}, *parts]


def _missing(upload: dict[str, Any], content: bytes, sizes: Sizes) -> list[dict[str, Any]]:
    parts = put_parts(upload, content, skip=(2,))
    # The client claims part 2 with the ETag it would have had; the store never received it.
    claimed = {"part_number": 2, "etag": md5(content[sizes.part : 2 * sizes.part])}
    return sorted([*parts, claimed], key=lambda p: p["part_number"])


def _wrong_etag(upload: dict[str, Any], content: bytes, sizes: Sizes) -> list[dict[str, Any]]:
    parts = put_parts(upload, content)
    parts[1] = {"part_number": 2, "etag": f'"{md5(b"something else")}"'}
    return parts


@pytest.mark.parametrize(
    "spoil", [_truncated, _missing, _wrong_etag], ids=["truncated", "missing", "wrong-etag"]
)
def test_complete_refuses_parts_that_do_not_make_the_file(
    backend: str, http_api: HttpApi, sizes: Sizes, store: Store, spoil: Any
) -> None:
    content = payload(sizes.file_size(3, tail=1234), seed=2)
    upload = initiate(http_api, content, sizes)
    parts = spoil(upload, content, sizes)

    response = http_api.complete(upload["id"], parts)

    body = assert_error(response, 400, "verification_failed")
    record = FileRecord.objects.get(pk=upload["id"])
    assert record.upload_status == Status.FAILED
    assert record.failure_reason
    assert body["detail"] == record.failure_reason
    assert not store.upload_alive(upload["upload_id"])
    assert store.object_bytes(record.storage_key) is None
    detail = http_api.call("GET", f"/v1/files/{upload['id']}").json()
    assert detail["upload_status"] == Status.FAILED
    assert detail["failure_reason"] == record.failure_reason


def test_oversized_part_never_completes(
    backend: str, http_api: HttpApi, sizes: Sizes, store: Store
) -> None:
    content = payload(sizes.file_size(2, tail=999), seed=3)
    upload = initiate(http_api, content, sizes)
    parts = put_parts(upload, content, skip=(1,))
    too_big = content[: sizes.part] + b"x"

    put = HttpApi.put(upload["presigned_urls"][0]["url"], too_big)

    if backend == "local":
        # The app is the part endpoint: it refuses before storing anything.
        assert_error(put, 413, "too_large")
        assert [p.name for p in store.local_part_files(upload["upload_id"])] == [
            f"00002.{md5(content[sizes.part :])}"
        ]
        assert FileRecord.objects.get(pk=upload["id"]).upload_status == Status.UPLOADING
        return
    # S3 takes any part up to 5 GiB; complete must refuse what the store holds.
    assert put.status_code == 200, put.text
    response = http_api.complete(
        upload["id"], [{"part_number": 1, "etag": put.headers["ETag"]}, *parts]
    )
    assert_error(response, 400, "verification_failed")
    record = FileRecord.objects.get(pk=upload["id"])
    assert record.upload_status == Status.FAILED
    assert "Part 1" in record.failure_reason
    assert not store.upload_alive(upload["upload_id"])
    assert store.object_bytes(record.storage_key) is None


def test_s3_list_parts_reads_every_page(s3: Any) -> None:
    key = "uploads/pagination-check"
    upload_id = s3.client.create_multipart_upload(Bucket=s3.bucket, Key=key)["UploadId"]
    count = 1_005  # ListParts answers at most 1,000 parts a page.

    def send(number: int) -> tuple[int, str]:
        body = f"part {number}".encode()
        response = s3.client.upload_part(
            Bucket=s3.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body
        )
        assert response["ETag"].strip('"') == md5(body)
        return number, response["ETag"]

    with ThreadPoolExecutor(max_workers=16) as pool:
        sent = dict(pool.map(send, range(1, count + 1)))

    handler = S3StorageHandler(storages["default"])
    pages: list[Any] = []
    handler.client.meta.events.register(
        "before-call.s3.ListParts", lambda **kwargs: pages.append(kwargs)
    )
    parts = handler.list_parts(MultipartUpload(file_id="x", key=key, upload_id=upload_id))

    assert len(pages) >= 2
    assert [p.part_number for p in parts] == list(range(1, count + 1))
    assert {p.part_number: p.etag for p in parts} == sent
    assert all(p.size == len(f"part {p.part_number}") for p in parts)
