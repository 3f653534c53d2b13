"""Portal views through Django's test client: access rules, HTMX branches, forms, CSRF, escaping.

No browser here (SL `django_functest.rst`): HTMX requests are plain requests with the
`HX-Request: true` header (DH `tests/test_middleware.py`), so every branch is reachable.
"""

from __future__ import annotations

import html
import re
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.conf import settings as django_settings
from django.contrib.contenttypes.models import ContentType
from django.test import Client
from django.utils import timezone

from tests.factories import FileRecordFactory
from tests.helpers import ApiClient
from tests.testapp.models import Post
from uploads import selectors
from uploads.models import FileRecord
from uploads.views import PAGE_SIZE

HX = {"HX-Request": "true"}
LOGIN = "/accounts/login/"
XSS_NAME = "<img src=x onerror=alert(1)>.txt"
XSS_ATTR_NAME = '"><svg onload=alert(2)>.txt'
Status = FileRecord.Status


# --- helpers --------------------------------------------------------------------------------


class Page(HTMLParser):
    """The bits of a rendered page the tests look at: elements with their attributes, and text."""

    def __init__(self, markup: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.text_parts: list[str] = []
        self.feed(markup)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}))

    def handle_data(self, data: str) -> None:
        self.text_parts.append(data)

    @property
    def text(self) -> str:
        return " ".join(" ".join(self.text_parts).split())

    def find_all(self, tag: str | None = None, **attrs: str) -> list[dict[str, str]]:
        return [
            a
            for t, a in self.elements
            if (tag is None or t == tag) and all(a.get(k) == v for k, v in attrs.items())
        ]

    def tags(self) -> set[str]:
        return {t for t, _ in self.elements}

    def row_ids(self) -> list[str]:
        return [a["data-file-id"] for a in self.find_all("tr", **{"data-testid": "file-row"})]

    def link(self, rel: str) -> str | None:
        found = self.find_all("a", rel=rel)
        return found[0]["href"] if found else None


def page_of(response: Any) -> Page:
    return Page(response.content.decode())


def body(response: Any) -> str:
    return str(response.content.decode())


def login_redirect(response: Any, path: str) -> bool:
    return response.status_code == 302 and response["Location"] == f"{LOGIN}?next={path}"


def is_fragment(response: Any, fragment_id: str) -> bool:
    text = body(response)
    return "<html" not in text and f'id="{fragment_id}"' in text


def snapshot(record: FileRecord) -> dict[str, Any]:
    """Every stored column of the record (`modified` too: any save at all changes it)."""
    fresh = FileRecord.objects.get(pk=record.pk)
    return {f.attname: getattr(fresh, f.attname) for f in FileRecord._meta.concrete_fields}


def csrf_token_from(response: Any) -> str:
    match = re.search(r'data-csrf-token="([^"]+)"', body(response))
    assert match, "the page carries no CSRF token for HTMX"
    return match.group(1)


@pytest.fixture
def client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def anon() -> Client:
    return Client()


@pytest.fixture
def mine(user: Any) -> FileRecord:
    return FileRecordFactory(created_by=user, name="Quarterly report", file_name="report.pdf")


@pytest.fixture
def theirs(other_user: Any) -> FileRecord:
    return FileRecordFactory(
        created_by=other_user,
        name="Bob's secret",
        file_name="secret.bin",
        description="private",
        upload_status=Status.UPLOADING,
        completed_at=None,
        upload_id="not-a-real-upload",
    )


@pytest.fixture
def post(db: Any) -> Post:
    return Post.objects.create(title="A post")


# Every portal URL that needs a signed-in user, with the method and form data it takes.
PROTECTED = [
    ("get", "/files/", None),
    ("get", "/files/{id}/", None),
    ("get", "/files/{id}/edit/", None),
    ("post", "/files/{id}/edit/", {"name": "hacked", "description": "x"}),
    ("post", "/files/{id}/parent/", {"parent_content_type": "", "parent_object_id": ""}),
    ("get", "/files/{id}/delete/", None),
    ("post", "/files/{id}/delete/", {}),
    ("get", "/upload/", None),
    ("post", "/upload/{id}/discard/", {}),
]
PROTECTED_IDS = [f"{m.upper()} {p}" for m, p, _ in PROTECTED]


# --- anonymous -------------------------------------------------------------------------------


def test_home_sends_anonymous_users_to_sign_in(anon, db):
    response = anon.get("/")
    assert response.status_code == 302
    assert response["Location"] == LOGIN


