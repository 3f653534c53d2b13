"""The fast UploadPart signer must produce exactly botocore's URLs, and the store must take them."""

from __future__ import annotations

import datetime
from typing import Any
from unittest import mock

import boto3
import botocore.auth
import pytest
import requests
from botocore.config import Config

from uploads.storage.s3_presign import UploadPartPresigner

FIXED_CLOCK = datetime.datetime(2026, 11, 24, 7, 30, 0)
KEY = "uploads/2026/11/24/name with space+plus/ünï"
UPLOAD_ID = "a/b+c=d~e"


def make_client(*, endpoint: str | None, style: str, token: str | None = None) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="eu-west-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        aws_session_token=token,
        config=Config(signature_version="s3v4", s3={"addressing_style": style}),
    )


def botocore_url(client: Any, part_number: int, expires_in: int = 3600) -> str:
    return client.generate_presigned_url(  # type: ignore[no-any-return]
        "upload_part",
        Params={
            "Bucket": "my-bucket",
            "Key": KEY,
            "UploadId": UPLOAD_ID,
            "PartNumber": part_number,
        },
        ExpiresIn=expires_in,
        HttpMethod="PUT",
    )


@pytest.mark.parametrize(
    ("endpoint", "style", "token"),
    [
        ("http://127.0.0.1:9000", "path", None),
        ("https://minio.internal:9443", "path", "session/token+with=chars"),
        (None, "virtual", None),
        (None, "auto", "FQoGZXIvYXdzEBYaDH"),
    ],
    ids=["endpoint-path", "endpoint-https-session", "aws-virtual", "aws-auto-session"],
)
def test_urls_are_byte_identical_to_botocore(endpoint, style, token):
    client = make_client(endpoint=endpoint, style=style, token=token)
    with mock.patch.object(botocore.auth, "get_current_datetime", return_value=FIXED_CLOCK):
        signer = UploadPartPresigner(
            client, bucket="my-bucket", key=KEY, upload_id=UPLOAD_ID, expires_in=900
        )
        assert signer.is_fast
        numbers = [1, 2, 9, 10, 11, 99, 100, 101, 999, 1000, 5000, 9999, 10000]
        assert signer.urls(numbers) == [botocore_url(client, n, 900) for n in numbers]


def test_session_token_is_signed_into_the_url():
    client = make_client(endpoint=None, style="virtual", token="the-session-token")
    url = UploadPartPresigner(
        client, bucket="my-bucket", key=KEY, upload_id=UPLOAD_ID, expires_in=60
    ).url(7)
    assert "X-Amz-Security-Token=the-session-token" in url
    assert "partNumber=7" in url


def test_unknown_layout_falls_back_to_botocore():
    client = make_client(endpoint=None, style="virtual")
    with (
        mock.patch.object(botocore.auth, "get_current_datetime", return_value=FIXED_CLOCK),
        mock.patch.object(UploadPartPresigner, "_credentials", return_value=None),
    ):
        signer = UploadPartPresigner(
            client, bucket="my-bucket", key=KEY, upload_id=UPLOAD_ID, expires_in=60
        )
        assert not signer.is_fast
        assert signer.url(3) == botocore_url(client, 3, 60)


def test_a_disagreeing_signature_falls_back_to_botocore():
    client = make_client(endpoint=None, style="virtual")
    with (
        mock.patch.object(botocore.auth, "get_current_datetime", return_value=FIXED_CLOCK),
        mock.patch.object(UploadPartPresigner, "_signature", return_value="0" * 64),
    ):
        signer = UploadPartPresigner(
            client, bucket="my-bucket", key=KEY, upload_id=UPLOAD_ID, expires_in=60
        )
        assert not signer.is_fast
        assert signer.url(4) == botocore_url(client, 4, 60)


def test_the_store_accepts_fast_urls(s3):
    upload = s3.client.create_multipart_upload(Bucket=s3.bucket, Key="accept/me")
    signer = UploadPartPresigner(
        s3.client, bucket=s3.bucket, key="accept/me", upload_id=upload["UploadId"], expires_in=60
    )
    assert signer.is_fast
    bodies = {1: b"a" * (5 * 1024 * 1024), 2: b"tail"}
    parts = []
    for number, body in bodies.items():
        response = requests.put(signer.url(number), data=body, timeout=30)
        assert response.status_code == 200, response.text
        parts.append({"PartNumber": number, "ETag": response.headers["ETag"]})
    s3.client.complete_multipart_upload(
        Bucket=s3.bucket,
        Key="accept/me",
        UploadId=upload["UploadId"],
        MultipartUpload={"Parts": parts},
    )
    stored = s3.client.get_object(Bucket=s3.bucket, Key="accept/me")["Body"].read()
    assert stored == bodies[1] + bodies[2]
