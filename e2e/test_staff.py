"""The staff dashboard in Chromium: totals, filters, bulk abort, cleanup, and the access rule."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from django.utils import timezone
from playwright.sync_api import Page, expect
from pytest_django.live_server_helper import LiveServer

from tests.conftest import staff_user  # noqa: F401  (fixture, requested by name)
from tests.helpers import ApiClient
from uploads.models import FileRecord


def sign_in(page: Page, live_server: LiveServer, username: str, password: str) -> None:
    page.goto(f"{live_server.url}/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("navigation", name="Main")).to_contain_text(username)


def make_files(user: Any) -> list[str]:
    api = ApiClient(user)
    for name in ("report.pdf", "photo.png"):
        api.upload(b"done" * 300, file_name=name, part_size=1024)
    ids = []
    for name in ("big-one.bin", "big-two.bin"):
        body = api.post(
            "/v1/files/uploads", {"file_name": name, "file_size": 3000, "part_size": 1024}
        ).json()
        ids.append(body["id"])
    # One of the unfinished uploads is past its expiry: stale until cleanup runs.
    FileRecord.objects.filter(pk=ids[1]).update(
        upload_expires_at=timezone.now() - timedelta(hours=1)
    )
    return ids


def test_staff_dashboard_totals_filters_bulk_abort_and_cleanup(
    page: Page,
    live_server: LiveServer,
    transactional_db: None,
    user: Any,
    staff_user: Any,  # noqa: F811
) -> None:
    open_ids = make_files(user)
    sign_in(page, live_server, "staff", "staff-pass")
    page.goto(f"{live_server.url}/staff/")

    expect(page.get_by_test_id("stat-total")).to_contain_text("4")
    expect(page.get_by_test_id("stat-in-flight")).to_contain_text("2")
    expect(page.get_by_test_id("stat-stale")).to_contain_text("1")
    expect(page.get_by_test_id("stat-completed")).to_contain_text("2")

    # Filtering swaps the table in place and keeps the filter in the address bar.
    page.locator("#id_status").select_option("uploading")
    expect(page).to_have_url(re.compile(r"status=uploading"))
    rows = page.get_by_test_id("staff-row")
    expect(rows).to_have_count(2)
    expect(page.get_by_test_id("progress").first).to_contain_text("0 / 3 parts")

    # The actions column is a real table column: each row's cell sits inside its row.
    for row in rows.all():
        cell = row.locator("td").last
        assert cell.evaluate("td => getComputedStyle(td).display") == "table-cell"
        row_box, cell_box = row.bounding_box(), cell.bounding_box()
        assert row_box and cell_box
        assert row_box["y"] <= cell_box["y"] and cell_box["height"] <= row_box["height"] + 1
    expect(rows.first.get_by_role("button", name="Abort")).to_be_visible()

    # With nothing ticked the bulk buttons cannot be used.
    expect(page.get_by_test_id("bulk-abort")).to_be_disabled()
    expect(page.get_by_test_id("bulk-delete")).to_be_disabled()
    first = page.locator(f'tr[data-file-id="{open_ids[0]}"] input[name="ids"]')
    first.check()
    expect(page.get_by_test_id("bulk-abort")).to_be_enabled()
    first.uncheck()
    expect(page.get_by_test_id("bulk-abort")).to_be_disabled()

    for file_id in open_ids:
        page.locator(f'tr[data-file-id="{file_id}"] input[name="ids"]').check()
    page.get_by_test_id("bulk-abort").click()
    expect(page.get_by_test_id("bulk-confirm")).to_contain_text("Abort 2 files?")
    # The confirmation names the files it acts on.
    expect(page.get_by_test_id("bulk-files").locator("li")).to_have_count(2)
    expect(page.get_by_test_id("bulk-files")).to_contain_text("big-one.bin")
    expect(page.get_by_test_id("bulk-files")).to_contain_text("big-two.bin")
    page.get_by_test_id("bulk-confirm-yes").click()
    expect(page.get_by_test_id("notice")).to_contain_text("2 files aborted")
    # The table came back with nothing ticked: the buttons are off again.
    expect(page.get_by_test_id("bulk-abort")).to_be_disabled()
    statuses = dict(FileRecord.objects.values_list("file_name", "upload_status"))
    assert statuses == {
        "report.pdf": "completed",
        "photo.png": "completed",
        "big-one.bin": "aborted",
        "big-two.bin": "aborted",
    }

    page.get_by_test_id("run-cleanup").click()
    expect(page.get_by_test_id("cleanup-result")).to_contain_text("Cleanup finished")


def test_a_user_who_is_not_staff_gets_no_staff_page(
    page: Page, live_server: LiveServer, transactional_db: None, user: Any
) -> None:
    sign_in(page, live_server, "alice", "alice-pass")
    expect(
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Staff")
    ).to_have_count(0)
    response = page.goto(f"{live_server.url}/staff/")
    assert response is not None and response.status == 403
    expect(page.get_by_test_id("stat-total")).to_have_count(0)


def test_staff_restore_and_purge_a_deleted_file(
    page: Page,
    live_server: LiveServer,
    transactional_db: None,
    user: Any,
    staff_user: Any,  # noqa: F811
) -> None:
    api = ApiClient(user)
    done = api.upload(b"kept" * 300, file_name="kept.bin", part_size=1024)
    assert api.delete(f"/v1/files/{done['id']}").status_code == 204
    sign_in(page, live_server, "staff", "staff-pass")
    page.goto(f"{live_server.url}/staff/")
    expect(page.get_by_test_id("stat-total")).to_contain_text("0")

    page.get_by_test_id("stat-deleted").click()
    row = page.locator(f'tr[data-file-id="{done["id"]}"]')
    expect(row.get_by_test_id("deleted-at")).to_be_visible()
    row.get_by_role("button", name="Restore").click()
    expect(page.get_by_test_id("notice")).to_contain_text("1 file restored")
    assert api.get(f"/v1/files/{done['id']}").status_code == 200

    assert api.delete(f"/v1/files/{done['id']}").status_code == 204
    page.goto(f"{live_server.url}/staff/?deleted=on")
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator(f'tr[data-file-id="{done["id"]}"]').get_by_role("button", name="Purge now").click()
    expect(page.get_by_test_id("notice")).to_contain_text("1 file purged")
    expect(page.get_by_test_id("empty")).to_be_visible()
    assert not FileRecord.objects.filter(pk=done["id"]).exists()
