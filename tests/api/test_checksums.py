"""Opt-in per-part checksums: signed into S3 URLs, verified by the local part endpoint."""

from __future__ import annotations

import base64
import hashlib
import zlib

import pytest
import requests

from tests.helpers import ApiClient, HttpApi
from uploads.models import FileRecord

PART = 2048


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def crc32_b64(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


DIGESTS = {"SHA256": sha256_b64, "CRC32": crc32_b64}
CONTENT = bytes(range(256)) * 20  # 5,120 bytes: three parts of 2 KiB


def parts_of(content: bytes, size: int) -> dict[int, bytes]:
    return {i // size + 1: content[i : i + size] for i in range(0, len(content), size)}


@pytest.mark.parametrize("algorithm", ["SHA256", "CRC32"])
def test_local_parts_with_matching_checksums_complete(api, algorithm):
    chunks = parts_of(CONTENT, PART)
    checksums = {str(n): DIGESTS[algorithm](body) for n, body in chunks.items()}
    init = api.post(
        "/v1/files/uploads",
        {
            "file_name": "c.bin",
            "file_size": len(CONTENT),
            "part_size": PART,
            "checksum_algorithm": algorithm.lower(),
            "checksums": checksums,
        },
    )
    assert init.status_code == 201, init.content
    body = init.json()
    assert body["checksum_algorithm"] == algorithm
    header = f"x-amz-checksum-{algorithm.lower()}"
    parts = []
    for target in body["presigned_urls"]:
        n = target["part_number"]
        assert target["headers"] == {header: checksums[str(n)]}
        response = api.put_part(target["url"], chunks[n])
        assert response.status_code == 200, response.content
        parts.append({"part_number": n, "etag": response["ETag"]})
    done = api.post(f"/v1/files/uploads/{body['id']}/complete", {"parts": parts})
    assert done.status_code == 200, done.content
    assert done.json()["upload_status"] == "completed"


@pytest.mark.parametrize("algorithm", ["SHA256", "CRC32"])
def test_local_part_with_wrong_bytes_is_refused_and_not_kept(api, algorithm, settings):
    chunks = parts_of(CONTENT, PART)
    checksums = {str(n): DIGESTS[algorithm](body) for n, body in chunks.items()}
    body = api.post(
        "/v1/files/uploads",
        {
            "file_name": "c.bin",
            "file_size": len(CONTENT),
            "part_size": PART,
            "checksum_algorithm": algorithm,
            "checksums": checksums,
        },
    ).json()
    target = body["presigned_urls"][0]
    corrupted = b"X" + chunks[1][1:]
    response = api.put_part(target["url"], corrupted)
    assert response.status_code == 400
    assert response.json()["code"] == "checksum_mismatch"
    parts = api.get(f"/v1/files/uploads/{body['id']}/parts").json()
    assert parts["parts"] == []
    # The right bytes still go through on the same link.
    assert api.put_part(target["url"], chunks[1]).status_code == 200


def test_lazy_signing_with_checksums_needs_one_per_part(api):
    chunks = parts_of(CONTENT, PART)
    body = api.post(
        "/v1/files/uploads",
        {
            "file_name": "c.bin",
            "file_size": len(CONTENT),
            "part_size": PART,
            "checksum_algorithm": "SHA256",
        },
    ).json()
    assert body["presigned_urls"] == []
    missing = api.post(f"/v1/files/uploads/{body['id']}/presign", {"part_numbers": [1, 2]})
    assert missing.status_code == 400
    assert missing.json()["extra"]["missing"] == [1, 2]
    signed = api.post(
        f"/v1/files/uploads/{body['id']}/presign",
        {"part_numbers": [2], "checksums": {"2": sha256_b64(chunks[2])}},
    )
    assert signed.status_code == 200, signed.content
    [target] = signed.json()["presigned_urls"]
    assert target["headers"] == {"x-amz-checksum-sha256": sha256_b64(chunks[2])}
    assert api.put_part(target["url"], chunks[2]).status_code == 200


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"checksum_algorithm": "MD5"}, "checksum_algorithm must be one of"),
        ({"checksums": {"1": sha256_b64(b"x")}}, "need a checksum_algorithm"),
        ({"checksum_algorithm": "SHA256", "checksums": {"1": "not base64!"}}, "not a base64"),
        ({"checksum_algorithm": "SHA256", "checksums": {"1": crc32_b64(b"x")}}, "not a base64"),
        ({"checksum_algorithm": "SHA256", "checksums": {"9": sha256_b64(b"x")}}, "not a part"),
    ],
)
def test_bad_checksum_input_is_a_clear_400(api, fields, message):
    response = api.post(
        "/v1/files/uploads",
        {"file_name": "c.bin", "file_size": len(CONTENT), "part_size": PART, **fields},
    )
    assert response.status_code == 400, response.content
    assert message in response.json()["detail"]
    assert not FileRecord.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_s3_signs_the_checksum_into_the_url(s3, live_server, user):
    """moto does not verify checksums, so this proves the URL binds them; AWS does the rest."""
    client = HttpApi(live_server.url, user)
    first = b"a" * (5 * 1024 * 1024)
    last = b"tail"
    checksums = {"1": sha256_b64(first), "2": sha256_b64(last)}
    body = client.initiate(
        len(first) + len(last),
        part_size=len(first),
        checksum_algorithm="SHA256",
        checksums=checksums,
    )
    created = s3.client.list_multipart_uploads(Bucket=s3.bucket)["Uploads"]
    assert [u["UploadId"] for u in created] == [body["upload_id"]]
    parts = []
    for target, data in zip(body["presigned_urls"], [first, last], strict=True):
        assert "X-Amz-SignedHeaders=content-length%3Bhost%3Bx-amz-checksum-sha256" in target["url"]
        response = requests.put(target["url"], data=data, headers=target["headers"], timeout=30)
        assert response.status_code == 200, response.text
        parts.append({"part_number": target["part_number"], "etag": response.headers["ETag"]})
    done = client.complete(body["id"], parts)
    assert done.status_code == 200, done.text
    assert done.json()["upload_status"] == "completed"


