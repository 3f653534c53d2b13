"""Every page at a phone's width (390 px): nothing scrolls sideways. Also the small things a
user meets on every page: a favicon, and no Content-Security-Policy violation."""

from __future__ import annotations

from typing import Any

import pytest
from django_q.tasks import async_task
from playwright.sync_api import Page, expect
from pytest_django.live_server_helper import LiveServer

from e2e.test_portal import payload
from tests.factories import FileRecordFactory
from uploads.models import FileRecord

PHONE = {"width": 390, "height": 844}
LONG = "quarterly-report-with-a-very-long-name-that-does-not-break-anywhere-2026.pdf"


def overflow(page: Page) -> int:
    """How far the page reaches beyond the viewport's width, in CSS pixels."""
    return int(page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth"))


@pytest.fixture
def phone(signed_in_page: Page, user: Any) -> Page:
    user.is_staff = True
    user.save()
    signed_in_page.set_viewport_size(PHONE)
    return signed_in_page


def test_no_page_scrolls_sideways_on_a_phone(
    phone: Page, live_server: LiveServer, user: Any
) -> None:
    page = phone
    record = FileRecordFactory(created_by=user, name=LONG, file_name=LONG, file_size=62_914_560)
    FileRecordFactory(
        created_by=user,
        file_name="unfinished-" + LONG,
        upload_status=FileRecord.Status.UPLOADING,
        completed_at=None,
    )
    gone = FileRecordFactory(created_by=user, name="Gone", file_name="gone.txt")
    FileRecord.objects.filter(pk=gone.pk).update(deleted_at=gone.created)
    # The staff page with a cleanup run in its table.
    async_task("uploads.tasks.cleanup_all", task_name=f"cleanup by {user.get_username()}")
    pages = {
        "home": "/",
        "upload": "/upload/",
        "files": "/files/",
        "detail": f"/files/{record.pk}/",
        "staff": "/staff/",
        "not found": "/files/00000000-0000-0000-0000-000000000000/",
        "deleted": f"/files/{gone.pk}/",
    }
    wide = {}
    for name, path in pages.items():
        page.goto(live_server.url + path)
        wide[name] = overflow(page)
    # The staff page's bulk confirmation, listing the long names.
    page.goto(f"{live_server.url}/staff/?status=all")
    expect(page.get_by_test_id("cleanup-run")).to_have_count(1)
    for box in page.locator("input[name=ids]").all():
        box.check()
    page.get_by_test_id("bulk-delete").click()
    expect(page.get_by_test_id("bulk-files").locator("li")).to_have_count(2)
    wide["staff bulk confirmation"] = overflow(page)
    # The upload page with a row in it, as it is while a file goes up.
    page.goto(f"{live_server.url}/upload/")
    page.wait_for_function("() => window.directUploads !== undefined")
    page.set_input_files("#file-input", [payload(LONG, b"x" * 71)])
    expect(page.get_by_test_id("upload-row")).to_have_attribute("data-state", "done")
    wide["upload with a row"] = overflow(page)
    # Signed out: the sign-in page.
    page.context.clear_cookies()
    page.goto(f"{live_server.url}/accounts/login/")
    wide["sign in"] = overflow(page)
    assert wide == dict.fromkeys(wide, 0)


WATCH_CSP = """() => {
  window.cspViolations = [];
  document.addEventListener("securitypolicyviolation", (e) =>
    window.cspViolations.push(`${e.violatedDirective} ${e.blockedURI} ${e.sample}`));
}"""


def test_renaming_then_setting_a_parent_breaks_no_content_security_rule(
    signed_in_page: Page, live_server: LiveServer, user: Any
) -> None:
    from tests.testapp.models import Post

    page = signed_in_page
    post = Post.objects.create(title="Launch")
    record = FileRecordFactory(created_by=user, name="Draft", file_name="draft.txt")
    refused: list[str] = []
    page.on("console", lambda m: refused.append(m.text) if "Content Security" in m.text else None)
    page.goto(f"{live_server.url}/files/{record.pk}/")
    page.evaluate(WATCH_CSP)

    page.get_by_role("link", name="Edit name and description").click()
    page.get_by_label("Name", exact=True).fill("Final")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_test_id("file-name")).to_have_text("Final")
    page.get_by_label("Parent type (app_label.model)").fill("testapp.post")
    page.get_by_label("Parent id").fill(str(post.pk))
    page.get_by_role("button", name="Set parent").click()
    expect(page.get_by_test_id("parent")).to_have_text(f"testapp.post #{post.pk}")

    assert page.evaluate("() => window.cspViolations") == []
    assert refused == []


def test_every_page_has_a_favicon(signed_in_page: Page, live_server: LiveServer) -> None:
    page = signed_in_page
    missing: list[str] = []
    page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
    page.goto(f"{live_server.url}/files/")
    icon = page.locator("link[rel=icon]").get_attribute("href")
    assert icon
    assert page.request.get(live_server.url + icon).ok
    assert missing == []
