"""GET /v1/files by cursor (keyset pagination), beside the page numbers the spec's clients use."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.contrib.contenttypes.models import ContentType
from django.utils import timezone

from tests.factories import FileRecordFactory
from tests.helpers import ApiClient, assert_error
from tests.testapp.models import Post
from uploads.models import FileRecord


def make(user: Any, count: int, *, minutes_ago: int = 60, **fields: Any) -> list[FileRecord]:
    """`count` files; each pair shares its creation time, so the tie-breaker is exercised."""
    now = timezone.now()
    records = [FileRecordFactory(created_by=user, **fields) for _ in range(count)]
    for index, record in enumerate(records):
        stamp = now - timedelta(minutes=minutes_ago + index // 2)
        FileRecord.objects.filter(pk=record.pk).update(created=stamp)
    return records


def listed(api: ApiClient, query: str) -> list[str]:
    """Every id `GET /v1/files?{query}` lists, by page number, in order (the reference)."""
    body = api.get(f"/v1/files?{query}&page_size=500").json()
    assert body["next"] is None
    return [f["id"] for f in body["results"]]


def walk(api: ApiClient, url: str, link: str = "next") -> list[dict[str, Any]]:
    pages = []
    while url:
        response = api.get(url)
        assert response.status_code == 200, response.content
        pages.append(response.json())
        url = pages[-1][link]
    return pages


def ids(pages: list[dict[str, Any]]) -> list[str]:
    return [f["id"] for page in pages for f in page["results"]]


def cursor_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["cursor"][0]


def test_cursor_pages_through_every_row_once_in_order(api, user):
    make(user, 11)

    pages = walk(api, "/v1/files?cursor=&page_size=3")

    assert [len(page["results"]) for page in pages] == [3, 3, 3, 2]
    assert ids(pages) == listed(api, "status=completed")
    first = pages[0]
    assert set(first) == {"count", "next", "previous", "results"}
    assert first["count"] is None  # nothing is counted in cursor mode
    assert first["previous"] is None
    assert first["next"].startswith("http://testserver/v1/files?")
    assert parse_qs(urlsplit(first["next"]).query)["page_size"] == ["3"]
    assert pages[-1]["next"] is None


def test_cursor_previous_links_walk_back_to_a_full_first_page(api, user):
    make(user, 11)
    forward = walk(api, "/v1/files?cursor=&page_size=3")

    backward = walk(api, forward[-1]["previous"], link="previous")

    assert [ids([page]) for page in backward] == [ids([page]) for page in forward[-2::-1]]
    assert backward[-1]["previous"] is None
    # Each page's next link leads to the page after it.
    assert ids(walk(api, backward[-1]["next"])) == ids(forward[1:])


def test_page_numbers_repeat_rows_when_files_are_added_but_cursors_do_not(api, user):
    originals = make(user, 10)
    by_number, by_cursor = [], []
    number_url: str | None = "/v1/files?page_size=3"
    cursor_url: str | None = "/v1/files?page_size=3&cursor="
    batch = 0
    while number_url or cursor_url:
        for url, seen in ((number_url, by_number), (cursor_url, by_cursor)):
            if url:
                body = api.get(url).json()
                seen.append(body)
        number_url = by_number[-1]["next"] if number_url else None
        cursor_url = by_cursor[-1]["next"] if cursor_url else None
        # New uploads land at the top, and one among the rows not yet read (a clock set back).
        if batch < 3:
            batch += 1
            make(user, 2, minutes_ago=0)
            make(user, 1, minutes_ago=62 + batch)

    expected = {str(record.pk) for record in originals}
    number_ids, cursor_ids = ids(by_number), ids(by_cursor)
    assert len(number_ids) > len(set(number_ids))  # page numbers shift: rows come twice
    assert len(cursor_ids) == len(set(cursor_ids))
    assert expected <= set(cursor_ids)


def test_cursor_keeps_the_filters(api, user):
    post = Post.objects.create(title="p")
    wanted = make(user, 5, upload_status=FileRecord.Status.FAILED)
    post_type = ContentType.objects.get_for_model(Post)
    FileRecord.objects.filter(pk__in=[r.pk for r in wanted[:4]]).update(
        parent_content_type=post_type, parent_object_id=str(post.pk)
    )
    make(user, 3)  # completed: filtered out
    make(user, 2, upload_status=FileRecord.Status.FAILED)  # no parent: filtered out
    query = f"status=failed&parent_content_type=testapp.post&parent_object_id={post.pk}"

    pages = walk(api, f"/v1/files?{query}&page_size=3&cursor=")

    assert len(pages) == 2
    assert "status=failed" in pages[0]["next"]
    assert ids(pages) == listed(api, query)
    assert set(ids(pages)) == {str(record.pk) for record in wanted[:4]}


def test_cursor_lists_only_the_callers_files(api, user, other_user):
    mine = make(user, 4, upload_status=FileRecord.Status.UPLOADING)
    make(other_user, 6, upload_status=FileRecord.Status.UPLOADING)

    pages = walk(api, "/v1/files?status=all&page_size=2&cursor=")

    assert set(ids(pages)) == {str(record.pk) for record in mine}


def test_another_users_cursor_shows_nothing_of_theirs(api_for, user, other_user):
    make(user, 3)
    theirs = make(other_user, 3)
    their_next = api_for(other_user).get("/v1/files?page_size=1&cursor=").json()["next"]

    pages = walk(api_for(user), their_next)

    assert not set(ids(pages)) & {str(record.pk) for record in theirs}


def test_staff_page_through_everyones_files_by_cursor(api_for, user, other_user, staff_user):
    everyone = make(user, 3) + make(other_user, 3)

    pages = walk(api_for(staff_user), "/v1/files?page_size=4&cursor=")

    assert set(ids(pages)) == {str(record.pk) for record in everyone}


def _tampered(cursor: str) -> str:
    payload, signature = cursor.rsplit(":", 1)
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data[-1] = "00000000-0000-0000-0000-000000000000"
    forged = base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")
    return f"{forged}:{signature}"


@pytest.mark.parametrize(
    "cursor",
    ["garbage", "a:b", "\x00", "\u00e9:\u00e9", "W10:x", "tampered", "unsigned"],
)
def test_a_bad_cursor_is_a_400_in_the_error_shape(api, user, cursor):
    make(user, 3)
    real = cursor_of(api.get("/v1/files?page_size=1&cursor=").json()["next"])
    if cursor == "tampered":
        cursor = _tampered(real)
    elif cursor == "unsigned":
        cursor = real.rsplit(":", 1)[0]

    response = api.get("/v1/files?" + urlencode({"cursor": cursor, "page_size": 1}))

    body = assert_error(response, 400, "invalid_cursor")
    assert body["extra"]["field"] == "cursor"


def test_page_and_cursor_together_are_refused(api, user):
    make(user, 2)
    assert_error(api.get("/v1/files?page=1&cursor="), 400, "invalid")


def test_page_numbers_still_count_and_link_by_number(api, user):
    make(user, 5)
    body = api.get("/v1/files?page=2&page_size=2").json()
    assert body["count"] == 5
    assert "cursor" not in body["next"] and "page=3" in body["next"]
    assert "page=1" in body["previous"]
