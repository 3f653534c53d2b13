"""Fast SigV4 query signing for S3 `UploadPart` URLs.

botocore's `generate_presigned_url` costs a few hundred microseconds a URL, seconds for a
10,000-part upload. Every part URL of one upload differs only in `partNumber` and in the values
of its signed headers (`content-length`, and the part's checksum when the upload has one), so
this module asks botocore for the first URL, learns its exact layout (host, path, parameter
order, signed headers, credential scope, timestamp) from it, derives the SigV4 signing key once,
and signs the other parts from a fixed canonical-request template.

Safety: the first URL is also signed here and compared with botocore's own signature; any
difference, or any layout this module does not know (other signed headers, another algorithm),
sends every URL through botocore instead. Tests check byte-identical output against botocore for
the same inputs and clock.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from typing import Any
from urllib.parse import unquote, urlsplit

# The Host value botocore itself signs (port kept unless default); its stubs leave it out.
from botocore.auth import _host_from_url  # type: ignore[attr-defined]

from .base import checksum_header

logger = logging.getLogger(__name__)

_ALGORITHM = "AWS4-HMAC-SHA256"
# S3 presigned URLs never sign the body.
_UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
_LENGTH = "content-length"


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def _header_value(value: str) -> str:
    # SigV4's Trimall, as botocore applies it to every signed header value.
    return " ".join(value.split())


class UploadPartPresigner:
    """Presigned `UploadPart` URLs for one multipart upload, all with one timestamp.

    Each URL signs the part's exact length (S3 refuses a body of any other length) and, with a
    checksum algorithm, the part's checksum (S3 refuses a body that does not match it).
    """

    def __init__(
        self,
        client: Any,
        *,
        bucket: str,
        key: str,
        upload_id: str,
        expires_in: int,
        checksum_algorithm: str = "",
        fast: bool = True,
    ) -> None:
        self._client = client
        self._params = {"Bucket": bucket, "Key": key, "UploadId": upload_id}
        self._expires_in = expires_in
        self._checksum_param = f"Checksum{checksum_algorithm}" if checksum_algorithm else ""
        self._checksum_header = checksum_header(checksum_algorithm) if checksum_algorithm else ""
        # Decided by the first URL: botocore signs it, and its layout is learnt from it.
        # `fast=False` leaves every URL to botocore.
        self._fast: bool | None = None if fast else False

    def _botocore_url(self, part_number: int, size: int, checksum: str) -> str:
        params: dict[str, object] = {
            **self._params,
            "PartNumber": part_number,
            "ContentLength": size,
        }
        if self._checksum_param:
            params[self._checksum_param] = checksum
        url: str = self._client.generate_presigned_url(
            "upload_part", Params=params, ExpiresIn=self._expires_in, HttpMethod="PUT"
        )
        return url

    def _learn(self, template: str, part_number: int, size: int, checksum: str) -> bool:
        parts = urlsplit(template)
        pairs = [pair.partition("=") for pair in parts.query.split("&")]
        values = {key: value for key, _, value in pairs}
        signature = values.get("X-Amz-Signature", "")
        scope = values.get("X-Amz-Credential", "").split("%2F")
        signed = unquote(values.get("X-Amz-SignedHeaders", "")).split(";")
        expected = sorted(filter(None, ["host", _LENGTH, self._checksum_header]))
        known = (
            values.get("X-Amz-Algorithm") == _ALGORITHM
            and signed == expected
            and values.get("partNumber") == str(part_number)
            and len(scope) == 5
            and scope[4] == "aws4_request"
            and pairs[-1][0] == "X-Amz-Signature"
        )
        credentials = self._credentials()
        if not known or credentials is None:
            logger.info("presigning upload_part URLs through botocore: layout not recognised")
            return False
        timestamp = values["X-Amz-Date"]
        date, region, service = scope[1], scope[2], scope[3]
        secret = credentials.secret_key
        signing_key = _hmac(
            _hmac(_hmac(_hmac(f"AWS4{secret}".encode(), date), region), service), "aws4_request"
        )
        self._mac = hmac.new(signing_key, digestmod=hashlib.sha256)
        # The URL keeps botocore's parameter order; the canonical query sorts by encoded key.
        unsigned = [(key, value) for key, _, value in pairs[:-1]]
        number_at = next(i for i, (key, _) in enumerate(unsigned) if key == "partNumber")
        self._url_head = f"{parts.scheme}://{parts.netloc}{parts.path}?" + "&".join(
            f"{k}={v}" for k, v in unsigned[:number_at]
        )
        if number_at:
            self._url_head += "&"
        self._url_tail = "".join(f"&{k}={v}" for k, v in unsigned[number_at + 1 :])
        ordered = sorted(unsigned)
        sorted_at = ordered.index(("partNumber", str(part_number)))
        self._canonical_head = f"PUT\n{parts.path}\n" + "".join(
            f"{k}={v}&" for k, v in ordered[:sorted_at]
        )
        # Canonical headers in name order: content-length < host < x-amz-checksum-*.
        self._canonical_query_tail = "".join(f"&{k}={v}" for k, v in ordered[sorted_at + 1 :])
        self._host_line = f"host:{_host_from_url(template)}\n"
        self._canonical_tail = f"\n{';'.join(expected)}\n{_UNSIGNED_PAYLOAD}"
        self._sts_head = f"{_ALGORITHM}\n{timestamp}\n{date}/{region}/{service}/aws4_request\n"
        if self._signature(part_number, size, checksum) != signature:
            logger.warning("fast upload_part signer disagreed with botocore; using botocore")
            return False
        return True

    def _credentials(self) -> Any:
        # The client's own credentials (session tokens included), as botocore signs with them.
        signer = getattr(self._client, "_request_signer", None)
        credentials = getattr(signer, "_credentials", None)
        if credentials is None:
            return None
        return credentials.get_frozen_credentials()

    def _signature(self, part_number: int, size: int, checksum: str) -> str:
        headers = f"{_LENGTH}:{size}\n{self._host_line}"
        if self._checksum_header:
            headers += f"{self._checksum_header}:{_header_value(checksum)}\n"
        canonical = (
            f"{self._canonical_head}partNumber={part_number}{self._canonical_query_tail}\n"
            f"{headers}{self._canonical_tail}"
        )
        mac = self._mac.copy()
        mac.update((self._sts_head + hashlib.sha256(canonical.encode()).hexdigest()).encode())
        return mac.hexdigest()

    def url(self, part_number: int, *, size: int, checksum: str = "") -> str:
        """The URL for one part of exactly `size` bytes (and `checksum`, with an algorithm)."""
        if self._fast is None:
            template = self._botocore_url(part_number, size, checksum)
            self._fast = self._learn(template, part_number, size, checksum)
            return template
        if not self._fast:
            return self._botocore_url(part_number, size, checksum)
        return (
            f"{self._url_head}partNumber={part_number}{self._url_tail}"
            f"&X-Amz-Signature={self._signature(part_number, size, checksum)}"
        )

    @property
    def is_fast(self) -> bool:
        """Whether URLs after the first are signed here (decided by the first URL)."""
        return bool(self._fast)
