"""What only a store that checks can show. The verifying S3 store refuses every URL of ours that
was tampered with, has expired, or is used for another part or upload, and every part whose body
does not match its signed checksum; it takes the URLs we did not touch. Each case runs with URLs
from the fast signer and from botocore (`UPLOADS_FAST_PRESIGN`).

Parts are small (1 KiB): S3's 5 MiB minimum only matters at complete, which these tests do not
reach but for a one-part file."""

from __future__ import annotations

import base64
import hashlib
import re
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests

from tests.helpers import ApiClient, initiate
from uploads.storage.s3_presign import UploadPartPresigner

from .support import KIB, md5, payload

pytestmark = pytest.mark.django_db
PART = KIB
UPLOADS = "/v1/files/uploads"


@pytest.fixture(params=["fast", "botocore"])
def signer(request: pytest.FixtureRequest, settings: Any, verifying: Any) -> str:
    """Which signer makes the part URLs; the store is the verifying one, with 1 KiB parts."""
    settings.UPLOADS_FAST_PRESIGN = request.param == "fast"
    settings.UPLOADS_MIN_PART_SIZE = PART
    return str(request.param)


@pytest.fixture
def botocore_signed(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The part numbers botocore itself signed (the rest came from the fast signer)."""
    signed: list[int] = []
    original = UploadPartPresigner._botocore_url

    def spy(self: UploadPartPresigner, part_number: int, size: int, checksum: str) -> str:
        signed.append(part_number)
        return original(self, part_number, size, checksum)

    monkeypatch.setattr(UploadPartPresigner, "_botocore_url", spy)
    return signed


def chunk(content: bytes, number: int) -> bytes:
    return content[(number - 1) * PART : number * PART]


def url_of(upload: dict[str, Any], number: int) -> str:
    return str(upload["presigned_urls"][number - 1]["url"])


def query_value(url: str, name: str) -> str:
    """The raw (still percent-encoded) value of query parameter `name`."""
    query = urlsplit(url).query
    return next(v for k, _, v in (pair.partition("=") for pair in query.split("&")) if k == name)


def with_query(url: str, name: str, value: str) -> str:
    """`url` with the raw value of its query parameter `name` replaced, all else byte for byte."""
    parts = urlsplit(url)
    pairs = [pair.partition("=") for pair in parts.query.split("&")]
    query = "&".join(f"{k}={value if k == name else v}" for k, _, v in pairs)
    changed = urlunsplit(parts._replace(query=query))
    assert changed != url
    return changed


def other_char(value: str) -> str:
    """`value` with its last character changed."""
    return value[:-1] + ("0" if value[-1] != "0" else "1")


def s3_error(response: requests.Response, status: int) -> str:
    """The S3 error code of a refusal with `status`."""
    assert response.status_code == status, response.text
    found = re.search(r"<Code>([^<]+)</Code>", response.text)
    assert found, response.text
    return found.group(1)


def stored_parts(api: ApiClient, upload: dict[str, Any]) -> dict[int, str]:
    """What the store holds for the upload, through the app's own `…/parts`."""
    response = api.get(f"{UPLOADS}/{upload['id']}/parts")
    assert response.status_code == 200, response.content
    return {p["part_number"]: p["etag"].strip('"') for p in response.json()["parts"]}


def put(url: str, body: bytes, headers: dict[str, str] | None = None) -> requests.Response:
    return requests.put(url, data=body, headers=headers or {}, timeout=30)


def test_the_setting_chooses_the_signer(api, signer, botocore_signed):
    content = payload(3 * PART, seed=1)

    upload = initiate(api, len(content))

    # The fast signer asks botocore for part 1 only, to learn the layout and check itself.
    assert botocore_signed == ([1] if signer == "fast" else [1, 2, 3])
    for number in (1, 2, 3):
        assert put(url_of(upload, number), chunk(content, number)).status_code == 200
    assert stored_parts(api, upload) == {n: md5(chunk(content, n)) for n in (1, 2, 3)}


def test_a_changed_signature_is_refused_and_nothing_is_stored(api, signer):
    content = payload(2 * PART, seed=2)
    upload = initiate(api, len(content))
    url = url_of(upload, 1)
    tampered = with_query(url, "X-Amz-Signature", other_char(query_value(url, "X-Amz-Signature")))

    assert s3_error(put(tampered, chunk(content, 1)), 403) == "SignatureDoesNotMatch"

    assert stored_parts(api, upload) == {}
    assert put(url_of(upload, 1), chunk(content, 1)).status_code == 200


def test_an_expired_url_is_refused_and_presign_gives_one_that_works(api, signer, settings):
    content = payload(2 * PART, seed=3)
    # Signed with no lifetime at all: expired by the time it arrives.
    settings.FILE_UPLOAD_PRESIGNED_URL_EXPIRATION = 0
    upload = initiate(api, len(content))

    refused = put(url_of(upload, 2), chunk(content, 2))

    assert s3_error(refused, 403) == "AccessDenied"
    assert "expired" in refused.text
    assert stored_parts(api, upload) == {}
    settings.FILE_UPLOAD_PRESIGNED_URL_EXPIRATION = 3600
    fresh = api.post(f"{UPLOADS}/{upload['id']}/presign", {"part_numbers": [2]})
    assert fresh.status_code == 200, fresh.content
    [target] = fresh.json()["presigned_urls"]
    assert put(target["url"], chunk(content, 2)).status_code == 200
    assert stored_parts(api, upload) == {2: md5(chunk(content, 2))}


def test_a_part_url_used_for_another_part_is_refused(api, signer):
    content = payload(3 * PART, seed=4)
    upload = initiate(api, len(content))
    part_2_as_3 = with_query(url_of(upload, 2), "partNumber", "3")

    assert s3_error(put(part_2_as_3, chunk(content, 3)), 403) == "SignatureDoesNotMatch"

    assert stored_parts(api, upload) == {}


def test_a_url_with_another_upload_id_is_refused(api, signer):
    content = payload(2 * PART, seed=5)
    upload = initiate(api, len(content))
    other = initiate(api, len(content))
    url = url_of(upload, 1)
    # Another upload of the same user, and an id no upload has.
    for upload_id in (query_value(url_of(other, 1), "uploadId"), other_char(upload["upload_id"])):
        moved = with_query(url, "uploadId", upload_id)

        assert s3_error(put(moved, chunk(content, 1)), 403) == "SignatureDoesNotMatch"

    assert stored_parts(api, upload) == {}
    assert stored_parts(api, other) == {}


def test_a_download_url_with_another_file_name_is_refused(api, signer):
    content = payload(PART // 2, seed=6)
    upload = initiate(api, len(content), file_name="report.txt")
    sent = put(url_of(upload, 1), content)
    assert sent.status_code == 200, sent.text
    parts = [{"part_number": 1, "etag": sent.headers["ETag"]}]
    done = api.post(f"{UPLOADS}/{upload['id']}/complete", {"parts": parts})
    assert done.status_code == 200, done.content
    redirect = api.get(f"/v1/files/{upload['id']}/download")
    assert redirect.status_code == 302, redirect.content
    url = redirect["Location"]

    fetched = requests.get(url, timeout=30)
    assert fetched.status_code == 200, fetched.text
    assert fetched.content == content
    assert "report.txt" in fetched.headers["Content-Disposition"]
    name = "response-content-disposition"
    renamed = with_query(url, name, query_value(url, name).replace("report.txt", "x.html"))
    assert s3_error(requests.get(renamed, timeout=30), 403) == "SignatureDoesNotMatch"


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def crc32_b64(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


@pytest.mark.parametrize("algorithm", ["SHA256", "CRC32"])
def test_a_part_that_does_not_match_its_checksum_is_refused(api, signer, algorithm):
    digest = {"SHA256": sha256_b64, "CRC32": crc32_b64}[algorithm]
    content = payload(2 * PART, seed=7)
    checksums = {str(n): digest(chunk(content, n)) for n in (1, 2)}
    upload = initiate(api, len(content), checksum_algorithm=algorithm, checksums=checksums)
    target = upload["presigned_urls"][0]
    body = chunk(content, 1)
    flipped = bytes([body[0] ^ 1]) + body[1:]

    assert s3_error(put(target["url"], flipped, target["headers"]), 400) == "BadDigest"
    # Without the checksum header the request is not the one that was signed.
    assert s3_error(put(target["url"], body), 403) == "SignatureDoesNotMatch"

    assert stored_parts(api, upload) == {}
    assert put(target["url"], body, target["headers"]).status_code == 200
    assert stored_parts(api, upload) == {1: md5(body)}


def test_eleven_hundred_fast_signed_parts_are_accepted_and_listed(
    api, verifying, settings, botocore_signed
):
    # ListParts answers at most 1,000 parts a page: `…/parts` must read past the first page.
    settings.UPLOADS_FAST_PRESIGN = True
    settings.UPLOADS_MIN_PART_SIZE = PART
    count = 1_100
    content = payload(count * PART, seed=8)

    upload = initiate(api, len(content))

    assert [t["part_number"] for t in upload["presigned_urls"]] == list(range(1, count + 1))
    assert botocore_signed == [1]  # every other URL came from the fast signer

    def send(number: int) -> int:
        return put(url_of(upload, number), chunk(content, number)).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(send, range(1, count + 1)))

    assert statuses == [200] * count
    assert stored_parts(api, upload) == {n: md5(chunk(content, n)) for n in range(1, count + 1)}


@pytest.mark.parametrize("change", [+1, -1], ids=["longer", "shorter"])
def test_a_body_of_another_length_than_the_part_is_refused(api, signer, change):
    # Each URL signs its part's exact content-length: quota and storage cannot be bypassed by
    # sending more than was planned, and a short body cannot pass for a whole part.
    content = payload(2 * PART, seed=9)
    upload = initiate(api, len(content))
    body = chunk(content, 1)
    other = body + b"x" if change > 0 else body[:-1]

    assert s3_error(put(url_of(upload, 1), other), 403) == "SignatureDoesNotMatch"

    assert stored_parts(api, upload) == {}
    assert put(url_of(upload, 1), body).status_code == 200
    assert stored_parts(api, upload) == {1: md5(body)}