@pytest.fixture(params=["jwt", "session"])
def either_auth(request, user):
    """The same calls with a bearer token, and with the portal's signed-in session."""
    if request.param == "jwt":
        return ApiClient(user)
    client = ApiClient()
    client.client.force_login(user)
    return client


def test_parts_list_says_the_algorithm_and_each_parts_checksum(either_auth):
    chunks = parts_of(CONTENT, PART)
    checksums = {str(n): sha256_b64(body) for n, body in chunks.items()}
    body = either_auth.post(
        "/v1/files/uploads",
        {
            "file_name": "c.bin",
            "file_size": len(CONTENT),
            "part_size": PART,
            "checksum_algorithm": "SHA256",
            "checksums": checksums,
        },
    ).json()
    for target in body["presigned_urls"][:2]:
        n = target["part_number"]
        assert either_auth.put_part(target["url"], chunks[n]).status_code == 200

    listed = either_auth.get(f"/v1/files/uploads/{body['id']}/parts").json()

    assert listed["checksum_algorithm"] == "SHA256"
    assert [p["part_number"] for p in listed["parts"]] == [1, 2]
    for part in listed["parts"]:
        # A store that reports part checksums gives the part's own; one that does not, "".
        assert part["checksum"] in ("", checksums[str(part["part_number"])])


def test_parts_list_of_an_upload_without_checksums(either_auth):
    body = either_auth.post(
        "/v1/files/uploads", {"file_name": "c.bin", "file_size": len(CONTENT), "part_size": PART}
    ).json()
    either_auth.put_part(body["presigned_urls"][0]["url"], CONTENT[:PART])

    listed = either_auth.get(f"/v1/files/uploads/{body['id']}/parts").json()

    assert listed["checksum_algorithm"] == ""
    assert [(p["part_number"], p["checksum"]) for p in listed["parts"]] == [(1, "")]


def test_parts_schema_carries_the_stores_part_checksums(user):
    from uploads.schemas import UploadPartsOut
    from uploads.services.uploads import UploadParts
    from uploads.storage.base import StoredPart

    record = FileRecord.objects.create(
        created_by=user,
        file_name="c.bin",
        file_size=len(CONTENT),
        part_size=PART,
        total_parts=3,
        checksum_algorithm="SHA256",
        upload_status=FileRecord.Status.UPLOADING,
    )
    stored = [StoredPart(1, PART, '"e1"', checksum=sha256_b64(b"one")), StoredPart(2, PART, "e2")]

    out = UploadPartsOut.from_orm(UploadParts.of(record, stored)).dict()

    assert out["checksum_algorithm"] == "SHA256"
    assert [(p["part_number"], p["checksum"]) for p in out["parts"]] == [
        (1, sha256_b64(b"one")),
        (2, ""),
    ]
