"""A 10,000-part upload against a real S3 endpoint (moto over HTTP): every URL at once."""

from __future__ import annotations

import random
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tests.helpers import ApiClient

MIB = 1024 * 1024
PARTS = 10_000


@pytest.mark.django_db
def test_initiate_signs_ten_thousand_distinct_well_formed_urls(s3, user, settings):
    settings.MAX_FILE_UPLOAD_SIZE = PARTS * 5 * MIB
    api = ApiClient(user)
    response = api.post(
        "/v1/files/uploads",
        {"file_name": "huge.bin", "file_size": PARTS * 5 * MIB, "part_size": 5 * MIB},
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["total_parts"] == PARTS
    targets = body["presigned_urls"]
    assert [t["part_number"] for t in targets] == list(range(1, PARTS + 1))
    assert len({t["url"] for t in targets}) == PARTS

    key = body["id"].replace("-", "")
    for target in targets:
        url = urlsplit(target["url"])
        assert f"{url.scheme}://{url.netloc}" == s3.endpoint
        assert url.path.startswith(f"/{s3.bucket}/uploads/") and url.path.endswith(key)
        query = parse_qs(url.query)
        assert query["partNumber"] == [str(target["part_number"])]
        assert query["uploadId"] == [body["upload_id"]]
        assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
        # Every part is exactly 5 MiB, and the store refuses any other length.
        assert query["X-Amz-SignedHeaders"] == ["content-length;host"]
        assert len(query["X-Amz-Signature"][0]) == 64

    # A sample of URLs accepts real PUTs; the store lists exactly those parts.
    sample = sorted(random.Random(7).sample(range(1, PARTS + 1), 5))
    for number in sample:
        put = requests.put(targets[number - 1]["url"], data=b"p" * (5 * MIB), timeout=30)
        assert put.status_code == 200, put.text
        assert put.headers["ETag"]
    held = api.get(f"/v1/files/uploads/{body['id']}/parts").json()
    assert [p["part_number"] for p in held["parts"]] == sample
