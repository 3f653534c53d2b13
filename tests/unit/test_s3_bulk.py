"""The ListParts reader and CompleteMultipartUpload writer of s3_bulk, against botocore's own
parser and serializer on the same bytes (no server: tests/integration/test_s3_bulk.py runs them
against the stores)."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.parsers import RestXMLParser
from botocore.serialize import create_serializer

from tests.helpers import botocore_stored_part
from uploads.storage.base import CompletedPart, StorageError, StoredPart
from uploads.storage.s3_bulk import completion_xml, parse_list_parts

ETAG = '"c9a34cfc85d982698c6ac89f76071abd"'
S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"


@pytest.fixture(scope="module")
def model() -> Any:
    client = boto3.client(
        "s3", region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b"
    )
    return client.meta.service_model


def page(parts: str, *, truncated: bool = False, marker: str = "", ns: str = S3_NS) -> bytes:
    xmlns = f' xmlns="{ns}"' if ns else ""
    next_marker = f"<NextPartNumberMarker>{marker}</NextPartNumberMarker>" if marker else ""
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<ListPartsResult{xmlns}><Bucket>b</Bucket>'
        f"<Key>k</Key><UploadId>u</UploadId><PartNumberMarker>0</PartNumberMarker>{next_marker}"
        f"<MaxParts>1000</MaxParts><IsTruncated>{str(truncated).lower()}</IsTruncated>{parts}"
        "</ListPartsResult>"
    ).encode()


def part(number: int, *, modified: str = "2026-12-02T00:51:48.000Z", extra: str = "") -> str:
    return (
        f"<Part><PartNumber>{number}</PartNumber><LastModified>{modified}</LastModified>"
        f"<ETag>{ETAG}</ETag><Size>{5 * 1024 * 1024 + number}</Size>{extra}</Part>"
    )


def botocore_parts(model: Any, body: bytes, algorithm: str) -> list[StoredPart]:
    """What list_parts made of botocore's parse before s3_bulk."""
    shape = model.operation_model("ListParts").output_shape
    parsed = RestXMLParser().parse({"body": body, "headers": {}, "status_code": 200}, shape)
    return [botocore_stored_part(p, algorithm) for p in parsed.get("Parts", [])]


@pytest.mark.parametrize("ns", [S3_NS, ""], ids=["s3-namespace", "no-namespace"])
@pytest.mark.parametrize(
    "modified",
    [
        "2026-12-02T00:51:48.000Z",
        "2026-12-02T00:51:48.123456Z",
        "2026-12-02T00:51:48Z",
        "2026-12-02T02:51:48.5+02:00",
        "Wed, 02 Dec 2026 00:51:48 GMT",
    ],
)
def test_a_page_reads_as_botocore_reads_it(model: Any, ns: str, modified: str) -> None:
    checksum = "<ChecksumSHA256>n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=</ChecksumSHA256>"
    body = page(
        part(1, modified=modified, extra=checksum) + part(2, modified=modified) + part(3), ns=ns
    )
    for algorithm in ("", "SHA256", "CRC32"):
        parts, marker = parse_list_parts(body, algorithm)
        assert marker is None
        expected = botocore_parts(model, body, algorithm)
        assert parts == expected
        # Equal datetimes may still differ in offset; the stored instant and offset both match.
        assert [p.last_modified.utcoffset() for p in parts if p.last_modified] == [
            p.last_modified.utcoffset() for p in expected if p.last_modified
        ]
    assert parse_list_parts(body, "SHA256")[0][0].checksum.startswith("n4bQ")


def test_an_empty_page_and_a_truncated_page() -> None:
    assert parse_list_parts(page(""), "") == ([], None)
    parts, marker = parse_list_parts(page(part(7), truncated=True, marker="7"), "")
    assert [p.part_number for p in parts] == [7]
    assert marker == 7


@pytest.mark.parametrize(
    "body",
    [
        page(part(1), truncated=True),  # no marker: the next page cannot be asked for
        b"<ListPartsResult><Part><PartNumber>1</PartNumber></Part>",  # cut short
        page("<Part><PartNumber>1</PartNumber><ETag>x</ETag></Part>"),  # no Size
        page(part(1).replace("<Size>", "<Size>big")),
    ],
    ids=["truncated-without-marker", "cut-short", "missing-size", "bad-size"],
)
def test_a_page_that_cannot_be_read_is_a_storage_error(body: bytes) -> None:
    with pytest.raises(StorageError, match="list_parts"):
        parse_list_parts(body, "")


@pytest.mark.parametrize("algorithm", ["", "SHA256", "CRC32"])
def test_the_completion_body_is_byte_for_byte_botocores(model: Any, algorithm: str) -> None:
    parts = [
        CompletedPart(1, ETAG, "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg="),
        CompletedPart(2, '"odd&<etag>"', ""),
        CompletedPart(10_000, ETAG, "AAAAAA=="),
    ]

    def entry(part: CompletedPart) -> dict[str, object]:
        item: dict[str, object] = {"PartNumber": part.part_number, "ETag": part.etag}
        if algorithm and part.checksum:
            item[f"Checksum{algorithm}"] = part.checksum
        return item

    params = {
        "Bucket": "b",
        "Key": "k",
        "UploadId": "u",
        "MultipartUpload": {"Parts": [entry(p) for p in parts]},
    }
    request = create_serializer("rest-xml").serialize_to_request(
        params, model.operation_model("CompleteMultipartUpload")
    )
    assert completion_xml(parts, algorithm) == request["body"]
