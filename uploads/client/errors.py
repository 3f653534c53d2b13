"""The one exception the client raises for anything the server, the store or the network refused."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import httpx

# Codes the client itself uses, next to the server's ("not_found", "invalid_state", ...).
NETWORK_ERROR = "network_error"
FILE_CHANGED = "file_changed"
ETAG_MISSING = "etag_missing"
NOT_VERIFIABLE = "not_verifiable"

# S3 answers errors in XML: <Error><Code>…</Code><Message>…</Message></Error>.
_S3_CODE = re.compile(r"<Code>([^<]*)</Code>")
_S3_MESSAGE = re.compile(r"<Message>([^<]*)</Message>")


class ClientError(Exception):
    """A request failed: `status` is the HTTP status (0: no answer came), `code` a machine code."""

    def __init__(
        self, status: int, code: str, detail: str, *, extra: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(f"{detail} ({code}, HTTP {status})" if status else f"{detail} ({code})")
        self.status = status
        self.code = code
        self.detail = detail
        self.extra: dict[str, Any] = dict(extra or {})

    @classmethod
    def from_response(cls, response: httpx.Response, what: str = "") -> ClientError:
        """Read the API's `{"detail", "code"}`, or S3's XML error, or fall back to the status."""
        prefix = f"{what}: " if what else ""
        text = _body_text(response)
        try:
            body = json.loads(text) if text else None
        except ValueError:
            body = None
        if isinstance(body, dict) and "detail" in body:
            extra = body.get("extra")
            return cls(
                response.status_code,
                str(body.get("code") or f"http_{response.status_code}"),
                prefix + str(body["detail"]),
                extra=extra if isinstance(extra, dict) else None,
            )
        code_match, message_match = _S3_CODE.search(text), _S3_MESSAGE.search(text)
        if code_match:
            message = message_match.group(1) if message_match else code_match.group(1)
            return cls(response.status_code, code_match.group(1), prefix + message)
        reason = response.reason_phrase or "request failed"
        return cls(response.status_code, f"http_{response.status_code}", prefix + reason)

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"status": self.status, "code": self.code, "detail": self.detail}
        if self.extra:
            body["extra"] = self.extra
        return body


def _body_text(response: httpx.Response) -> str:
    # A streamed response that was never read has no `.text` yet; error bodies are small.
    try:
        response.read()
    except httpx.HTTPError:
        return ""
    return response.text[:4096]