def test_home_sends_signed_in_users_to_their_files(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == "/files/"


def test_login_page_renders_for_anonymous_users(anon, db):
    response = anon.get(LOGIN)
    assert response.status_code == 200
    page = page_of(response)
    assert page.find_all("input", name="username")
    assert page.find_all("input", name="password", type="password")


def test_login_with_good_credentials_leads_to_the_files(anon, user):
    response = anon.post(LOGIN, {"username": "alice", "password": "alice-pass"}, follow=True)
    assert response.redirect_chain[-1] == ("/files/", 302)
    assert "alice" in page_of(response).text


def test_login_with_a_bad_password_shows_an_error(anon, user):
    response = anon.post(LOGIN, {"username": "alice", "password": "wrong"})
    assert response.status_code == 200
    assert 'role="alert"' in body(response)
    assert "_auth_user_id" not in anon.session


@pytest.mark.parametrize(("method", "path", "data"), PROTECTED, ids=PROTECTED_IDS)
def test_anonymous_is_redirected_to_login_and_nothing_changes(anon, mine, method, path, data):
    mine.upload_status, mine.upload_id = Status.UPLOADING, "upload-1"
    mine.save()
    before = snapshot(mine)
    url = path.format(id=mine.pk)

    response = getattr(anon, method)(url, data or {})

    assert login_redirect(response, url), (response.status_code, response.get("Location"))
    assert snapshot(mine) == before


@pytest.mark.parametrize(("method", "path", "data"), PROTECTED, ids=PROTECTED_IDS)
def test_anonymous_htmx_request_is_redirected_too(anon, mine, method, path, data):
    url = path.format(id=mine.pk)
    response = getattr(anon, method)(url, data or {}, headers=HX)
    assert login_redirect(response, url)


# --- someone else's file ---------------------------------------------------------------------

OTHERS = [(m, p, d) for m, p, d in PROTECTED if "{id}" in p]
OTHERS_IDS = [f"{m.upper()} {p}" for m, p, _ in OTHERS]


@pytest.mark.parametrize(("method", "path", "data"), OTHERS, ids=OTHERS_IDS)
def test_another_users_file_is_not_found_and_untouched(client, theirs, method, path, data):
    before = snapshot(theirs)

    response = getattr(client, method)(path.format(id=theirs.pk), data or {})

    assert response.status_code == 404
    text = body(response)
    assert "File not found." in text
    assert "Bob&#x27;s secret" not in text and "secret.bin" not in text
    assert snapshot(theirs) == before


@pytest.mark.parametrize(("method", "path", "data"), OTHERS, ids=OTHERS_IDS)
def test_a_full_page_error_is_the_styled_page_with_the_menu(client, theirs, method, path, data):
    response = getattr(client, method)(path.format(id=theirs.pk), data or {})

    assert response.status_code == 404
    page = page_of(response)
    assert page.find_all("link", rel="stylesheet")
    assert page.find_all("nav", **{"aria-label": "Main"})
    assert page.find_all("a", href="/files/")
    assert "<h1>Not found</h1>" in body(response)
    assert "File not found." in page.text


@pytest.mark.parametrize(("method", "path", "data"), OTHERS, ids=OTHERS_IDS)
def test_another_users_file_via_htmx_gets_the_error_fragment(client, theirs, method, path, data):
    before = snapshot(theirs)

    response = getattr(client, method)(path.format(id=theirs.pk), data or {}, headers=HX)

    # htmx 2 does not swap 4xx answers, so the fragment says "not found" with a 200.
    assert response.status_code == 200
    assert "<html" not in body(response)
    assert page_of(response).find_all(**{"data-testid": "error"})
    assert "File not found." in body(response)
    assert snapshot(theirs) == before


@pytest.mark.parametrize("file_id", ["not-a-uuid", "00000000-0000-0000-0000-000000000000"])
def test_unknown_or_malformed_ids_are_not_found(client, file_id):
    assert client.get(f"/files/{file_id}/").status_code == 404
    assert client.post(f"/files/{file_id}/edit/", {"name": "x"}).status_code == 404
    assert client.post(f"/upload/{file_id}/discard/").status_code == 404


def test_another_users_files_are_not_listed(client, mine, theirs):
    response = client.get("/files/?status=all")
    assert page_of(response).row_ids() == [str(mine.pk)]
    assert "secret.bin" not in body(response)


def test_another_users_unfinished_upload_is_not_offered_for_resume(client, theirs):
    response = client.get("/upload/")
    assert str(theirs.pk) not in body(response)
    assert page_of(response).find_all(**{"data-testid": "no-unfinished"})


def test_staff_see_everyones_files_with_the_owner(staff_user, mine):
    client = Client()
    client.force_login(staff_user)
    page = page_of(client.get("/files/"))
    assert page.row_ids() == [str(mine.pk)]
    assert "alice" in page.text


# --- wrong methods ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/files/"),
        ("post", "/files/{id}/"),
        ("get", "/files/{id}/parent/"),
        ("get", "/upload/{id}/discard/"),
        ("post", "/upload/"),
        ("put", "/files/{id}/edit/"),
    ],
)
def test_wrong_method_is_405(client, mine, method, path):
    before = snapshot(mine)
    assert getattr(client, method)(path.format(id=mine.pk)).status_code == 405
    assert snapshot(mine) == before


# --- the owner: full pages and HTMX fragments ---------------------------------------------------


def test_file_list_full_page_and_htmx_fragment(client, mine):
    full = client.get("/files/")
    assert full.status_code == 200
    assert "<html" in body(full)
    assert 'id="file-table"' in body(full)
    assert page_of(full).find_all("form", **{"hx-get": "/files/"})  # the filter form
    assert page_of(full).row_ids() == [str(mine.pk)]

    fragment = client.get("/files/", headers=HX)
    assert fragment.status_code == 200
    assert is_fragment(fragment, "file-table")
    assert "<form" not in body(fragment)  # only the table is swapped, not the filters
    assert page_of(fragment).row_ids() == [str(mine.pk)]


