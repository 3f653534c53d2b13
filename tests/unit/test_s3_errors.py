"""Every S3 failure is classified once, in the S3 handler, by what it means for the caller.

tests/integration/test_storage_faults.py drives each kind through the API against moto; this
table covers every code and exception the handler knows, without a server.
"""

from __future__ import annotations

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    CredentialRetrievalError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
    ReadTimeoutError,
)

from uploads.storage.s3 import _storage_errors


def client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "CompleteMultipartUpload",
    )


def name_of(error: Exception) -> str:
    if isinstance(error, ClientError):
        status = error.response["ResponseMetadata"]["HTTPStatusCode"]
        return f"{error.response['Error']['Code']}-{status}"
    return type(error).__name__


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (client_error("NoSuchUpload", 404), "gone"),
        (client_error("404", 404), "gone"),
        (client_error("InvalidPart", 400), "fixable"),
        (client_error("InvalidPartOrder", 400), "fixable"),
        (client_error("BadDigest", 400), "fixable"),
        (client_error("EntityTooSmall", 400), "uncompletable"),
        (client_error("AccessDenied", 403), "configuration"),
        (client_error("NoSuchBucket", 404), "configuration"),
        (client_error("InvalidAccessKeyId", 403), "configuration"),
        (client_error("SignatureDoesNotMatch", 403), "configuration"),
        (client_error("RequestTimeTooSkewed", 403), "configuration"),
        (client_error("SlowDown", 503), "transient"),
        (client_error("InternalError", 500), "transient"),
        (client_error("RequestTimeout", 400), "transient"),
        (client_error("SomethingNew", 502), "transient"),
        (client_error("SomethingNew", 400), "failed"),
        (EndpointConnectionError(endpoint_url="http://s3"), "transient"),
        (ConnectTimeoutError(endpoint_url="http://s3"), "transient"),
        (ReadTimeoutError(endpoint_url="http://s3"), "transient"),
        (NoCredentialsError(), "configuration"),
        (CredentialRetrievalError(provider="sso", error_msg="expired"), "configuration"),
        (ParamValidationError(report="bad"), "failed"),
    ],
    ids=lambda value: value if isinstance(value, str) else name_of(value),
)
def test_each_s3_failure_has_its_kind(error, kind):
    with pytest.raises(Exception) as raised, _storage_errors("complete_multipart_upload"):
        raise error
    assert raised.value.kind == kind
    assert raised.value.__cause__ is error
