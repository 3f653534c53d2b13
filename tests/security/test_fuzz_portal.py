"""Hostile values in every portal and staff URL: path parameters, query strings and form
fields drawn from NUL, huge, unicode, negative, wrong-type and injection-shaped values, sent as
a signed-in user and as staff. No answer may be a 5xx.

The routes come from the URL conf (the access matrix's discovery), so a new page is fuzzed the
day it is added. Run it on PostgreSQL too: it refuses NUL and out-of-range numbers in queries,
which SQLite lets through.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from tests.factories import FileRecordFactory
from tests.helpers import pin_local_disk
from tests.security.test_access_matrix import EXPECTED, served_routes
from uploads.models import FileRecord

pytestmark = pytest.mark.django_db

EXAMPLES_PER_ROUTE = 25
HOSTILE = [
    "\x00", "a\x00b", "%00", "x" * 5000, "ü😀\u202e\ufeff", "漢字", "-1", "0", "-0",
    "1.5", "1e309", "99999999999999999999999", "-9223372036854775809", "[]", "{}", "null",
    "true", "' OR '1'='1", "\"; DROP TABLE x; --", "../../etc/passwd", "%", "%%", "\\",
    "<script>alert(1)</script>", " ", "", "\r\nX-Injected: 1", "2026-02-30", "9999-12-31",
    "00000000-0000-0000-0000-000000000000", "abort", "delete", "yes", "all", "completed",
]  # fmt: skip
# Query and form names the portal's views and forms read, and a few they do not.
FIELDS = [
    "page", "status", "sort", "q", "ids", "user", "content_type", "parent_type",
    "created_from", "created_to", "stale", "failed_24h", "next", "action", "confirm", "query",
    "name", "description", "parent_content_type", "parent_object_id", "username", "password",
    "unknown",
]  # fmt: skip
PLACEHOLDER = re.compile(r"<(?:\w+:)?(\w+)>")


def portal_calls() -> list[tuple[str, str]]:
    """(method, route) of every page: the methods the access matrix says each one answers (a
    page missing there fails that matrix), or GET and POST for one it does not know yet."""
    _, views = served_routes()
    listed = {(method, route) for method, route in EXPECTED if route in views}
    unlisted = {
        (m, r) for r in views if not any(r == route for _, route in listed) for m in ("GET", "POST")
    }
    return sorted(listed | unlisted)


def values(real_ids: list[str]) -> Any:
    # Real ids too, so the cases reach past the lookup into forms and services.
    return st.one_of(
        st.sampled_from(HOSTILE),
        st.sampled_from(real_ids),
        st.text(max_size=40),
        st.integers(min_value=-(2**70), max_value=2**70).map(str),
    )


def fill(route: str, drawn: dict[str, str]) -> str:
    return "/" + PLACEHOLDER.sub(lambda m: quote(drawn[m.group(1)], safe=""), route)


@pytest.fixture
def clients(db: Any, settings: Any) -> dict[str, Client]:
    pin_local_disk(settings)
    make = get_user_model().objects.create_user
    users = {"user": make("fuzz-user", password="x"), "staff": make("fuzz-staff", password="x")}
    users["staff"].is_staff = True
    users["staff"].save()
    result = {}
    for role, user in users.items():
        client = Client()
        client.force_login(user)
        result[role] = client
    FileRecordFactory(created_by=users["user"])
    FileRecordFactory(
        created_by=users["user"], upload_status=FileRecord.Status.UPLOADING, upload_id="0" * 32
    )
    return result


@pytest.mark.parametrize(("method", "route"), portal_calls())
def test_hostile_values_never_get_a_server_error(
    clients: dict[str, Client], method: str, route: str
) -> None:
    real_ids = [str(pk) for pk in FileRecord.objects.values_list("pk", flat=True)]
    names = PLACEHOLDER.findall(route)
    seen: Counter[int] = Counter()
    failures: list[str] = []

    @hypothesis_settings(
        max_examples=EXAMPLES_PER_ROUTE, deadline=None, database=None,
        suppress_health_check=list(HealthCheck),
    )  # fmt: skip
    @given(
        role=st.sampled_from(sorted(clients)),
        path_values=st.fixed_dictionaries({name: values(real_ids) for name in names}),
        query=st.dictionaries(st.sampled_from(FIELDS), values(real_ids), max_size=4),
        form=st.dictionaries(
            st.sampled_from(FIELDS), st.one_of(values(real_ids), st.lists(values(real_ids))),
            max_size=5,
        ),
    )  # fmt: skip
    def check(role: str, path_values: dict[str, str], query: dict, form: dict) -> None:
        path = fill(route, path_values)
        if query:
            path += "?" + urlencode(query)
        client = clients[role]
        if method == "PUT":
            response = client.put(path, data=b"x" * 10, content_type="application/octet-stream")
        elif method == "POST":
            response = client.post(path, form)
        else:
            response = client.get(path)
        seen[response.status_code] += 1
        if response.status_code >= 500 and len(failures) < 10:
            failures.append(f"{role} {method} {path[:200]!r} {form!r}"[:400])

    check()
    print(f"{method} /{route}: {dict(sorted(seen.items()))}")
    assert not failures, "\n".join(failures)