def test_file_list_shows_name_size_status_and_links_to_the_detail(client, mine):
    page = page_of(client.get("/files/"))
    assert page.find_all("a", href=f"/files/{mine.pk}/")
    assert "Quarterly report" in page.text
    assert "report.pdf" in page.text
    assert "Completed" in page.text


def test_empty_list_offers_to_upload(client):
    page = page_of(client.get("/files/"))
    assert page.find_all(**{"data-testid": "empty"})
    assert page.find_all("a", href="/upload/")


def test_file_detail_shows_the_file(client, mine):
    response = client.get(f"/files/{mine.pk}/")
    assert response.status_code == 200
    page = page_of(response)
    assert not page.find_all(**{"hx-swap-oob": "true"})  # out-of-band only in the fragment
    assert len(page.find_all(id="file-actions")) == 1
    assert "<html" in body(response)
    assert "Quarterly report" in page.text and "report.pdf" in page.text
    assert page.find_all("a", href=f"/v1/files/{mine.pk}/download")
    assert page.find_all(
        "a", href=f"/files/{mine.pk}/edit/", **{"hx-get": f"/files/{mine.pk}/edit/"}
    )
    assert page.find_all("form", action=f"/files/{mine.pk}/parent/")
    assert page.find_all("a", href=f"/files/{mine.pk}/delete/")


def test_file_detail_of_an_unfinished_upload_has_no_download(client, user):
    record = FileRecordFactory(created_by=user, upload_status=Status.UPLOADING, completed_at=None)
    page = page_of(client.get(f"/files/{record.pk}/"))
    assert not page.find_all(**{"data-testid": "download"})
    assert "Uploading" in page.text


def test_edit_get_full_page_and_htmx_fragment(client, mine):
    full = client.get(f"/files/{mine.pk}/edit/")
    assert full.status_code == 200
    assert "<html" in body(full)
    assert page_of(full).find_all("input", name="name", value="Quarterly report")

    fragment = client.get(f"/files/{mine.pk}/edit/", headers=HX)
    assert fragment.status_code == 200
    assert is_fragment(fragment, "meta")
    page = page_of(fragment)
    assert page.find_all("form", **{"hx-post": f"/files/{mine.pk}/edit/", "hx-target": "#meta"})
    assert page.find_all("input", name="name", value="Quarterly report")
    assert page.find_all("input", name="csrfmiddlewaretoken")


def test_edit_post_with_htmx_saves_and_returns_the_meta_fragment(client, mine):
    response = client.post(
        f"/files/{mine.pk}/edit/",
        {"name": "  Annual report  ", "description": "Line one\nline two"},
        headers=HX,
    )
    assert response.status_code == 200
    assert is_fragment(response, "meta")
    page = page_of(response)
    assert not page.find_all("form")  # back to the read-only view
    assert "Annual report" in page.text
    # The delete prompt outside #meta is refreshed out of band, so it names the new name.
    actions = page.find_all("div", id="file-actions", **{"hx-swap-oob": "true"})
    assert len(actions) == 1
    confirms = [a["hx-confirm"] for a in page.find_all("a", **{"data-testid": "delete"})]
    assert confirms == ["Delete “Annual report”? This cannot be undone."]
    mine.refresh_from_db()
    assert (mine.name, mine.description) == ("Annual report", "Line one\nline two")


def test_edit_post_without_htmx_redirects_to_the_detail(client, mine):
    response = client.post(f"/files/{mine.pk}/edit/", {"name": "Renamed", "description": ""})
    assert response.status_code == 302
    assert response["Location"] == f"/files/{mine.pk}/"
    mine.refresh_from_db()
    assert (mine.name, mine.description) == ("Renamed", "")


@pytest.mark.parametrize("name", ["", "   "], ids=["empty", "blank"])
def test_edit_with_an_empty_name_rerenders_the_form_with_an_error(client, mine, name):
    before = snapshot(mine)

    response = client.post(
        f"/files/{mine.pk}/edit/", {"name": name, "description": "new"}, headers=HX
    )

    assert response.status_code == 200
    assert is_fragment(response, "meta")
    page = page_of(response)
    assert page.find_all("input", name="name", **{"aria-invalid": "true"})
    assert page.find_all(id="name-error")
    assert "This field is required." in page.text
    # What the user typed is kept, so nothing is lost to the error.
    assert "new" in page.text
    assert snapshot(mine) == before


def test_edit_with_an_empty_name_without_htmx_shows_the_full_page_with_the_error(client, mine):
    before = snapshot(mine)
    response = client.post(f"/files/{mine.pk}/edit/", {"name": "", "description": ""})
    assert response.status_code == 200
    assert "<html" in body(response)
    assert "This field is required." in page_of(response).text
    assert snapshot(mine) == before


def test_edit_name_the_service_refuses_shows_the_services_message(client, mine):
    # Passes the form (not blank) but the service strips control characters to nothing.
    before = snapshot(mine)
    response = client.post(
        f"/files/{mine.pk}/edit/", {"name": "\x01\x02", "description": ""}, headers=HX
    )
    assert response.status_code == 200
    assert is_fragment(response, "meta")
    assert "name cannot be empty." in page_of(response).text
    assert snapshot(mine) == before


def test_edit_with_a_too_long_name_is_refused(client, mine):
    before = snapshot(mine)
    response = client.post(f"/files/{mine.pk}/edit/", {"name": "n" * 256}, headers=HX)
    assert response.status_code == 200
    assert "at most 255 characters" in page_of(response).text
    assert snapshot(mine) == before


