# ruff: noqa: F811  (the fixtures of test_portal.py are imported, then requested by name)
"""The uploader's queue and its ways through trouble, in real Chromium against the local store:
one concurrency limit for every file, pause that keeps finished parts, stalled parts, dropped
re-signs, going offline, a server that asks to slow down, and Retry only where it can help.

As in test_portal.py, parts are held, refused or dropped per request with `page.route`; waits are
on what the page shows or on requests Playwright reports, never on time.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from playwright.sync_api import Route, expect
from pytest_django.live_server_helper import LiveServer

from e2e.test_portal import (  # noqa: F401 (fixtures, requested by name)
    KIB,
    HeldRequests,
    Mode,
    PartGate,
    Traffic,
    Uploader,
    assert_completed_with,
    content,
    local_storage,
    mode,
    on_stores,
    payload,
    record_named,
    uploader,
)


def settles(
    page: Any, value: Callable[[], object], wanted: object, timeout_ms: int = 15_000
) -> None:
    """Wait until `value()` is `wanted`: what Playwright reports (routes, responses) arrives
    while the page is waited on, so poll it through the page."""
    for _ in range(timeout_ms // 50):
        if value() == wanted:
            return
        page.wait_for_timeout(50)
    assert value() == wanted


def parts_in_flight(uploader: Uploader) -> int:
    return int(
        uploader.page.evaluate(
            "() => window.directUploads.uploads.reduce((n, u) => n + u.active.size, 0)"
        )
    )


def test_every_file_shares_one_limit_of_parts_at_once(
    uploader: Uploader, local_storage: None, settings: Any, live_server: LiveServer, user: Any
) -> None:
    page = uploader.page
    settings.UPLOADS_DEFAULT_PART_SIZE = 64 * KIB
    settings.UPLOADS_BROWSER_CONCURRENCY = 2
    files = {f"q{i}.bin": content(150 * KIB, seed=100 + i) for i in range(3)}
    gate = PartGate(page, lambda _f, _n, _a: "hold", origin=live_server.url)

    uploader.open().pick(*(payload(name, data) for name, data in files.items()))

    # Three files of three parts: each step, two parts wait in the network and no third starts;
    # letting the oldest through lets exactly one more start.
    released = 0
    while released < 9:
        settles(page, lambda: len(gate.held), min(2, 9 - released))
        assert parts_in_flight(uploader) <= 2
        gate.held.pop(0).continue_()
        released += 1
    for name, data in files.items():
        uploader.wait_state(name, "done")
        assert_completed_with(page, live_server, record_named(user, name), data)


def test_pause_keeps_finished_parts_and_a_double_click_pauses_once(
    uploader: Uploader, local_storage: None, settings: Any, live_server: LiveServer, user: Any
) -> None:
    page = uploader.page
    settings.UPLOADS_DEFAULT_PART_SIZE = 64 * KIB
    data = content(4 * 64 * KIB, seed=110)
    traffic = Traffic().watch(page)
    # Parts 3 and 4 hang on their first try; parts 1 and 2 are stored.
    gate = PartGate(
        page, lambda _f, n, a: "hold" if n > 2 and a == 1 else "pass", origin=live_server.url
    )
    uploader.open().pick(payload("paused.bin", data))
    row = uploader.row("paused.bin")
    settles(page, lambda: sorted(n for _f, n, s in traffic.responses if s == 200), [1, 2])
    settles(page, lambda: len(gate.held), 2)

    row.get_by_role("button", name="Pause").dblclick()

    uploader.wait_state("paused.bin", "paused")
    expect(row).to_have_attribute("data-state", "paused")  # the second click did not resume
    # The stored half stays counted; only the two parts in flight start again.
    expect(row.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "50")
    expect(row.get_by_test_id("upload-stats")).to_contain_text("128.0 KiB of 256.0 KiB")
    gate.drop_held()
    row.get_by_role("button", name="Resume").click()
    uploader.wait_state("paused.bin", "done")
    record = record_named(user, "paused.bin")
    assert sorted(traffic.parts(str(record.pk))) == [1, 2, 3, 3, 4, 4]
    assert_completed_with(page, live_server, record, data)


def test_a_stalled_part_is_aborted_and_sent_again(
    uploader: Uploader, local_storage: None, settings: Any, live_server: LiveServer, user: Any
) -> None:
    """A part that makes no progress (a connection the store answered early and kept open)
    is given up after UPLOADS_BROWSER_STALL_SECONDS and sent again, without the user."""
    page = uploader.page
    settings.UPLOADS_DEFAULT_PART_SIZE = 64 * KIB
    settings.UPLOADS_BROWSER_STALL_SECONDS = 2
    data = content(150 * KIB, seed=120)
    traffic = Traffic().watch(page)
    gate = PartGate(
        page, lambda _f, n, a: "hold" if n == 2 and a == 1 else "pass", origin=live_server.url
    )
    uploader.open().pick(payload("stalled.bin", data))

    uploader.wait_state("stalled.bin", "done")
    record = record_named(user, "stalled.bin")
    assert sorted(traffic.parts(str(record.pk))) == [1, 2, 2, 3]
    gate.drop_held()
    assert_completed_with(page, live_server, record, data)


def test_a_dropped_resign_is_retried(
    uploader: Uploader, local_storage: None, settings: Any, live_server: LiveServer, user: Any
) -> None:
    page = uploader.page
    settings.UPLOADS_DEFAULT_PART_SIZE = 64 * KIB
    data = content(150 * KIB, seed=130)
    dropped: list[str] = []

    def drop_first(route: Route) -> None:
        if dropped:
            route.continue_()
        else:
            dropped.append(route.request.url)
            route.abort("connectionreset")

    page.route(lambda url: url.endswith("/presign"), drop_first)
    uploader.open().pick(payload("resign.bin", data))

    uploader.wait_state("resign.bin", "done")
    assert len(dropped) == 1
    assert_completed_with(page, live_server, record_named(user, "resign.bin"), data)


def test_offline_the_upload_waits_for_the_network(
    uploader: Uploader, local_storage: None, settings: Any, live_server: LiveServer, user: Any
) -> None:
    page = uploader.page
    data = content(50 * KIB, seed=140)
    uploader.open()
    page.context.set_offline(True)
    uploader.pick(payload("offline.bin", data))
    row = uploader.row("offline.bin")
    expect(row.get_by_test_id("upload-message")).to_have_text("Offline: waiting for the network…")
    expect(row).to_have_attribute("data-state", "initializing")  # waiting, not failed

    page.context.set_offline(False)
    uploader.wait_state("offline.bin", "done")
    assert_completed_with(page, live_server, record_named(user, "offline.bin"), data)


def test_a_429_slows_the_whole_queue(
    uploader: Uploader, local_storage: None, settings: Any, live_server: LiveServer, user: Any
) -> None:
    page = uploader.page
    settings.UPLOADS_DEFAULT_PART_SIZE = 64 * KIB
    data = content(6 * 64 * KIB, seed=150)
    gate = PartGate(
        page, lambda _f, n, a: 429 if n == 1 and a == 1 else "pass", origin=live_server.url
    )
    uploader.open().pick(payload("busy.bin", data))
    uploader.wait_state("busy.bin", "done")
    record = record_named(user, "busy.bin")
    assert gate.attempts[(str(record.pk), 1)] == 2
    # The queue took fewer parts at once after the 429 (4 → 2) and has not yet earned them back.
    assert page.evaluate("() => window.directUploads.queue.width") < 4
    assert_completed_with(page, live_server, record, data)


def test_a_failing_start_says_it_is_retrying_at_once(
    uploader: Uploader, local_storage: None, live_server: LiveServer, user: Any
) -> None:
    page = uploader.page
    data = content(20 * KIB, seed=160)
    answered: list[int] = []

    def fail_first(route: Route) -> None:
        if route.request.method == "POST" and not answered:
            answered.append(500)
            route.fulfill(
                status=500,
                content_type="application/json",
                body=json.dumps({"detail": "The server had a hiccup.", "code": "error"}),
            )
        else:
            route.fallback()

    initiate = HeldRequests(
        page, lambda url: urlsplit(url).path == "/v1/files/uploads", lambda r: bool(answered)
    )
    page.route(lambda url: urlsplit(url).path == "/v1/files/uploads", fail_first)
    uploader.open().pick(payload("hiccup.bin", data))

    row = uploader.row("hiccup.bin")
    # While the second try is still on its way, the row already says what is going on.
    expect(row.get_by_test_id("upload-message")).to_have_text("The server had a hiccup. Retrying…")
    expect(row).to_have_attribute("data-state", "initializing")
    initiate.release()
    uploader.wait_state("hiccup.bin", "done")
    assert_completed_with(page, live_server, record_named(user, "hiccup.bin"), data)


def test_no_retry_for_a_file_over_the_size_limit(
    uploader: Uploader, local_storage: None, settings: Any, live_server: LiveServer
) -> None:
    settings.MAX_FILE_UPLOAD_SIZE = 1000
    uploader.open().pick(payload("big.bin", content(2000, seed=170)))
    uploader.wait_state("big.bin", "failed")
    row = uploader.row("big.bin")
    expect(row.get_by_test_id("upload-message")).not_to_have_text("")
    expect(row.get_by_role("button", name="Retry")).to_be_hidden()


# A 1×1 PNG: the browser decodes it, so its thumbnail really loads.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d4944415478da63f8cfc0f01f0005000201a5c1a1a10000000049454e44ae426082"
)


def test_thumbnails_icons_overall_progress_duplicates_remove_and_clear(
    uploader: Uploader, local_storage: None, live_server: LiveServer, user: Any, tmp_path: Path
) -> None:
    page = uploader.page
    uploader.open()
    picture = payload("cat.png", PNG, "image/png")
    # A file on disk, as a user's: picked twice, it is the same file (name, size, modified).
    report = tmp_path / "report.pdf"
    report.write_bytes(b"%PDF-1.4 tiny")
    uploader.pick(picture)
    uploader.pick(report)
    for name in ("cat.png", "report.pdf"):
        uploader.wait_state(name, "done")

    thumb = uploader.row("cat.png").locator(".kind img")
    expect(thumb).to_have_attribute("src", re.compile(r"^blob:"))
    assert thumb.evaluate("img => img.naturalWidth") == 1  # loaded, not refused by the CSP
    expect(uploader.row("report.pdf").locator(".kind")).to_have_text("PDF")
    overall = page.get_by_test_id("overall")
    expect(overall).to_contain_text("2 of 2 file(s) done")
    expect(overall).to_contain_text("100%")

    # The same file again is refused, with a message; nothing is added.
    page.set_input_files("#file-input", [report])
    expect(page.get_by_test_id("uploader-notice")).to_have_text(
        "“report.pdf” is already in the list."
    )
    expect(page.get_by_test_id("upload-row")).to_have_count(2)

    uploader.row("report.pdf").get_by_role("button", name="Remove").click()
    expect(page.get_by_test_id("upload-row")).to_have_count(1)
    expect(overall).to_contain_text("1 of 1 file(s) done")
    overall.get_by_role("button", name="Clear completed").click()
    expect(page.get_by_test_id("upload-row")).to_have_count(0)
    expect(overall).to_be_hidden()
    assert record_named(user, "cat.png").upload_status == "completed"


DROP = """([type, names]) => {
  const data = new DataTransfer();
  for (const name of names) {
    data.items.add(new File(["dropped " + name], name, { type: "text/plain" }));
  }
  const event = new DragEvent(type, { dataTransfer: data, bubbles: true, cancelable: true });
  document.querySelector("h1").dispatchEvent(event);
}"""


def test_files_dropped_anywhere_on_the_page_are_uploaded(
    uploader: Uploader, local_storage: None, live_server: LiveServer, user: Any
) -> None:
    page = uploader.page
    uploader.open()
    overlay = page.get_by_test_id("drop-overlay")
    expect(overlay).to_be_hidden()
    page.evaluate(DROP, ["dragenter", ["dropped.txt"]])
    expect(overlay).to_be_visible()
    expect(overlay).to_have_text("Drop the files to upload them")
    page.evaluate(DROP, ["drop", ["dropped.txt"]])
    expect(overlay).to_be_hidden()
    uploader.wait_state("dropped.txt", "done")
    assert record_named(user, "dropped.txt").file_size == len(b"dropped dropped.txt")


def test_the_upload_page_shows_one_file_chooser(uploader: Uploader, local_storage: None) -> None:
    page = uploader.page
    uploader.open()
    # The native input is there for the label and for drops, but not shown beside it.
    box = page.locator("#file-input").bounding_box()
    assert box and box["width"] <= 1 and box["height"] <= 1
    expect(page.get_by_text("choose files")).to_be_visible()
    with page.expect_file_chooser() as chooser:
        page.get_by_text("choose files").click()
    assert chooser.value.is_multiple()


@on_stores("verifying")
def test_urls_the_verifying_store_refuses_as_expired_are_signed_again(
    uploader: Uploader, mode: Mode, settings: Any, live_server: LiveServer, user: Any
) -> None:
    """The verifying S3 answers 403 to an expired URL, early (before the body), no fault faked:
    the part is signed again and sent, with the stall watchdog short in case Chromium's next
    PUT waits on a connection the store kept open (this run does not always provoke that hang;
    test_a_stalled_part_is_aborted_and_sent_again covers the watchdog itself)."""
    page = uploader.page
    settings.UPLOADS_DEFAULT_PART_SIZE = mode.part_size
    settings.UPLOADS_BROWSER_STALL_SECONDS = 3
    settings.FILE_UPLOAD_PRESIGNED_URL_EXPIRATION = 0
    data = content(mode.part_size + 4321, seed=180)
    traffic = Traffic().watch(page)
    signed: set[int] = set()

    def renew(route: Route) -> None:
        numbers = set(json.loads(route.request.post_data or "{}")["part_numbers"])
        if numbers & signed:  # from the first re-sign on, URLs live for an hour again
            settings.FILE_UPLOAD_PRESIGNED_URL_EXPIRATION = 3600
        signed.update(numbers)
        route.continue_()

    page.route(lambda url: url.endswith("/presign"), renew)
    uploader.open().pick(payload("early.bin", data))

    uploader.wait_state("early.bin", "done", timeout=60_000)
    record = record_named(user, "early.bin")
    assert 403 in [status for _f, _n, status in traffic.responses]
    assert_completed_with(page, live_server, record, data)
