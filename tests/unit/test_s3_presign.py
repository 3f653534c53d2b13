"""The fast UploadPart signer must produce exactly botocore's URLs, and the store must take them.

Every URL signs the part's exact length (`content-length`) and, with a checksum algorithm, its
checksum (`x-amz-checksum-*`): S3 then refuses a body of another length or with other bytes.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import zlib
from typing import Any
from unittest import mock
from urllib.parse import parse_qs, urlsplit

import boto3
import botocore.auth
import pytest
import requests
from botocore.config import Config

from uploads.storage.s3_presign import UploadPartPresigner

FIXED_CLOCK = datetime.datetime(2026, 11, 24, 7, 30, 0)
KEY = "uploads/2026/11/24/name with space+plus/ünï"
UPLOAD_ID = "a/b+c=d~e"
MIB = 1024 * 1024
PART = 8 * MIB
NUMBERS = [1, 2, 9, 10, 11, 99, 100, 101, 999, 1000, 5000, 9999, 10000]
LAST = NUMBERS[-1]


def make_client(*, endpoint: str | None, style: str, token: str | None = None) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="eu-west-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        aws_session_token=token,
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": style},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )


def checksum(algorithm: str, number: int) -> str:
    data = f"part {number}".encode()
    if algorithm == "SHA256":
        digest = hashlib.sha256(data).digest()
    else:
        digest = zlib.crc32(data).to_bytes(4, "big")
    return base64.b64encode(digest).decode()


def size_of(number: int) -> int:
    # Every part 8 MiB but the last, which is short; part 99 is empty (a zero-byte file's only
    # part is), and part 5000 is S3's largest.
    return {LAST: 1234, 99: 0, 5000: 5 * 1024 * MIB}.get(number, PART)


def botocore_url(
    client: Any, number: int, *, size: int, algorithm: str = "", value: str = "", expires: int
) -> str:
    params: dict[str, Any] = {
        "Bucket": "my-bucket",
        "Key": KEY,
        "UploadId": UPLOAD_ID,
        "PartNumber": number,
        "ContentLength": size,
    }
    if algorithm:
        params[f"Checksum{algorithm}"] = value
    return client.generate_presigned_url(  # type: ignore[no-any-return]
        "upload_part", Params=params, ExpiresIn=expires, HttpMethod="PUT"
    )


def signer_for(client: Any, *, algorithm: str = "", expires: int = 900) -> UploadPartPresigner:
    return UploadPartPresigner(
        client,
        bucket="my-bucket",
        key=KEY,
        upload_id=UPLOAD_ID,
        expires_in=expires,
        checksum_algorithm=algorithm,
    )


def signed_headers(url: str) -> list[str]:
    return parse_qs(urlsplit(url).query)["X-Amz-SignedHeaders"][0].split(";")


CLIENTS = pytest.mark.parametrize(
    ("endpoint", "style", "token"),
    [
        ("http://127.0.0.1:9000", "path", None),
        ("https://minio.internal:9443", "path", "session/token+with=chars"),
        (None, "virtual", None),
        (None, "auto", "FQoGZXIvYXdzEBYaDH"),
    ],
    ids=["endpoint-path", "endpoint-https-session", "aws-virtual", "aws-auto-session"],
)
ALGORITHMS = pytest.mark.parametrize(
    "algorithm", ["", "SHA256", "CRC32"], ids=["plain", "sha256", "crc32"]
)


@CLIENTS
@ALGORITHMS
def test_urls_are_byte_identical_to_botocore(endpoint, style, token, algorithm):
    client = make_client(endpoint=endpoint, style=style, token=token)
    with mock.patch.object(botocore.auth, "get_current_datetime", return_value=FIXED_CLOCK):
        signer = signer_for(client, algorithm=algorithm)
        ours = [
            signer.url(n, size=size_of(n), checksum=checksum(algorithm, n) if algorithm else "")
            for n in NUMBERS
        ]
        assert signer.is_fast
        theirs = [
            botocore_url(
                client,
                n,
                size=size_of(n),
                algorithm=algorithm,
                value=checksum(algorithm, n) if algorithm else "",
                expires=900,
            )
            for n in NUMBERS
        ]
    assert ours == theirs


@ALGORITHMS
def test_every_url_signs_the_part_length_and_checksum(algorithm):
    client = make_client(endpoint=None, style="virtual")
    expected = sorted(
        ["content-length", "host", *([f"x-amz-checksum-{algorithm.lower()}"] if algorithm else [])]
    )
    with mock.patch.object(botocore.auth, "get_current_datetime", return_value=FIXED_CLOCK):
        signer = signer_for(client, algorithm=algorithm)
        value = checksum(algorithm, 2) if algorithm else ""
        first = signer.url(1, size=PART, checksum=checksum(algorithm, 1) if algorithm else "")
        fast = signer.url(2, size=PART, checksum=value)
        assert signer.is_fast
        # A URL binds its length: the one botocore signs for a byte more is another URL, and
        # S3 answers 403 SignatureDoesNotMatch to a body whose length is not the signed one.
        longer = botocore_url(
            client, 2, size=PART + 1, algorithm=algorithm, value=value, expires=900
        )
    assert signed_headers(first) == signed_headers(fast) == expected
    assert fast != longer
    assert fast.split("X-Amz-Signature=")[0] == longer.split("X-Amz-Signature=")[0]
    if algorithm:
        other = checksum(algorithm, 3)
        with mock.patch.object(botocore.auth, "get_current_datetime", return_value=FIXED_CLOCK):
            assert signer.url(2, size=PART, checksum=other) != fast


def test_session_token_is_signed_into_the_url():
    client = make_client(endpoint=None, style="virtual", token="the-session-token")
    signer = signer_for(client, expires=60)
    signer.url(1, size=PART)
    url = signer.url(7, size=PART)
    assert signer.is_fast
    assert "X-Amz-Security-Token=the-session-token" in url
    assert "partNumber=7" in url


@ALGORITHMS
def test_unknown_layout_falls_back_to_botocore(algorithm):
    client = make_client(endpoint=None, style="virtual")
    value = checksum(algorithm, 3) if algorithm else ""
    with (
        mock.patch.object(botocore.auth, "get_current_datetime", return_value=FIXED_CLOCK),
        mock.patch.object(UploadPartPresigner, "_credentials", return_value=None),
    ):
        signer = signer_for(client, algorithm=algorithm, expires=60)
        signer.url(1, size=PART, checksum=checksum(algorithm, 1) if algorithm else "")
        assert not signer.is_fast
        assert signer.url(3, size=99, checksum=value) == botocore_url(
            client, 3, size=99, algorithm=algorithm, value=value, expires=60
        )


@ALGORITHMS
def test_a_disagreeing_signature_falls_back_to_botocore(algorithm):
    client = make_client(endpoint=None, style="virtual")
    value = checksum(algorithm, 4) if algorithm else ""
    with (
        mock.patch.object(botocore.auth, "get_current_datetime", return_value=FIXED_CLOCK),
        mock.patch.object(UploadPartPresigner, "_signature", return_value="0" * 64),
    ):
        signer = signer_for(client, algorithm=algorithm, expires=60)
        signer.url(1, size=PART, checksum=checksum(algorithm, 1) if algorithm else "")
        assert not signer.is_fast
        assert signer.url(4, size=PART, checksum=value) == botocore_url(
            client, 4, size=PART, algorithm=algorithm, value=value, expires=60
        )


@pytest.mark.parametrize("algorithm", ["", "SHA256"], ids=["plain", "sha256"])
def test_the_store_accepts_fast_urls(s3, algorithm):
    """moto takes what the fast signer signs, exact lengths and checksum headers included.

    moto does not verify signatures, so a body of another length would be taken here too:
    that the length is in the signature is proven against botocore above, and the refusal
    itself on local disk (tests/integration/test_local_part_endpoint.py) and on a verifying S3.
    """
    extra = {"ChecksumAlgorithm": algorithm} if algorithm else {}
    upload = s3.client.create_multipart_upload(Bucket=s3.bucket, Key="accept/me", **extra)
    signer = UploadPartPresigner(
        s3.client,
        bucket=s3.bucket,
        key="accept/me",
        upload_id=upload["UploadId"],
        expires_in=60,
        checksum_algorithm=algorithm,
    )
    bodies = {1: b"a" * (5 * MIB), 2: b"b" * (5 * MIB), 3: b"tail"}
    parts = []
    for number, body in bodies.items():
        value = base64.b64encode(hashlib.sha256(body).digest()).decode() if algorithm else ""
        headers = {"x-amz-checksum-sha256": value} if algorithm else {}
        url = signer.url(number, size=len(body), checksum=value)
        response = requests.put(url, data=body, headers=headers, timeout=30)
        assert response.status_code == 200, response.text
        part = {"PartNumber": number, "ETag": response.headers["ETag"]}
        if algorithm:
            part["ChecksumSHA256"] = value
        parts.append(part)
    assert signer.is_fast
    s3.client.complete_multipart_upload(
        Bucket=s3.bucket,
        Key="accept/me",
        UploadId=upload["UploadId"],
        MultipartUpload={"Parts": parts},
    )
    stored = s3.client.get_object(Bucket=s3.bucket, Key="accept/me")["Body"].read()
    assert stored == b"".join(bodies.values())