def test_set_parent_with_htmx_saves_and_returns_the_parent_fragment(client, mine, post):
    response = client.post(
        f"/files/{mine.pk}/parent/",
        {"parent_content_type": "testapp.post", "parent_object_id": str(post.pk)},
        headers=HX,
    )
    assert response.status_code == 200
    assert is_fragment(response, "parent")
    page = page_of(response)
    assert f"testapp.post #{post.pk}" in page.text
    assert "Saved." in page.text
    assert page.find_all("input", name="parent_content_type", value="testapp.post")
    mine.refresh_from_db()
    assert mine.parent_content_type == ContentType.objects.get_for_model(Post)
    assert mine.parent_object_id == str(post.pk)
    assert mine.parent == post


def test_set_parent_without_htmx_redirects_to_the_detail(client, mine, post):
    response = client.post(
        f"/files/{mine.pk}/parent/",
        {"parent_content_type": "testapp.post", "parent_object_id": str(post.pk)},
    )
    assert response.status_code == 302
    assert response["Location"] == f"/files/{mine.pk}/"
    detail = page_of(client.get(f"/files/{mine.pk}/"))
    assert f"testapp.post #{post.pk}" in detail.text


def test_set_parent_with_empty_fields_detaches(client, mine, post):
    mine.parent_content_type = ContentType.objects.get_for_model(Post)
    mine.parent_object_id = str(post.pk)
    mine.save()
    response = client.post(
        f"/files/{mine.pk}/parent/",
        {"parent_content_type": "", "parent_object_id": ""},
        headers=HX,
    )
    assert "Nothing." in page_of(response).text
    mine.refresh_from_db()
    assert (mine.parent_content_type, mine.parent_object_id) == (None, "")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"parent_content_type": "nope.thing", "parent_object_id": "1"},
            "Unknown parent type 'nope.thing'; use 'app_label.model'.",
        ),
        (
            {"parent_content_type": "testapp.post", "parent_object_id": "999999"},
            "No testapp.post with id '999999' is available as a parent.",
        ),
        (
            {"parent_content_type": "testapp.post", "parent_object_id": ""},
            "parent_content_type and parent_object_id go together.",
        ),
    ],
    ids=["unknown-type", "unknown-id", "half"],
)
@pytest.mark.parametrize("htmx", [True, False], ids=["htmx", "full"])
def test_set_parent_shows_the_services_error(client, mine, post, data, message, htmx):
    before = snapshot(mine)

    response = client.post(f"/files/{mine.pk}/parent/", data, headers=HX if htmx else {})

    assert response.status_code == 200
    if htmx:
        assert is_fragment(response, "parent")
    else:
        assert "<html" in body(response)
    page = page_of(response)
    assert message in page.text
    assert "Saved." not in page.text
    assert page.find_all("p", role="alert")
    # The user's input stays in the form.
    assert page.find_all("input", name="parent_content_type", value=data["parent_content_type"])
    assert snapshot(mine) == before


def test_delete_get_asks_for_confirmation(client, mine):
    response = client.get(f"/files/{mine.pk}/delete/")
    assert response.status_code == 200
    page = page_of(response)
    assert "Quarterly report" in page.text
    assert page.find_all("form", method="post")
    assert FileRecord.objects.filter(pk=mine.pk).exists()


def test_delete_post_without_htmx_redirects_to_the_list(client, mine):
    response = client.post(f"/files/{mine.pk}/delete/")
    assert response.status_code == 302
    assert response["Location"] == "/files/"
    assert not FileRecord.objects.visible().filter(pk=mine.pk).exists()


def test_delete_post_with_htmx_redirects_the_browser_to_the_list(client, mine):
    response = client.post(f"/files/{mine.pk}/delete/", headers=HX)
    assert response.status_code == 200
    assert response["HX-Redirect"] == "/files/"
    assert not FileRecord.objects.visible().filter(pk=mine.pk).exists()


@pytest.mark.parametrize("headers", [{}, HX], ids=["form", "htmx"])
def test_the_list_after_a_delete_names_the_deleted_file(client, mine, headers):
    client.post(f"/files/{mine.pk}/delete/", headers=headers)

    page = page_of(client.get("/files/"))
    messages = page.find_all("div", **{"data-testid": "message"})
    assert len(messages) == 1
    assert "“Quarterly report” deleted." in page.text
    # Shown once.
    assert not page_of(client.get("/files/")).find_all("div", **{"data-testid": "message"})


def test_a_deleted_files_page_says_it_is_gone_and_is_not_kept_for_back(client, mine):
    page = client.get(f"/files/{mine.pk}/")
    # Back must ask the server again rather than show the page from the browser's cache.
    assert "no-store" in page["Cache-Control"]
    client.post(f"/files/{mine.pk}/delete/")

    response = client.get(f"/files/{mine.pk}/")

    assert response.status_code == 404
    assert "“Quarterly report” was deleted." in page_of(response).text
    assert page_of(response).find_all("nav", **{"aria-label": "Main"})


def test_someone_elses_deleted_file_is_just_not_found(client, theirs):
    FileRecord.objects.filter(pk=theirs.pk).update(deleted_at=theirs.created)

    response = client.get(f"/files/{theirs.pk}/")

    assert response.status_code == 404
    assert "File not found." in page_of(response).text
    assert "secret" not in body(response).lower()


