"""One contract, every store: the same HTTP flow against `live_server`, parts PUT as bare
requests to the URLs the API returns (the app's /local/parts/ URLs, or presigned URLs to moto
and to the verifying S3 store, which checks their signatures).

Only the part size differs per backend (S3 needs 5 MiB for every part but the last)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.core.files.storage import storages

from tests.helpers import AUTH_MODES, HttpApi, Store, assert_error
from uploads.models import FileRecord
from uploads.storage.base import MultipartUpload
from uploads.storage.s3 import S3StorageHandler

from .support import Sizes, download, local_parts, md5, payload, put_parts

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


def _missing(upload: dict[str, Any], content: bytes, sizes: Sizes) -> list[dict[str, Any]]:
    parts = put_parts(upload, content, skip=(2,))
    # The client claims part 2 with the ETag it would have had; the store never received it.
    claimed = {"part_number": 2, "etag": md5(content[sizes.part : 2 * sizes.part])}
    return sorted([*parts, claimed], key=lambda p: p["part_number"])


def _wrong_etag(upload: dict[str, Any], content: bytes, sizes: Sizes) -> list[dict[str, Any]]:
    parts = put_parts(upload, content)
    parts[1] = {"part_number": 2, "etag": f'"{md5(b"something else")}"'}
    return parts


def _other_bytes(upload: dict[str, Any], content: bytes, sizes: Sizes) -> list[dict[str, Any]]:
    # Part 2 holds bytes of the right length from another file; the client lists the ETag of
    # its own part 2, which the store does not hold.
    parts = put_parts(upload, content)
    other = HttpApi.put(upload["presigned_urls"][1]["url"], payload(sizes.part, seed=99))
    assert other.status_code == 200, other.text
    return parts


@pytest.mark.parametrize("http_api", AUTH_MODES, indirect=True)
@pytest.mark.parametrize(
    "spoil", [_missing, _wrong_etag, _other_bytes], ids=["missing", "wrong-etag", "other-bytes"]
)
def test_a_part_list_the_store_disagrees_with_keeps_the_upload_open(
    backend: str, http_api: HttpApi, sizes: Sizes, store: Store, spoil: Any
) -> None:
    content = payload(sizes.file_size(3, tail=1234), seed=2)
    upload = initiate(http_api, content, sizes)
    parts = spoil(upload, content, sizes)

    response = http_api.complete(upload["id"], parts)

    body = assert_error(response, 400, "parts_mismatch")
    assert body["extra"] == {"parts": [2], "upload_status": "uploading"}
    assert body["detail"] == (
        "Part 2 does not match what the store holds; send it again, then complete."
    )
    record = FileRecord.objects.get(pk=upload["id"])
    assert (record.upload_status, record.failure_reason) == (Status.UPLOADING, "")
    assert store.upload_alive(upload["upload_id"])
    assert store.object_bytes(record.storage_key) is None
    # Sending the named part again, then completing, gives exactly the file.
    again = put_parts({**upload, "presigned_urls": [upload["presigned_urls"][1]]}, content)
    fixed = [parts[0], *again, parts[2]]
    done = http_api.complete(upload["id"], fixed)
    assert done.status_code == 200, done.text
    assert download(http_api, upload["id"]).content == content
    assert store.object_bytes(record.storage_key) == content


@pytest.mark.parametrize("delta", [1, -1], ids=["longer", "shorter"])
def test_a_part_body_of_another_length_never_reaches_the_file(
    backend: str, http_api: HttpApi, sizes: Sizes, store: Store, delta: int
) -> None:
    """Each part URL takes exactly the planned length.

    The local part endpoint refuses any other length before reading the body, and S3 refuses it
    because the length is signed into the URL (`content-length` in X-Amz-SignedHeaders), as the
    verifying store shows. moto does not verify signatures and takes the body: there the check at
    complete catches the part's size, names it, and the upload stays open for the right bytes.
    """
    content = payload(sizes.file_size(2, tail=999), seed=3)
    upload = initiate(http_api, content, sizes)
    parts = put_parts(upload, content, skip=(1,))
    url = upload["presigned_urls"][0]["url"]
    body = content[: sizes.part + delta] if delta < 0 else content[: sizes.part] + b"x"

    put = HttpApi.put(url, body)

    if backend == "local":
        assert_error(put, 413 if delta > 0 else 400, "too_large" if delta > 0 else "invalid")
        assert "Part 1 must be exactly" in put.json()["detail"]
        assert local_parts(upload["upload_id"]) == [(2, md5(content[sizes.part :]))]
        assert len(store.local_part_files(upload["upload_id"])) == 1, "no temp file left"
        wrong = [{"part_number": 1, "etag": md5(body)}, *parts]
    elif backend == "verifying":
        assert put.status_code == 403, put.text
        assert "<Code>SignatureDoesNotMatch</Code>" in put.text
        wrong = [{"part_number": 1, "etag": md5(body)}, *parts]
    else:
        assert "X-Amz-SignedHeaders=content-length%3Bhost&" in url
        assert put.status_code == 200, put.text
        wrong = [{"part_number": 1, "etag": put.headers["ETag"]}, *parts]
    response = http_api.complete(upload["id"], wrong)
    assert_error(response, 400, "parts_mismatch")
    assert response.json()["extra"]["parts"] == [1]
    record = FileRecord.objects.get(pk=upload["id"])
    assert record.upload_status == Status.UPLOADING
    assert store.object_bytes(record.storage_key) is None
    fixed = put_parts({**upload, "presigned_urls": [upload["presigned_urls"][0]]}, content)
    assert http_api.complete(upload["id"], [*fixed, *parts]).status_code == 200
    assert download(http_api, upload["id"]).content == content


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
