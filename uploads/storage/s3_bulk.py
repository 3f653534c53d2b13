"""ListParts and CompleteMultipartUpload at 10,000 parts, without botocore's per-element cost.

botocore parses a 1,000-part ListParts page through its generic shape walker and dateutil
(about 0.2 s a page, 2 s for 10,000 parts), and validates and serializes a 10,000-entry
CompleteMultipartUpload body the same way (about 0.6 s). Both are pure CPU on our side.

Everything else stays botocore's: endpoint, signing, TLS, timeouts, retries, and error responses
(which botocore still parses and raises as ClientError, so the handler's mapping is unchanged).
Two event hooks, active only while `raw_list_parts()` / `complete_body()` is in effect on the
calling thread, so other users of the same client see botocore's normal behaviour:
- `before-parse.s3.*`, in place of botocore's own check for S3's "200 with an <Error> body"
  (which parses every 200 body into a tree, then drops it): a ListParts page is parsed once,
  checked the same way (unreadable or <Error> -> 500, retried and raised as botocore does), and
  its tree handed to us instead of the parser. Every other response goes to botocore's check.
- `before-call.s3.CompleteMultipartUpload`: the request body is replaced, before it is
  checksummed and signed, by the one built here (the same bytes botocore's serializer writes).
"""

from __future__ import annotations

import weakref
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Any
from xml.sax.saxutils import escape

from botocore.handlers import (  # type: ignore[attr-defined]
    _handle_200_error as _botocore_200_error,
)
from botocore.utils import parse_timestamp

from .base import CompletedPart, StorageError, StoredPart

_S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
_RAW_BODY = "RawListPartsBody"
_listing_raw: ContextVar[bool] = ContextVar("uploads_s3_listing_raw", default=False)
_completion_body: ContextVar[bytes | None] = ContextVar("uploads_s3_completion_body", default=None)


def _check_200_error(
    operation_model: Any,
    response_dict: dict[str, Any],
    customized_response_dict: dict[str, Any] | None = None,
    **kwargs: Any,
) -> None:
    body = response_dict.get("body")
    if not (
        operation_model.name == "ListParts"
        and _listing_raw.get()
        and customized_response_dict is not None
        and response_dict.get("status_code") == 200
        and body
    ):
        _botocore_200_error(operation_model=operation_model, response_dict=response_dict, **kwargs)
        return
    # botocore's _looks_like_special_case_error, keeping the tree.
    try:
        parser = ET.XMLParser(target=ET.TreeBuilder(), encoding="utf-8")
        parser.feed(body)
        root = parser.close()
    except ET.ParseError:
        root = None
    if root is None or root.tag == "Error":
        # A page cut short, or an error: botocore retries it, then raises it from the body.
        response_dict["status_code"] = 500
        return
    customized_response_dict[_RAW_BODY] = root
    response_dict["body"] = b""


def _set_completion_body(params: dict[str, Any], **_: Any) -> None:
    body = _completion_body.get()
    if body is not None:
        params["body"] = body


_installed: weakref.WeakSet[Any] = weakref.WeakSet()


def install(client: Any) -> None:
    """Register both hooks on `client` (once; inert until switched on per call)."""
    if client in _installed:
        return
    events = client.meta.events
    # Only this client's copy of botocore's handlers changes; the replacement delegates.
    events.unregister("before-parse.s3.*", _botocore_200_error)
    events.register_first(
        "before-parse.s3.*", _check_200_error, unique_id="uploads-list-parts-200-error"
    )
    events.register(
        "before-call.s3.CompleteMultipartUpload",
        _set_completion_body,
        unique_id="uploads-completion-body",
    )
    _installed.add(client)


@contextmanager
def raw_list_parts() -> Iterator[None]:
    """ListParts responses inside this block carry their XML tree under `raw_body()`'s key."""
    token = _listing_raw.set(True)
    try:
        yield
    finally:
        _listing_raw.reset(token)


@contextmanager
def completion_body(body: bytes) -> Iterator[None]:
    """CompleteMultipartUpload calls inside this block send `body`."""
    token = _completion_body.set(body)
    try:
        yield
    finally:
        _completion_body.reset(token)


def raw_body(response: dict[str, Any]) -> ET.Element:
    try:
        body: ET.Element = response[_RAW_BODY]
    except KeyError:
        # The hook did not run (not installed on this client): never guess an empty page.
        raise StorageError("list_parts: raw response body missing") from None
    return body