def test_upload_page_lists_own_unfinished_uploads_with_resume_and_discard(client, user, mine):
    unfinished = FileRecordFactory(
        created_by=user,
        file_name="big.iso",
        file_size=12_345_678,
        upload_status=Status.UPLOADING,
        completed_at=None,
    )
    response = client.get("/upload/")
    assert response.status_code == 200
    page = page_of(response)
    assert page.find_all("input", type="file", id="file-input")
    assert page.find_all("script", type="module", src="/static/uploads/uploader.js")
    rows = page.find_all("li", **{"data-testid": "unfinished-row"})
    assert [r["data-unfinished-id"] for r in rows] == [str(unfinished.pk)]
    assert page.find_all(
        "button", **{"data-resume-id": str(unfinished.pk), "data-size": "12345678"}
    )
    assert page.find_all("button", **{"hx-post": f"/upload/{unfinished.pk}/discard/"})
    assert "big.iso" in page.text
    assert str(mine.pk) not in body(response)  # completed files are not "unfinished"


def test_upload_page_without_unfinished_uploads_says_none(client):
    page = page_of(client.get("/upload/"))
    assert page.find_all(**{"data-testid": "no-unfinished"})


def test_upload_page_tells_the_uploader_whether_to_send_checksums(client, settings):
    assert page_of(client.get("/upload/")).find_all(id="uploader", **{"data-checksums": "on"})
    settings.UPLOADS_BROWSER_CHECKSUMS = False
    assert page_of(client.get("/upload/")).find_all(id="uploader", **{"data-checksums": "off"})


# --- list filters ---------------------------------------------------------------------------


@pytest.fixture
def library(user: Any) -> dict[str, FileRecord]:
    """Files of every status, with distinct names and sizes."""
    return {
        "alpha": FileRecordFactory(
            created_by=user, name="alpha notes", file_name="a.txt", file_size=300
        ),
        "beta": FileRecordFactory(
            created_by=user, name="beta plan", file_name="b.txt", file_size=100
        ),
        "gamma": FileRecordFactory(
            created_by=user, name="gamma", file_name="holiday.jpg", file_size=200
        ),
        "open": FileRecordFactory(
            created_by=user, name="open one", upload_status=Status.UPLOADING, completed_at=None
        ),
        "gone": FileRecordFactory(
            created_by=user, name="gone one", upload_status=Status.ABORTED, completed_at=None
        ),
        "bad": FileRecordFactory(
            created_by=user, name="bad one", upload_status=Status.FAILED, completed_at=None
        ),
    }


def ids(*records: FileRecord) -> list[str]:
    return [str(r.pk) for r in records]


def test_list_shows_completed_files_by_default_newest_first(client, library):
    page = page_of(client.get("/files/"))
    assert page.row_ids() == ids(library["gamma"], library["beta"], library["alpha"])
    selected = [a for a in page.find_all("option") if "selected" in a]
    assert {a["value"] for a in selected} == {"completed", "-created"}


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("uploading", ["open"]),
        ("aborted", ["gone"]),
        ("failed", ["bad"]),
        ("completed", ["gamma", "beta", "alpha"]),
        ("all", ["bad", "gone", "open", "gamma", "beta", "alpha"]),
    ],
)
def test_list_filters_by_status(client, library, status, expected):
    page = page_of(client.get(f"/files/?status={status}"))
    assert page.row_ids() == ids(*(library[k] for k in expected))
    assert page.find_all("option", value=status, selected="")


@pytest.mark.parametrize(
    ("q", "expected"),
    [("ALPHA", ["alpha"]), ("plan", ["beta"]), ("holiday", ["gamma"]), ("one", [])],
    ids=["name-any-case", "name-part", "file-name", "completed-only"],
)
def test_list_search_matches_name_or_file_name(client, library, q, expected):
    response = client.get(f"/files/?q={q}")
    page = page_of(response)
    assert page.row_ids() == ids(*(library[k] for k in expected))
    assert page.find_all("input", name="q", value=q)
    if not expected:
        assert f"matching “{q}”" in page.text


def test_list_search_combines_with_status(client, library):
    page = page_of(client.get("/files/?q=one&status=all"))
    assert set(page.row_ids()) == set(ids(library["open"], library["gone"], library["bad"]))


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("name", ["alpha", "beta", "gamma"]),
        ("-name", ["gamma", "beta", "alpha"]),
        ("file_size", ["beta", "gamma", "alpha"]),
        ("-file_size", ["alpha", "gamma", "beta"]),
        ("created", ["alpha", "beta", "gamma"]),
        ("-created", ["gamma", "beta", "alpha"]),
    ],
)
def test_list_sorts(client, library, sort, expected):
    page = page_of(client.get(f"/files/?sort={sort}"))
    assert page.row_ids() == ids(*(library[k] for k in expected))
    assert page.find_all("option", value=sort, selected="")


def test_list_sort_by_status(client, library):
    page = page_of(client.get("/files/?sort=upload_status&status=all"))
    statuses = [FileRecord.objects.get(pk=i).upload_status for i in page.row_ids()]
    assert statuses == sorted(statuses)


