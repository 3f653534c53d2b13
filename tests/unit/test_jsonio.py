"""The API's orjson renderer and parser give what the standard library gave, corner cases too."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.test import RequestFactory
from django.utils.functional import lazy
from ninja.parser import Parser
from ninja.renderers import JSONRenderer

from project.jsonio import ORJSONParser, ORJSONRenderer

request = RequestFactory().get("/")


def render(renderer: Any, data: Any) -> str:
    content = renderer.render(request, data, response_status=200)
    return content.decode() if isinstance(content, bytes) else str(content)


def parse(parser: Any, body: bytes) -> Any:
    return parser.parse_body(RequestFactory().post("/", body, content_type="application/json"))


VALUES: list[Any] = [
    datetime(2026, 12, 2, 0, 21, 8, 123456, tzinfo=UTC),
    datetime(2026, 12, 2, 0, 21, 8, tzinfo=UTC),
    datetime(2026, 12, 2, 0, 21, 8, 5),
    date(2026, 12, 2),
    time(12, 30, 1, 999999),
    timedelta(days=1, seconds=5),
    uuid.UUID("8f9c4b0e-2a43-4e0f-9e0b-3d5c3f6f8a11"),
    Decimal("12.50"),
    lazy(lambda: "lazy text", str)(),
    "naïve ☃",
    10**30,
    -(2**63) - 1,
    {1: "int key", None: "none key"},
    "\ud800 lone surrogate",
    [1.5, 0.1, 1e16, True, None],
]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_renders_what_ninjas_json_renderer_rendered(value: Any) -> None:
    ours = render(ORJSONRenderer(), {"value": value})
    before = render(JSONRenderer(), {"value": value})
    assert json.loads(ours) == json.loads(before)


def test_datetimes_keep_djangos_form() -> None:
    """Milliseconds and "Z", as Django's encoder writes them (orjson alone writes +00:00)."""
    at = datetime(2026, 12, 2, 0, 21, 8, 123456, tzinfo=UTC)
    assert json.loads(render(ORJSONRenderer(), {"at": at})) == {"at": "2026-12-02T00:21:08.123Z"}


def test_unknown_types_still_fail() -> None:
    with pytest.raises(TypeError):
        render(ORJSONRenderer(), {"value": object()})


BODIES = [
    b'{"file_size": 100000000000000000000000000000}',
    b'{"file_size": -9223372036854775809}',
    b'{"part_numbers": [1,\n 18446744073709551616]}',
    b'{"file_size": 9223372036854775807, "name": "12345678901234567890123"}',
    b'{"file_size": NaN}',
    b'{"file_size": 1e400}',
    b'{"name": "\\ud800"}',
    b'\xef\xbb\xbf{"name": "bom"}',
    '{"name": "utf-16"}'.encode("utf-16"),
    b'{"a": 1.5, "b": [true, false, null], "c": "\\u00e9"}',
]


@pytest.mark.parametrize("body", BODIES)
def test_parses_what_the_standard_library_parsed(body: bytes) -> None:
    ours, before = parse(ORJSONParser(), body), parse(Parser(), body)
    # repr: NaN is not equal to itself, and 1e29 (a float) would equal the int it came from.
    assert repr(ours) == repr(before)


@pytest.mark.parametrize("body", [b'{"a": 1', b"", b"[1,]"])
def test_a_body_that_is_not_json_fails_as_before(body: bytes) -> None:
    with pytest.raises(json.JSONDecodeError):
        parse(Parser(), body)
    with pytest.raises(json.JSONDecodeError):
        parse(ORJSONParser(), body)


def test_a_ten_thousand_part_list_parses_alike() -> None:
    # Hex ETags hold runs of 19 digits now and then: inside strings they are no number.
    etags = [hashlib.md5(str(n).encode(), usedforsecurity=False).hexdigest() for n in range(10_000)]
    body = json.dumps({"parts": [{"part_number": n, "etag": e} for n, e in enumerate(etags)]})
    assert parse(ORJSONParser(), body.encode()) == json.loads(body)
