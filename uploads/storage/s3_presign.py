"""Fast SigV4 query signing for S3 `UploadPart` URLs.

botocore's `generate_presigned_url` costs a few hundred microseconds a URL, seconds for a
10,000-part upload. Every part URL of one upload differs only in `partNumber`, so this module
asks botocore for one URL, learns its exact layout (host, path, parameter order, credential
scope, timestamp) from it, derives the SigV4 signing key once, and signs the other part numbers
from a fixed canonical-request template.

Safety: the template URL is also signed here and compared with botocore's own signature; any
difference, or any layout this module does not know (extra signed headers, another algorithm),
sends every URL through botocore instead. Tests check byte-identical output against botocore for
the same inputs and clock.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from botocore.auth import _host_from_url

logger = logging.getLogger(__name__)

_ALGORITHM = "AWS4-HMAC-SHA256"
# S3 presigned URLs never sign the body.
_UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


class UploadPartPresigner:
    """Presigned `UploadPart` URLs for one multipart upload, all with one timestamp."""

    def __init__(
        self,
        client: Any,
        *,
        bucket: str,
        key: str,
        upload_id: str,
        expires_in: int,
        fast: bool = True,
    ) -> None:
        self._client = client
        self._params = {"Bucket": bucket, "Key": key, "UploadId": upload_id}
        self._expires_in = expires_in
        # `fast=False` leaves every URL to botocore.
        self._fast = fast and self._learn(self._botocore_url(1))

    def _botocore_url(self, part_number: int) -> str:
        url: str = self._client.generate_presigned_url(
            "upload_part",
            Params={**self._params, "PartNumber": part_number},
            ExpiresIn=self._expires_in,
            HttpMethod="PUT",
        )
        return url

    def _learn(self, template: str) -> bool:
        parts = urlsplit(template)
        pairs = [pair.partition("=") for pair in parts.query.split("&")]
        values = {key: value for key, _, value in pairs}
        signature = values.get("X-Amz-Signature", "")
        scope = values.get("X-Amz-Credential", "").split("%2F")
        known = (
            values.get("X-Amz-Algorithm") == _ALGORITHM
            and values.get("X-Amz-SignedHeaders") == "host"
            and values.get("partNumber") == "1"
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
        sorted_at = ordered.index(("partNumber", "1"))
        canonical_headers = f"host:{_host_from_url(template)}\n"
        self._canonical_head = f"PUT\n{parts.path}\n" + "".join(
            f"{k}={v}&" for k, v in ordered[:sorted_at]
        )
        self._canonical_tail = (
            "".join(f"&{k}={v}" for k, v in ordered[sorted_at + 1 :])
            + f"\n{canonical_headers}\nhost\n{_UNSIGNED_PAYLOAD}"
        )
        self._sts_head = f"{_ALGORITHM}\n{timestamp}\n{date}/{region}/{service}/aws4_request\n"
        if self._signature(1) != signature:
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

    def _signature(self, part_number: int) -> str:
        canonical = f"{self._canonical_head}partNumber={part_number}{self._canonical_tail}"
        mac = self._mac.copy()
        mac.update((self._sts_head + hashlib.sha256(canonical.encode()).hexdigest()).encode())
        return mac.hexdigest()

    def url(self, part_number: int) -> str:
        if not self._fast:
            return self._botocore_url(part_number)
        return (
            f"{self._url_head}partNumber={part_number}{self._url_tail}"
            f"&X-Amz-Signature={self._signature(part_number)}"
        )

    def urls(self, part_numbers: Sequence[int]) -> list[str]:
        return [self.url(number) for number in part_numbers]

    @property
    def is_fast(self) -> bool:
        return self._fast