def test_invalid_filter_values_fall_back_to_defaults_and_keep_the_valid_ones(client, library):
    response = client.get("/files/?status=bogus&sort=bogus&q=plan")
    assert response.status_code == 200
    page = page_of(response)
    # The bad status and sort fall back to their defaults; the good search still applies.
    assert page.row_ids() == ids(library["beta"])
    assert page.find_all("input", name="q", value="plan")


def test_invalid_filter_values_alone_give_the_default_list(client, library):
    response = client.get("/files/?status=bogus&sort=bogus")
    assert response.status_code == 200
    assert page_of(response).row_ids() == ids(library["gamma"], library["beta"], library["alpha"])


def _query(href: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(href).query)


def test_pagination_pages_do_not_overlap_and_links_keep_the_filters(client, user):
    records = [
        FileRecordFactory(created_by=user, name=f"doc {i:02d}", file_size=i)
        for i in range(PAGE_SIZE + 5)
    ]
    FileRecordFactory(created_by=user, name="unrelated")
    first = page_of(client.get("/files/?q=doc&sort=name&status=completed"))
    assert first.row_ids() == ids(*records[:PAGE_SIZE])
    assert first.link("prev") is None

    next_href = first.link("next")
    assert next_href is not None
    next_query = _query(next_href)
    assert next_query.pop("cursor")
    assert next_query == {"q": ["doc"], "sort": ["name"], "status": ["completed"]}
    # The HTMX twin of the link asks for the same URL.
    assert first.find_all("a", rel="next", **{"hx-get": next_href})

    second_response = client.get(f"/files/{next_href}", headers=HX)
    assert is_fragment(second_response, "file-table")
    second = page_of(second_response)
    assert second.row_ids() == ids(*records[PAGE_SIZE:])
    prev_href = second.link("prev")
    assert prev_href is not None
    prev_query = _query(prev_href)
    assert prev_query.pop("cursor")
    assert prev_query == {"q": ["doc"], "sort": ["name"], "status": ["completed"]}
    assert page_of(client.get(f"/files/{prev_href}")).row_ids() == first.row_ids()
    assert second.link("next") is None