class _Timestamps:
    """LastModified as botocore returns it: parts stored within one millisecond share a string,
    and the ISO 8601 form S3 sends parses without dateutil."""

    def __init__(self) -> None:
        self._seen: dict[str, datetime] = {}

    def __call__(self, text: str) -> datetime:
        value = self._seen.get(text)
        if value is None:
            try:
                value = datetime.fromisoformat(text)
                if value.tzinfo is None:
                    raise ValueError(text)
            except ValueError:
                value = parse_timestamp(text)
            self._seen[text] = value
        return value


def parse_list_parts(
    body: bytes | ET.Element, checksum_algorithm: str, timestamps: _Timestamps | None = None
) -> tuple[list[StoredPart], int | None]:
    """The parts of one ListParts page (its bytes or its parsed tree), and the marker of the
    next page (None on the last)."""
    timestamps = timestamps or _Timestamps()
    if isinstance(body, ET.Element):
        root = body
    else:
        try:
            root = ET.fromstring(body)
        except ET.ParseError as exc:
            raise StorageError(f"list_parts: unreadable response: {exc}") from exc
    parts: list[StoredPart] = []
    truncated = False
    next_marker: int | None = None
    # Element names carry the response's namespace (S3's, or none from some stores).
    ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    part_tag, number_tag, size_tag, etag_tag = (
        f"{ns}{name}" for name in ("Part", "PartNumber", "Size", "ETag")
    )
    modified_tag = f"{ns}LastModified"
    checksum_tag = f"{ns}Checksum{checksum_algorithm}" if checksum_algorithm else ""
    try:
        for element in root:
            tag = element.tag
            if tag == part_tag:
                fields = {child.tag: child.text or "" for child in element}
                modified = fields.get(modified_tag)
                parts.append(
                    StoredPart(
                        part_number=int(fields[number_tag]),
                        size=int(fields[size_tag]),
                        etag=fields[etag_tag],
                        last_modified=timestamps(modified) if modified is not None else None,
                        checksum=fields.get(checksum_tag, "") if checksum_tag else "",
                    )
                )
            elif tag == f"{ns}IsTruncated":
                truncated = (element.text or "").strip() == "true"
            elif tag == f"{ns}NextPartNumberMarker" and element.text:
                next_marker = int(element.text)
    except (KeyError, ValueError) as exc:
        raise StorageError(f"list_parts: malformed response: {exc!r}") from exc
    if not truncated:
        return parts, None
    if next_marker is None:
        raise StorageError("list_parts: truncated page without NextPartNumberMarker")
    return parts, next_marker


def list_all_parts(
    client: Any, *, bucket: str, key: str, upload_id: str, checksum_algorithm: str
) -> list[StoredPart]:
    """Every part of the upload, page after page (S3 returns at most 1,000 a page)."""
    install(client)
    timestamps = _Timestamps()
    parts: list[StoredPart] = []
    marker = 0
    with raw_list_parts():
        while True:
            extra = {"PartNumberMarker": marker} if marker else {}
            response = client.list_parts(Bucket=bucket, Key=key, UploadId=upload_id, **extra)
            page, next_marker = parse_list_parts(raw_body(response), checksum_algorithm, timestamps)
            parts.extend(page)
            if next_marker is None:
                return parts
            if next_marker <= marker:
                raise StorageError(f"list_parts: marker did not advance past {marker}")
            marker = next_marker


def _xml_text(value: str) -> str:
    # ETags and checksums hardly ever hold a character to escape; look before escaping.
    return escape(value) if "&" in value or "<" in value or ">" in value else value


def completion_xml(parts: Sequence[CompletedPart], checksum_algorithm: str) -> bytes:
    """The CompleteMultipartUpload body, as botocore's serializer writes it."""
    tag = f"Checksum{checksum_algorithm}" if checksum_algorithm else ""
    chunks = [f'<CompleteMultipartUpload xmlns="{_S3_NS}">']
    for part in parts:
        checksum = f"<{tag}>{_xml_text(part.checksum)}</{tag}>" if tag and part.checksum else ""
        chunks.append(
            f"<Part><PartNumber>{int(part.part_number)}</PartNumber>"
            f"<ETag>{_xml_text(part.etag)}</ETag>{checksum}</Part>"
        )
    chunks.append("</CompleteMultipartUpload>")
    return "".join(chunks).encode()


def complete_upload(
    client: Any,
    *,
    bucket: str,
    key: str,
    upload_id: str,
    parts: Sequence[CompletedPart],
    checksum_algorithm: str,
) -> dict[str, Any]:
    """CompleteMultipartUpload with the body built here; botocore's parsed response."""
    install(client)
    with completion_body(completion_xml(parts, checksum_algorithm)):
        # The part list travels in the body set by the hook; botocore validates the rest.
        response: dict[str, Any] = client.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id
        )
    return response