@pytest.mark.parametrize(
    "sort", ["-created", "created", "name", "-name", "file_size", "-file_size", "upload_status"]
)
def test_pages_by_cursor_list_every_file_once_in_every_sort(client, user, sort):
    now = timezone.now()
    statuses = [FileRecord.Status.COMPLETED, FileRecord.Status.UPLOADING, FileRecord.Status.FAILED]
    for i in range(PAGE_SIZE * 2 + 3):
        record = FileRecordFactory(
            created_by=user,
            # Ties on every sort key but the id: pages must still neither overlap nor skip.
            name=["Beta", "alpha", "beta"][i % 3],
            file_size=i % 4,
            upload_status=statuses[i % 3],
        )
        FileRecord.objects.filter(pk=record.pk).update(created=now - timedelta(minutes=i // 5))
    reference = list(
        selectors.file_list_for_user(user=user, status="all", ordering=sort).values_list(
            "pk", flat=True
        )
    )

    seen: list[str] = []
    href: str | None = f"?status=all&sort={sort}"
    pages = []
    while href:
        page = page_of(client.get(f"/files/{href}"))
        pages.append(page)
        seen += page.row_ids()
        href = page.link("next")

    assert seen == [str(pk) for pk in reference]
    # And back again from the last page, page by page.
    back = []
    href = pages[-1].link("prev")
    while href:
        page = page_of(client.get(f"/files/{href}"))
        back.append(page.row_ids())
        href = page.link("prev")
    assert back == [page.row_ids() for page in pages[-2::-1]]


def test_pagination_link_does_not_repeat_the_cursor_parameter(client, user):
    for i in range(PAGE_SIZE * 2 + 1):
        FileRecordFactory(created_by=user, name=f"f{i}")
    second = page_of(client.get("/files/?status=completed")).link("next")
    page = page_of(client.get(f"/files/{second}"))
    for rel in ("prev", "next"):
        href = page.link(rel)
        assert href is not None
        assert len(_query(href)["cursor"]) == 1
        assert _query(href)["status"] == ["completed"]


@pytest.mark.parametrize("cursor", ["garbage", "a:b", "%00"])
def test_a_bad_cursor_is_an_error_page_not_a_server_error(client, user, cursor):
    FileRecordFactory(created_by=user)
    response = client.get(f"/files/?cursor={cursor}")
    assert response.status_code == 400
    assert "cursor" in page_of(response).text


@pytest.mark.parametrize("number", ["999", "abc", "0", "-1"])
def test_old_page_number_links_show_a_real_page(client, user, number):
    for i in range(PAGE_SIZE + 1):
        FileRecordFactory(created_by=user, name=f"f{i}")
    response = client.get(f"/files/?page={number}")
    assert response.status_code == 200
    assert page_of(response).row_ids()


# --- CSRF ------------------------------------------------------------------------------------


@pytest.fixture
def strict(user: Any) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


@pytest.fixture
def uploading(api: ApiClient) -> FileRecord:
    """An upload really started in the (local) store, with a part stored."""
    init = api.post(
        "/v1/files/uploads", {"file_name": "half.bin", "file_size": 2048, "part_size": 1024}
    )
    assert init.status_code == 201, init.content
    data = init.json()
    assert api.put_part(data["presigned_urls"][0]["url"], b"x" * 1024).status_code == 200
    return FileRecord.objects.get(pk=data["id"])


def _csrf_cases(record: FileRecord, post: Post) -> list[tuple[str, dict[str, str]]]:
    return [
        (f"/files/{record.pk}/edit/", {"name": "Changed", "description": ""}),
        (
            f"/files/{record.pk}/parent/",
            {"parent_content_type": "testapp.post", "parent_object_id": str(post.pk)},
        ),
    ]


@pytest.mark.parametrize("with_htmx", [False, True], ids=["form", "htmx"])
def test_edit_and_parent_posts_need_the_csrf_token(strict, mine, post, with_htmx):
    headers = HX if with_htmx else {}
    for url, data in _csrf_cases(mine, post):
        before = snapshot(mine)
        refused = strict.post(url, data, headers=headers)
        assert refused.status_code == 403, url
        assert snapshot(mine) == before

    token = csrf_token_from(strict.get(f"/files/{mine.pk}/"))
    for url, data in _csrf_cases(mine, post):
        if with_htmx:  # htmx sends the token from <body hx-headers>
            accepted = strict.post(url, data, headers={**HX, "X-CSRFToken": token})
        else:
            accepted = strict.post(url, {**data, "csrfmiddlewaretoken": token})
        assert accepted.status_code in (200, 302), (url, accepted.status_code)
    mine.refresh_from_db()
    assert mine.name == "Changed"
    assert mine.parent == post


def test_delete_post_needs_the_csrf_token(strict, mine):
    assert strict.post(f"/files/{mine.pk}/delete/").status_code == 403
    assert FileRecord.objects.visible().filter(pk=mine.pk).exists()

    token = csrf_token_from(strict.get(f"/files/{mine.pk}/delete/"))
    response = strict.post(f"/files/{mine.pk}/delete/", {"csrfmiddlewaretoken": token})
    assert response.status_code == 302
    assert not FileRecord.objects.visible().filter(pk=mine.pk).exists()


def test_discard_post_needs_the_csrf_token(strict, uploading):
    assert strict.post(f"/upload/{uploading.pk}/discard/", headers=HX).status_code == 403
    uploading.refresh_from_db()
    assert uploading.upload_status == Status.UPLOADING

    token = csrf_token_from(strict.get("/upload/"))
    response = strict.post(f"/upload/{uploading.pk}/discard/", headers={**HX, "X-CSRFToken": token})
    assert response.status_code == 200
    uploading.refresh_from_db()
    assert uploading.upload_status == Status.ABORTED


def test_login_post_needs_the_csrf_token(user):
    strict = Client(enforce_csrf_checks=True)
    credentials = {"username": "alice", "password": "alice-pass"}
    assert strict.post(LOGIN, credentials).status_code == 403
    assert "_auth_user_id" not in strict.session

    token = csrf_token_from(strict.get(LOGIN))
    response = strict.post(LOGIN, {**credentials, "csrfmiddlewaretoken": token})
    assert response.status_code == 302
    assert strict.session["_auth_user_id"] == str(user.pk)


def test_every_page_carries_the_csrf_token_for_htmx(client, mine):
    for url in ("/files/", f"/files/{mine.pk}/", "/upload/"):
        response = client.get(url)
        token = csrf_token_from(response)
        assert f'hx-headers=\'{{"X-CSRFToken": "{token}"}}\'' in body(response)


# --- discard ---------------------------------------------------------------------------------


@pytest.fixture
def started(backend: str, user: Any, settings: Any) -> FileRecord:
    """An upload started in the store of `backend`, with its first part stored."""
    api = ApiClient(user)
    part = settings.UPLOADS_MIN_PART_SIZE
    init = api.post(
        "/v1/files/uploads", {"file_name": "half.bin", "file_size": part * 2, "part_size": part}
    )
    assert init.status_code == 201, init.content
    url = init.json()["presigned_urls"][0]["url"]
    if backend == "local":
        assert api.put_part(url, b"x" * part).status_code == 200
    else:
        assert requests.put(url, data=b"x" * part, timeout=30).status_code == 200
    return FileRecord.objects.get(pk=init.json()["id"])


def _store_holds(record: FileRecord, backend: str, request: pytest.FixtureRequest) -> bool:
    if backend == "local":
        return (Path(django_settings.UPLOADS_LOCAL_PARTS_DIR) / record.upload_id).exists()
    s3 = request.getfixturevalue(backend)
    uploads = s3.client.list_multipart_uploads(Bucket=s3.bucket).get("Uploads", [])
    return any(u["UploadId"] == record.upload_id for u in uploads)


def test_discard_aborts_an_uploading_file_in_the_store(client, started, backend, request):
    assert _store_holds(started, backend, request)

    response = client.post(f"/upload/{started.pk}/discard/")

    assert response.status_code == 302
    assert response["Location"] == "/upload/"
    assert not _store_holds(started, backend, request)
    record = FileRecord.objects.get(pk=started.pk)
    assert record.upload_status == Status.ABORTED
    assert record.upload_id == ""
    # Gone from the unfinished list.
    assert str(started.pk) not in body(client.get("/upload/"))


def test_discard_with_htmx_returns_an_empty_swap(client, uploading):
    response = client.post(f"/upload/{uploading.pk}/discard/", headers=HX)
    assert response.status_code == 200
    assert response.content == b""
    uploading.refresh_from_db()
    assert uploading.upload_status == Status.ABORTED


def test_discard_of_a_completed_file_is_refused_and_keeps_it(client, mine):
    before = snapshot(mine)
    response = client.post(f"/upload/{mine.pk}/discard/")
    assert response.status_code == 409
    assert page_of(response).find_all(**{"data-testid": "error"})
    fragment = client.post(f"/upload/{mine.pk}/discard/", headers=HX)
    assert fragment.status_code == 200
    assert "<html" not in body(fragment)
    assert page_of(fragment).find_all(**{"data-testid": "error"})
    assert snapshot(mine) == before


# --- hostile, long and empty names -------------------------------------------------------------


@pytest.fixture
def hostile(user: Any) -> FileRecord:
    return FileRecordFactory(
        created_by=user, name=XSS_NAME, file_name=XSS_ATTR_NAME, description="<b>bold</b>"
    )


def _hostile_pages(record: FileRecord) -> list[tuple[str, dict[str, str]]]:
    return [
        ("/files/", {}),
        ("/files/", HX),
        (f"/files/?q={XSS_NAME}", {}),
        (f"/files/{record.pk}/", {}),
        (f"/files/{record.pk}/edit/", {}),
        (f"/files/{record.pk}/edit/", HX),
        (f"/files/{record.pk}/delete/", {}),
    ]


def test_html_in_names_renders_as_text_everywhere(client, hostile):
    for url, headers in _hostile_pages(hostile):
        response = client.get(url, headers=headers)
        assert response.status_code == 200, url
        text = body(response)
        page = Page(text)
        assert "img" not in page.tags() and "svg" not in page.tags() and "b" not in page.tags(), url
        assert "&lt;img src=x onerror=alert(1)&gt;.txt" in text, url
        # Parsed back, the text (or the input's value) is exactly the name.
        values = {a.get("value") for a in page.find_all("input", name="name")}
        assert XSS_NAME in page.text or XSS_NAME in values, url


def test_html_in_names_cannot_break_out_of_attributes(client, hostile):
    detail = client.get(f"/files/{hostile.pk}/")
    page = page_of(detail)
    # The delete confirmation is an attribute holding the name: it stays one attribute.
    confirms = [a["hx-confirm"] for a in page.find_all("a", **{"data-testid": "delete"})]
    assert confirms == [f"Delete “{XSS_NAME}”? This cannot be undone."]
    assert "&lt;b&gt;bold&lt;/b&gt;" in body(detail)
    assert XSS_ATTR_NAME in page.text  # the file name row


def test_html_in_a_search_term_is_escaped(client, hostile):
    term = '"><script>alert(3)</script>'
    response = client.get("/files/", {"q": term})
    page = page_of(response)
    assert "<script>alert(3)" not in body(response)
    assert page.find_all("input", name="q", value=term)


def test_html_in_an_unfinished_upload_name_is_escaped_on_the_upload_page(client, user):
    record = FileRecordFactory(
        created_by=user, file_name=XSS_NAME, upload_status=Status.UPLOADING, completed_at=None
    )
    response = client.get("/upload/")
    page = page_of(response)
    assert "img" not in page.tags()
    assert XSS_NAME in page.text
    discard = page.find_all("button", **{"hx-post": f"/upload/{record.pk}/discard/"})
    assert discard[0]["hx-confirm"] == f"Discard the unfinished upload of “{XSS_NAME}”?"


def test_html_saved_through_the_edit_form_is_escaped_in_the_fragment(client, mine):
    response = client.post(
        f"/files/{mine.pk}/edit/",
        {"name": XSS_NAME, "description": "<script>x</script>"},
        headers=HX,
    )
    assert response.status_code == 200
    page = page_of(response)
    assert "img" not in page.tags() and "script" not in page.tags()
    assert XSS_NAME in page.text
    mine.refresh_from_db()
    assert mine.name == XSS_NAME


def test_very_long_names_render_in_full(client, user):
    long_name = "n" * 200 + "é" * 55
    record = FileRecordFactory(created_by=user, name=long_name, file_name="f" * 251 + ".bin")
    for url in (
        "/files/",
        f"/files/{record.pk}/",
        f"/files/{record.pk}/edit/",
        f"/files/{record.pk}/delete/",
    ):
        response = client.get(url)
        assert response.status_code == 200, url
        page = page_of(response)
        values = {a.get("value") for a in page.find_all("input", name="name")}
        assert long_name in page.text or long_name in values, url


def test_zero_byte_file_renders(client, api):
    done = api.upload(b"", file_name="empty.txt")
    detail = client.get(f"/files/{done['id']}/")
    assert detail.status_code == 200
    text = page_of(detail).text
    assert "0 bytes" in text and "(0 bytes)" not in text  # said once
    assert "Completed" in text
    assert page_of(detail).find_all(**{"data-testid": "download"})
    listing = page_of(client.get("/files/"))
    assert listing.row_ids() == [done["id"]]
    assert "0 bytes" in listing.text


def test_escaping_helper_sanity():
    # The parser used above must see tags in raw HTML, or the escaping checks prove nothing.
    assert "img" in Page(f"<p>{XSS_NAME}</p>").tags()
    assert "img" not in Page(f"<p>{html.escape(XSS_NAME)}</p>").tags()
