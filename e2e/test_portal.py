"""The portal's uploader in real Chromium: progress, several files, cancel, resume, expired URLs,
network faults, the file page, and hostile names — against the local store and S3 (moto, and
the verifying store that checks signatures and expiry; bucket CORS on both).

No sleeps: every wait is on state the page shows (data-state, aria-valuenow, messages) or on
requests and responses Playwright reports. Parts are slowed, held, refused or dropped with
`page.route`, which decides per part request, so each scenario plays out the same way every run.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import random
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core import signing
from django.core.management import call_command
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import FilePayload, Locator, Page, Request, Route, expect
from pytest_django.live_server_helper import LiveServer

from tests.factories import FileRecordFactory
from tests.helpers import ApiClient
from tests.testapp.models import Post
from uploads.models import FileRecord
from uploads.storage.local.tokens import PART_SALT

KIB = 1024
MIB = 1024 * KIB
XSS_NAME = "<img src=x onerror=alert(1)>.txt"
NONZERO = re.compile(r"^[1-9]\d*$")
# Long enough for a few MiB through moto on a loaded machine; a hang still fails in seconds.
UPLOAD_TIMEOUT_MS = 30_000
Status = FileRecord.Status
EXPIRED_BODY = "<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>"


def on_stores(*backends: str) -> pytest.MarkDecorator:
    """Run a scenario on these stores only: faults faked in the browser tell nothing more on
    the verifying store than on moto, and each store costs a browser run."""
    return pytest.mark.parametrize("backend", backends, indirect=True)


# --- bytes and files ------------------------------------------------------------------------


def content(size: int, seed: int) -> bytes:
    """Random bytes, different per seed: a misplaced or repeated part changes the file."""
    return random.Random(seed).randbytes(size)


def payload(name: str, data: bytes, mime: str = "application/octet-stream") -> FilePayload:
    return {"name": name, "mimeType": mime, "buffer": data}


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def part_bytes(data: bytes, part_size: int, number: int) -> bytes:
    return data[(number - 1) * part_size : number * part_size]


# --- part requests: which file, which part ----------------------------------------------------


def is_part_url(url: str) -> bool:
    """A part PUT target: the app's local part endpoint, or an S3 UploadPart URL."""
    parts = urlsplit(url)
    return parts.path.startswith("/local/parts/") or "partNumber=" in parts.query


def part_of(url: str) -> tuple[str, int]:
    """(file id, part number) of a part URL of either store."""
    parts = urlsplit(url)
    if parts.path.startswith("/local/parts/"):
        token = parts.path.removeprefix("/local/parts/").strip("/")
        # Read the token without its expiry check: expired URLs are part of these tests.
        grant = signing.loads(token, salt=PART_SALT)
        return str(grant["f"]), int(grant["p"])
    # S3 keys end with the file id's hex (uploads/<date>/<hex>); the part is in the query.
    file_hex = parts.path.rstrip("/").rsplit("/", 1)[-1]
    return str(uuid.UUID(file_hex)), int(parse_qs(parts.query)["partNumber"][0])


@dataclass
class Traffic:
    """Every part PUT and every re-sign the page sends, in order."""

    puts: list[tuple[str, int]] = field(default_factory=list)
    put_requests: list[Request] = field(default_factory=list)
    presigns: list[list[int]] = field(default_factory=list)
    responses: list[tuple[str, int, int]] = field(default_factory=list)
    origins: set[str] = field(default_factory=set)

    def watch(self, page: Page) -> Traffic:
        page.on("request", self._request)
        page.on("response", self._response)
        return self

    def _request(self, request: Request) -> None:
        if request.method == "PUT" and is_part_url(request.url):
            self.puts.append(part_of(request.url))
            self.put_requests.append(request)
            url = urlsplit(request.url)
            self.origins.add(f"{url.scheme}://{url.netloc}")
        elif request.method == "POST" and request.url.endswith("/presign"):
            self.presigns.append(json.loads(request.post_data or "{}")["part_numbers"])

    def _response(self, response: Any) -> None:
        request = response.request
        if request.method == "PUT" and is_part_url(request.url):
            self.responses.append((*part_of(request.url), response.status))

    def parts(self, file_id: str | None = None) -> list[int]:
        return [n for f, n in self.puts if file_id is None or f == file_id]

    def clear(self) -> None:
        self.puts.clear()
        self.put_requests.clear()
        self.presigns.clear()
        self.responses.clear()


class PartGate:
    """Routes part PUTs through `decide(file_id, part, attempt) -> action`.

    Actions: "pass" (continue), "hold" (keep the request pending until `release()`),
    "abort" (network error), or an int status to answer without reaching the store.
    """

    def __init__(
        self,
        page: Page,
        decide: Callable[[str, int, int], str | int],
        *,
        origin: str,
    ) -> None:
        self.decide = decide
        self.origin = origin
        self.attempts: dict[tuple[str, int], int] = {}
        self.held: list[Route] = []
        self.released = False
        page.route(is_part_url, self._handle)

    def _handle(self, route: Route) -> None:
        request = route.request
        if request.method != "PUT":  # a CORS preflight, if the browser routes one here
            route.continue_()
            return
        key = part_of(request.url)
        attempt = self.attempts[key] = self.attempts.get(key, 0) + 1
        action = self.decide(*key, attempt)
        if action == "hold" and self.released:
            action = "pass"
        if action == "pass":
            route.continue_()
        elif action == "hold":
            self.held.append(route)
        elif action == "abort":
            route.abort("connectionreset")
        else:
            # Answer as the store would, CORS included, so the page can read the status.
            route.fulfill(
                status=int(action),
                headers={
                    "Access-Control-Allow-Origin": self.origin,
                    "Access-Control-Expose-Headers": "ETag",
                    "Content-Type": "application/xml",
                },
                body=EXPIRED_BODY,
            )

    def release(self) -> None:
        """Let the held requests (and any later ones that would be held) through."""
        self.released = True
        held, self.held = self.held, []
        for route in held:
            route.continue_()

    def drop_held(self) -> None:
        """Fail whatever is still held (requests the page may already have given up on)."""
        held, self.held = self.held, []
        for route in held:
            with contextlib.suppress(PlaywrightError):
                route.abort()


class HeldRequests:
    """Requests matching `wanted` wait in the browser until `release()`; others pass."""

    def __init__(self, page: Page, url: Callable[[str], bool], wanted: Callable[[Request], bool]):
        self.wanted = wanted
        self.held: list[Route] = []
        self.released = False
        page.route(url, self._handle)

    def _handle(self, route: Route) -> None:
        if self.released or not self.wanted(route.request):
            route.continue_()
        else:
            self.held.append(route)

    def release(self) -> None:
        self.released = True
        held, self.held = self.held, []
        for route in held:
            route.continue_()


# --- fixtures -------------------------------------------------------------------------------


@dataclass
class Mode:
    name: str
    part_size: int
    parts_origin: str

    @property
    def is_s3(self) -> bool:
        return self.name != "local"

    @property
    def parts_for_faults(self) -> int:
        # Fewer parts against S3: its 5 MiB minimum makes each one slow to hand to the browser.
        return 2 if self.is_s3 else 3


@pytest.fixture
def local_storage(settings: Any) -> None:
    """Pin the local-disk store, whatever the environment configured."""
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    }


@pytest.fixture
def mode(backend: str, live_server: LiveServer, request: pytest.FixtureRequest) -> Mode:
    """The store under test, ready for a browser: S3 gets CORS for this page's exact origin."""
    if backend == "local":
        request.getfixturevalue("local_storage")
        return Mode("local", 256 * KIB, live_server.url)
    call_command("setup_bucket", "--origin", live_server.url)
    return Mode(backend, 5 * MIB, request.getfixturevalue(backend).endpoint)


@pytest.fixture
def dialogs(signed_in_page: Page) -> Iterator[list[str]]:
    """Every dialog the page opens (dismissed), for the test to check that none did."""
    seen: list[str] = []

    def record(dialog: Any) -> None:
        seen.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    signed_in_page.on("dialog", record)
    yield seen
    signed_in_page.remove_listener("dialog", record)


class Uploader:
    """The /upload/ page, driven like a user would."""

    def __init__(self, page: Page, live_server: LiveServer) -> None:
        self.page = page
        self.url = f"{live_server.url}/upload/"

    def open(self) -> Uploader:
        self.page.goto(self.url)
        expect(self.page.locator("#file-input")).to_be_attached()
        # The module has run once `mount()` exposed its handle.
        self.page.wait_for_function("() => window.directUploads !== undefined")
        return self

    def pick(self, *files: FilePayload | Path) -> None:
        picked: Any = list(files)  # buffers or paths; Playwright's stubs want one kind per call
        self.page.set_input_files("#file-input", picked)

    def row(self, name: str) -> Locator:
        rows = self.page.get_by_test_id("upload-row")
        return rows.filter(has=self.page.locator(".file-name").get_by_text(name, exact=True))

    def wait_state(self, name: str, state: str, timeout: int = UPLOAD_TIMEOUT_MS) -> None:
        row = self.row(name)
        try:
            expect(row).to_have_attribute("data-state", state, timeout=timeout)
        except AssertionError as exc:
            message = row.get_by_test_id("upload-message").all_text_contents()
            raise AssertionError(f"{name}: not {state}; row says {message!r}") from exc


@pytest.fixture
def uploader(signed_in_page: Page, live_server: LiveServer) -> Uploader:
    return Uploader(signed_in_page, live_server)


def record_named(user: Any, file_name: str) -> FileRecord:
    return FileRecord.objects.get(created_by=user, file_name=file_name)


def downloaded(page: Page, live_server: LiveServer, file_id: object) -> bytes:
    response = page.request.get(f"{live_server.url}/v1/files/{file_id}/download")
    expect(response).to_be_ok()
    return response.body()


def assert_completed_with(
    page: Page, live_server: LiveServer, record: FileRecord, data: bytes
) -> None:
    record.refresh_from_db()
    assert record.upload_status == Status.COMPLETED, record.failure_reason
    assert record.file_size == len(data)
    body = downloaded(page, live_server, record.pk)
    assert len(body) == len(data)
    assert body == data, "downloaded bytes differ from the source"


# --- 1. one large file, in parts, with visible progress ----------------------------------------


def test_large_file_uploads_in_parts_with_progress(
    uploader: Uploader, mode: Mode, settings: Any, live_server: LiveServer, user: Any
) -> None:
    page = uploader.page
    settings.UPLOADS_DEFAULT_PART_SIZE = 5 * MIB
    data = content(12 * MIB, seed=1)
    traffic = Traffic().watch(page)
    # Hold the last part until the page has shown progress: "before done" is then a fact.
    gate = PartGate(page, lambda _f, n, _a: "hold" if n == 3 else "pass", origin=live_server.url)

    uploader.open().pick(payload("big.bin", data))

    row = uploader.row("big.bin")
    bar = row.get_by_role("progressbar")
    expect(row).to_have_attribute("data-state", "sending")
    expect(bar).to_have_attribute("aria-valuenow", NONZERO)
    expect(row.get_by_test_id("upload-stats")).to_contain_text("of 12.0 MiB")
    # Still sending while the page shows progress: it advanced before the upload was done.
    assert row.get_attribute("data-state") == "sending"
    gate.release()

    uploader.wait_state("big.bin", "done")
    expect(bar).to_have_attribute("aria-valuenow", "100")
    expect(row.get_by_test_id("upload-stats")).to_contain_text("100%")
    record = record_named(user, "big.bin")
    assert (record.total_parts, record.part_size) == (3, 5 * MIB)
    assert sorted(traffic.parts(str(record.pk))) == [1, 2, 3]
    # The parts went from the browser straight to the store.
    assert traffic.origins == {mode.parts_origin}
    expect(row.locator("a[data-action=open]")).to_have_attribute("href", f"/files/{record.pk}/")

    page.goto(f"{live_server.url}/files/")
    listed = page.get_by_test_id("file-row").filter(has_text="big.bin")
    expect(listed).to_have_count(1)
    expect(listed).to_have_attribute("data-file-id", str(record.pk))
    expect(listed.locator(".status")).to_have_text("Completed")
    assert_completed_with(page, live_server, record, data)


# The page PUTs a part with fetch and reports what it could read, or the error it got.
PUT_FROM_PAGE = """async ([url, size]) => {
  try {
    const response = await fetch(url, { method: "PUT", body: new Uint8Array(size) });
    return { status: response.status, etag: response.headers.get("ETag") };
  } catch (error) {
    return { error: String(error) };
  }
}"""


@on_stores("s3", "verifying")
def test_only_the_page_origin_may_send_parts_to_the_bucket(
    signed_in_page: Page,
    mode: Mode,
    live_server: LiveServer,
    user: Any,
    backend: str,
    request: pytest.FixtureRequest,
) -> None:
    """The bucket's CORS lets the portal's origin PUT parts and read their ETag; a page from any
    other origin is refused by the browser before a byte is sent."""
    page = signed_in_page
    bucket = request.getfixturevalue(backend)
    init = ApiClient(user).post(
        "/v1/files/uploads",
        {"file_name": "cors.bin", "file_size": mode.part_size + 10, "part_size": mode.part_size},
    )
    assert init.status_code == 201, init.content
    upload = init.json()
    first, last = (t["url"] for t in upload["presigned_urls"])
    other_origin = live_server.url.replace("localhost", "127.0.0.1")
    assert other_origin != live_server.url

    def preflight(url: str, origin: str) -> Any:
        return page.request.fetch(
            url,
            method="OPTIONS",
            headers={"Origin": origin, "Access-Control-Request-Method": "PUT"},
        )

    allowed = preflight(first, live_server.url)
    assert allowed.ok, allowed.text()
    assert allowed.headers["access-control-allow-origin"] == live_server.url
    assert "PUT" in allowed.headers["access-control-allow-methods"]
    assert "etag" in allowed.headers["access-control-expose-headers"].lower()
    refused = preflight(last, other_origin)
    assert "access-control-allow-origin" not in refused.headers, refused.headers

    # The browser itself: the portal's page sends a part and reads its ETag...
    sent = page.evaluate(PUT_FROM_PAGE, [first, mode.part_size])
    assert sent["status"] == 200, sent
    assert sent["etag"], "ETag not exposed to the page"
    # ...and the same code from another origin never gets its part to the store.
    stranger = page.context.new_page()
    stranger.goto(f"{other_origin}/accounts/login/")
    blocked = stranger.evaluate(PUT_FROM_PAGE, [last, 10])
    assert "error" in blocked, blocked
    held = bucket.client.list_parts(
        Bucket=bucket.bucket,
        Key=FileRecord.objects.get(pk=upload["id"]).storage_key,
        UploadId=upload["upload_id"],
    )
    assert [(p["PartNumber"], p["ETag"]) for p in held["Parts"]] == [(1, sent["etag"])]


# --- 2. several files at once, one cancelled mid-way --------------------------------------------


def test_several_files_at_once_one_cancelled_midway(
    uploader: Uploader, local_storage: None, settings: Any, live_server: LiveServer, user: Any
) -> None:
    page = uploader.page
    settings.UPLOADS_DEFAULT_PART_SIZE = 256 * KIB
    files = {
        "one.bin": content(600 * KIB, seed=21),
        "slow.bin": content(1 * MIB, seed=22),
        "three.bin": content(300 * KIB + 7, seed=23),
    }

    names: dict[str, str] = {}

    def decide(file_id: str, number: int, _attempt: int) -> str:
        # slow.bin: part 1 goes through (progress shows), the rest wait for ever.
        if file_id not in names:
            names[file_id] = FileRecord.objects.get(pk=file_id).file_name
        return "hold" if names[file_id] == "slow.bin" and number > 1 else "pass"

    gate = PartGate(page, decide, origin=live_server.url)
    uploader.open().pick(*(payload(name, data) for name, data in files.items()))

    slow_row = uploader.row("slow.bin")
    expect(slow_row).to_have_attribute("data-state", "sending")
    expect(slow_row.get_by_role("progressbar")).to_have_attribute("aria-valuenow", NONZERO)
    slow = record_named(user, "slow.bin")
    with page.expect_response(
        lambda r: r.request.method == "DELETE" and r.url.endswith(f"/files/uploads/{slow.pk}")
    ) as aborted:
        slow_row.get_by_role("button", name="Cancel").click()
    assert aborted.value.status == 204

    uploader.wait_state("slow.bin", "cancelled")
    expect(slow_row.get_by_test_id("upload-message")).to_have_text("Cancelled; nothing was kept.")
    for name in ("one.bin", "three.bin"):
        uploader.wait_state(name, "done")
    gate.drop_held()

    slow.refresh_from_db()
    assert slow.upload_status == Status.ABORTED
    assert slow.upload_id == ""  # the store's multipart upload is gone too
    for name in ("one.bin", "three.bin"):
        assert_completed_with(page, live_server, record_named(user, name), files[name])
    # The cancelled upload does not come back as "unfinished" after a reload.
    uploader.open()
    expect(page.locator(f'[data-unfinished-id="{slow.pk}"]')).to_have_count(0)


def test_cancel_while_starting_aborts_the_upload_the_server_just_created(
    uploader: Uploader, local_storage: None, live_server: LiveServer, user: Any
) -> None:
    page = uploader.page
    traffic = Traffic().watch(page)
    # The server is slow to answer "initiate": the user cancels before it has.
    initiate = HeldRequests(
        page, lambda url: urlsplit(url).path == "/v1/files/uploads", lambda r: r.method == "POST"
    )
    uploader.open().pick(payload("early.bin", content(100 * KIB, seed=24)))
    row = uploader.row("early.bin")
    expect(row).to_have_attribute("data-state", "initializing")
    row.get_by_role("button", name="Cancel").click()
    expect(row).to_have_attribute("data-state", "cancelled")

    with page.expect_response(
        lambda r: r.request.method == "DELETE" and "/v1/files/uploads/" in r.url
    ) as aborted:
        initiate.release()
    assert aborted.value.status == 204

    record = record_named(user, "early.bin")
    assert record.upload_status == Status.ABORTED
    expect(row).to_have_attribute("data-state", "cancelled")
    expect(row.get_by_test_id("upload-message")).to_have_text("Cancelled; nothing was kept.")
    assert traffic.puts == []


# --- 3. resume after a reload: only the missing parts are sent ---------------------------------


def _stored_part(number: int) -> Callable[[Any], bool]:
    def matches(response: Any) -> bool:
        url = response.url
        return bool(
            response.request.method == "PUT" and is_part_url(url) and part_of(url)[1] == number
        )

    return matches


def _start_then_interrupt(
    uploader: Uploader, live_server: LiveServer, file: FilePayload | Path, stored: int
) -> str:
    """Start an upload, let parts 1..stored reach the store, hold the rest, reload the page."""
    page = uploader.page
    gate = PartGate(
        page, lambda _f, n, _a: "pass" if n <= stored else "hold", origin=live_server.url
    )
    uploader.open()
    expected = {n: page.expect_response(_stored_part(n)) for n in range(1, stored + 1)}
    with contextlib.ExitStack() as stack:
        waits = {n: stack.enter_context(cm) for n, cm in expected.items()}
        uploader.pick(file)
    for n, info in waits.items():
        assert info.value.ok, f"part {n} was not stored"
    file_id = part_of(waits[1].value.url)[0]

    # Leaving mid-upload may ask "leave site?"; the user says yes.
    def leave(dialog: Any) -> None:
        if dialog.type == "beforeunload":
            dialog.accept()

    page.on("dialog", leave)
    page.reload()
    page.remove_listener("dialog", leave)
    gate.drop_held()
    page.unroute_all(behavior="ignoreErrors")
    return file_id


def stored_parts(page: Page, live_server: LiveServer, file_id: str) -> dict[str, Any]:
    """What `GET …/parts` tells the page about an unfinished upload."""
    response = page.request.get(f"{live_server.url}/v1/files/uploads/{file_id}/parts")
    expect(response).to_be_ok()
    listing: dict[str, Any] = response.json()
    return listing


def vouched_for(listing: dict[str, Any], data: bytes) -> set[int]:
    """Stored parts whose listed checksum is that of the same part of `data`. A store that lists
    no part checksums (moto; the local store today) vouches for none."""
    size = listing["part_size"]
    return {
        p["part_number"]
        for p in listing["parts"]
        if p["checksum"] and p["checksum"] == sha256_b64(part_bytes(data, size, p["part_number"]))
    }


def resume_with(uploader: Uploader, file_id: str, source: FilePayload | Path, how: str) -> None:
    page = uploader.page
    if how == "resume-button":
        unfinished = page.locator(f'[data-unfinished-id="{file_id}"]')
        with page.expect_file_chooser() as chooser:
            unfinished.get_by_role("button", name="Resume (pick the file again)").click()
        chooser.value.set_files(source)
    else:
        uploader.pick(source)


@on_stores("local", "s3")
@pytest.mark.parametrize("how", ["resume-button", "same-file"])
def test_resume_after_reload_sends_only_what_the_store_lacks_or_cannot_vouch_for(
    uploader: Uploader,
    mode: Mode,
    settings: Any,
    live_server: LiveServer,
    user: Any,
    tmp_path: Path,
    how: str,
) -> None:
    page = uploader.page
    settings.UPLOADS_DEFAULT_PART_SIZE = mode.part_size
    # S3's 5 MiB parts are slow to hand to the browser: two are enough to show the skip there.
    parts, stored = (2, 1) if mode.is_s3 else (6, 2)
    size = (parts - 1) * mode.part_size + 12_345
    data = content(size, seed=3)
    name = "resume.bin"
    source: FilePayload | Path = payload(name, data)
    if how == "same-file":
        # A file on disk keeps its lastModified between picks, as a user's real file does; the
        # uploader's memory (localStorage) is keyed on name, size and lastModified.
        source = tmp_path / name
        source.write_bytes(data)
    traffic = Traffic().watch(page)

    file_id = _start_then_interrupt(uploader, live_server, source, stored)

    record = FileRecord.objects.get(pk=file_id)
    assert record.upload_status == Status.UPLOADING
    assert (record.total_parts, record.checksum_algorithm) == (parts, "SHA256")
    listing = stored_parts(page, live_server, file_id)
    assert [p["part_number"] for p in listing["parts"]] == list(range(1, stored + 1))
    kept = vouched_for(listing, data)
    unfinished = page.locator(f'[data-unfinished-id="{file_id}"]')
    expect(unfinished).to_contain_text(name)
    traffic.clear()

    resume_with(uploader, file_id, source, how)

    uploader.wait_state(name, "done")
    row = uploader.row(name)
    # What was found stays said after the upload is done.
    expect(row.get_by_test_id("upload-note")).to_contain_text(
        f"Resuming: {len(kept)} part(s) already stored."
    )
    # What the store lacked, and what it holds but cannot show to be this file's, went over the
    # wire, each part once; the parts it vouched for did not.
    assert sorted(traffic.parts(file_id)) == sorted(set(range(1, parts + 1)) - kept)
    assert set(traffic.parts()) == set(traffic.parts(file_id))
    expect(row.locator("a[data-action=open]")).to_have_attribute("href", f"/files/{file_id}/")
    expect(unfinished).to_have_count(0)  # the finished upload leaves the unfinished list
    assert FileRecord.objects.filter(created_by=user).count() == 1  # resumed, not restarted
    assert_completed_with(page, live_server, record, data)


def test_resume_with_another_file_of_the_same_size_ends_with_exactly_its_bytes(
    uploader: Uploader, mode: Mode, settings: Any, live_server: LiveServer, user: Any
) -> None:
    """The Resume button accepts any file of the upload's size: whatever the store holds of the
    first file must not end up in the second."""
    page = uploader.page
    settings.UPLOADS_DEFAULT_PART_SIZE = mode.part_size
    parts, stored = (2, 1) if mode.is_s3 else (4, 2)
    size = (parts - 1) * mode.part_size + 999
    first = content(size, seed=61)
    # The same bytes but one in part 1: only a byte-exact check tells them apart.
    second = bytearray(first)
    second[17] ^= 0xFF
    traffic = Traffic().watch(page)
    file_id = _start_then_interrupt(uploader, live_server, payload("first.bin", first), stored)
    listing = stored_parts(page, live_server, file_id)
    assert len(listing["parts"]) == stored
    kept = vouched_for(listing, bytes(second))
    assert 1 not in kept
    traffic.clear()

    resume_with(uploader, file_id, payload("second.bin", bytes(second)), "resume-button")

    uploader.wait_state("second.bin", "done")
    assert sorted(traffic.parts(file_id)) == sorted(set(range(1, parts + 1)) - kept)
    record = FileRecord.objects.get(pk=file_id)
    assert FileRecord.objects.filter(created_by=user).count() == 1
    assert_completed_with(page, live_server, record, bytes(second))


def test_each_part_carries_its_sha256_signed_into_its_url(
    uploader: Uploader, mode: Mode, settings: Any, live_server: LiveServer, user: Any
) -> None:
    page = uploader.page
    settings.UPLOADS_DEFAULT_PART_SIZE = mode.part_size
    parts = mode.parts_for_faults
    data = content((parts - 1) * mode.part_size + 321, seed=64)
    traffic = Traffic().watch(page)

    uploader.open().pick(payload("summed.bin", data))

    uploader.wait_state("summed.bin", "done")
    record = record_named(user, "summed.bin")
    assert record.checksum_algorithm == "SHA256"
    sent = {part_of(r.url)[1]: r for r in traffic.put_requests}
    assert sorted(sent) == list(range(1, parts + 1))
    for number, request in sent.items():
        checksum = sha256_b64(part_bytes(data, mode.part_size, number))
        assert request.headers["x-amz-checksum-sha256"] == checksum
        url = urlsplit(request.url)
        if mode.is_s3:
            signed = parse_qs(url.query)["X-Amz-SignedHeaders"][0].split(";")
            assert "x-amz-checksum-sha256" in signed
        else:
            token = url.path.removeprefix("/local/parts/").strip("/")
            assert signing.loads(token, salt=PART_SALT)["c"] == checksum
    assert_completed_with(page, live_server, record, data)


def test_checksums_can_be_turned_off(
    uploader: Uploader, local_storage: None, settings: Any, live_server: LiveServer, user: Any
) -> None:
    """UPLOADS_BROWSER_CHECKSUMS=0, for a store that refuses checksum headers: the spec's path."""
    page = uploader.page
    settings.UPLOADS_DEFAULT_PART_SIZE = 64 * KIB
    settings.UPLOADS_BROWSER_CHECKSUMS = False
    data = content(150 * KIB, seed=65)
    traffic = Traffic().watch(page)

    uploader.open().pick(payload("plain.bin", data))

    uploader.wait_state("plain.bin", "done")
    record = record_named(user, "plain.bin")
    assert record.checksum_algorithm == ""
    assert all("x-amz-checksum-sha256" not in r.headers for r in traffic.put_requests)
    assert traffic.presigns == []  # initiate signed every part, as before
    assert_completed_with(page, live_server, record, data)


def test_a_part_altered_on_the_wire_is_refused_and_sent_again(
    uploader: Uploader, local_storage: None, settings: Any, live_server: LiveServer, user: Any
) -> None:
    """The local store checks the body against the checksum signed into the URL (moto checks
    nothing, so this runs on local disk; a verifying S3 answers BadDigest the same way)."""
    page = uploader.page
    settings.UPLOADS_DEFAULT_PART_SIZE = 64 * KIB
    data = content(150 * KIB, seed=62)
    traffic = Traffic().watch(page)
    altered: list[int] = []

    def alter_part_2_once(route: Route) -> None:
        request = route.request
        if request.method != "PUT" or part_of(request.url)[1] != 2 or altered:
            route.continue_()
            return
        body = bytearray(request.post_data_buffer or b"")
        body[1000] ^= 0xFF
        altered.append(2)
        route.continue_(post_data=bytes(body))

    page.route(is_part_url, alter_part_2_once)
    uploader.open().pick(payload("altered.bin", data))

    uploader.wait_state("altered.bin", "done")
    record = record_named(user, "altered.bin")
    assert altered == [2]
    assert [status for _f, n, status in traffic.responses if n == 2] == [400, 200]
    assert_completed_with(page, live_server, record, data)


def test_parts_a_refused_complete_names_are_sent_again(
    uploader: Uploader, local_storage: None, settings: Any, live_server: LiveServer, user: Any
) -> None:
    """Complete answers 400 parts_mismatch (the upload left open) once: the page sends the named
    part again, hashed again on a fresh URL, and completes."""
    page = uploader.page
    settings.UPLOADS_DEFAULT_PART_SIZE = 64 * KIB
    data = content(150 * KIB, seed=63)
    traffic = Traffic().watch(page)
    refused: list[str] = []

    def refuse_first_complete(route: Route) -> None:
        if route.request.method != "POST" or refused:
            route.continue_()
            return
        refused.append(route.request.url)
        route.fulfill(
            status=400,
            content_type="application/json",
            body=json.dumps(
                {
                    "detail": "Part 2 does not match what the store holds.",
                    "code": "parts_mismatch",
                    "extra": {"parts": [2], "upload_status": "uploading"},
                }
            ),
        )

    page.route(lambda url: url.endswith("/complete"), refuse_first_complete)
    uploader.open().pick(payload("repaired.bin", data))

    uploader.wait_state("repaired.bin", "done")
    record = record_named(user, "repaired.bin")
    assert len(refused) == 1
    assert sorted(traffic.parts(str(record.pk))) == [1, 2, 2, 3]
    assert traffic.presigns[-1] == [2]
    assert_completed_with(page, live_server, record, data)


def test_resume_button_refuses_a_different_file(
    uploader: Uploader, local_storage: None, settings: Any, live_server: LiveServer, user: Any
) -> None:
    page = uploader.page
    settings.UPLOADS_DEFAULT_PART_SIZE = 64 * KIB
    data = content(200 * KIB, seed=31)
    traffic = Traffic().watch(page)
    file_id = _start_then_interrupt(uploader, live_server, payload("a.bin", data), 1)
    traffic.clear()

    unfinished = page.locator(f'[data-unfinished-id="{file_id}"]')
    with page.expect_file_chooser() as chooser:
        unfinished.get_by_role("button", name="Resume (pick the file again)").click()
    chooser.value.set_files(payload("other.bin", content(10 * KIB, seed=32)))

    expect(unfinished.locator(".message")).to_contain_text(
        "is not the file this upload started with"
    )
    expect(page.get_by_test_id("upload-row")).to_have_count(0)
    assert traffic.puts == []
    assert FileRecord.objects.get(pk=file_id).upload_status == Status.UPLOADING


def test_closing_the_resume_chooser_leaves_the_next_pick_a_new_upload(
    uploader: Uploader, local_storage: None, settings: Any, live_server: LiveServer, user: Any
) -> None:
    page = uploader.page
    settings.UPLOADS_DEFAULT_PART_SIZE = 64 * KIB
    file_id = _start_then_interrupt(
        uploader, live_server, payload("a.bin", content(200 * KIB, seed=33)), 1
    )
    page.evaluate(
        """() => {
          const input = document.querySelector("#file-input");
          window.chooserClosed = new Promise((resolve) =>
            input.addEventListener("cancel", resolve, { once: true }));
        }"""
    )
    # Headless Chromium closes a chooser nobody waits for at once: the user pressed "Cancel".
    unfinished = page.locator(f'[data-unfinished-id="{file_id}"]')
    unfinished.get_by_role("button", name="Resume (pick the file again)").click()
    page.evaluate("() => window.chooserClosed")

    fresh = content(30 * KIB, seed=34)
    uploader.pick(payload("fresh.bin", fresh))

    uploader.wait_state("fresh.bin", "done")
    expect(unfinished.locator(".message")).to_have_text("")
    assert_completed_with(page, live_server, record_named(user, "fresh.bin"), fresh)
    assert FileRecord.objects.get(pk=file_id).upload_status == Status.UPLOADING


def test_discard_an_unfinished_upload(
    uploader: Uploader, local_storage: None, settings: Any, live_server: LiveServer, user: Any
) -> None:
    page = uploader.page
    settings.UPLOADS_DEFAULT_PART_SIZE = 64 * KIB
    file_id = _start_then_interrupt(
        uploader, live_server, payload("left.bin", content(200 * KIB, seed=35)), 1
    )
    unfinished = page.locator(f'[data-unfinished-id="{file_id}"]')
    asked: list[str] = []

    def accept(dialog: Any) -> None:
        asked.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    unfinished.get_by_role("button", name="Discard").click()

    expect(unfinished).to_have_count(0)
    assert asked == ["Discard the unfinished upload of “left.bin”?"]
    record = FileRecord.objects.get(pk=file_id)
    assert (record.upload_status, record.upload_id) == (Status.ABORTED, "")
    page.reload()
    expect(page.get_by_test_id("no-unfinished")).to_be_visible()


# --- 4. expired URLs are signed again --------------------------------------------------------


@on_stores("local", "s3")
def test_refused_part_url_is_resigned_and_the_upload_finishes(
    uploader: Uploader, mode: Mode, settings: Any, live_server: LiveServer, user: Any
) -> None:
    """The store answers 403 (as S3 does to an expired signature) to each part's first PUT."""
    page = uploader.page
    settings.UPLOADS_DEFAULT_PART_SIZE = mode.part_size
    parts = mode.parts_for_faults
    data = content((parts - 1) * mode.part_size + 1000, seed=4)
    traffic = Traffic().watch(page)
    PartGate(page, lambda _f, _n, attempt: 403 if attempt == 1 else "pass", origin=live_server.url)

    uploader.open().pick(payload("expired.bin", data))

    uploader.wait_state("expired.bin", "done")
    record = record_named(user, "expired.bin")
    assert record.total_parts == parts
    assert traffic.presigns, "the page never asked for fresh URLs"
    assert {n for batch in traffic.presigns for n in batch} >= set(range(1, parts + 1))
    # Every part was tried twice: once refused, once with its fresh URL.
    assert sorted(traffic.parts(str(record.pk))) == sorted([*range(1, parts + 1)] * 2)
    assert_completed_with(page, live_server, record, data)


def test_really_expired_local_urls_are_resigned(
    uploader: Uploader, local_storage: None, settings: Any, live_server: LiveServer, user: Any
) -> None:
    """Local store, no faking: URLs signed with no lifetime left are refused by the app itself."""
    page = uploader.page
    settings.UPLOADS_DEFAULT_PART_SIZE = 64 * KIB
    settings.FILE_UPLOAD_PRESIGNED_URL_EXPIRATION = 0
    data = content(150 * KIB, seed=41)
    traffic = Traffic().watch(page)

    signed: set[int] = set()
    signed_dead: set[int] = set()

    def renew(route: Route) -> None:
        numbers = set(json.loads(route.request.post_data or "{}")["part_numbers"])
        # From the first re-sign of a part on, URLs live for an hour again.
        if numbers & signed:
            settings.FILE_UPLOAD_PRESIGNED_URL_EXPIRATION = 3600
        if settings.FILE_UPLOAD_PRESIGNED_URL_EXPIRATION == 0:
            signed_dead.update(numbers)
        signed.update(numbers)
        route.continue_()

    page.route(lambda url: url.endswith("/presign"), renew)
    uploader.open().pick(payload("stale.bin", data))

    uploader.wait_state("stale.bin", "done")
    record = record_named(user, "stale.bin")
    first_answers: dict[int, int] = {}
    for _f, number, status in traffic.responses:
        first_answers.setdefault(number, status)
    # Every part first signed with no lifetime left was refused, then signed again.
    assert 1 in signed_dead
    assert {n: first_answers[n] for n in signed_dead} == dict.fromkeys(signed_dead, 403)
    assert sorted(first_answers) == [1, 2, 3], traffic.responses
    assert_completed_with(page, live_server, record, data)


# --- 5. network faults -------------------------------------------------------------------------


@on_stores("local", "s3")
def test_dropped_part_requests_are_retried(
    uploader: Uploader, mode: Mode, settings: Any, live_server: LiveServer, user: Any
) -> None:
    page = uploader.page
    settings.UPLOADS_DEFAULT_PART_SIZE = mode.part_size
    parts = mode.parts_for_faults
    data = content((parts - 1) * mode.part_size + 999, seed=5)
    traffic = Traffic().watch(page)
    # The first and the last part lose their first connection; any other goes through at once.
    PartGate(
        page,
        lambda _f, n, attempt: "abort" if n in (1, parts) and attempt == 1 else "pass",
        origin=live_server.url,
    )

    uploader.open().pick(payload("flaky.bin", data))

    uploader.wait_state("flaky.bin", "done")
    record = record_named(user, "flaky.bin")
    assert record.total_parts == parts
    assert sorted(traffic.parts(str(record.pk))) == sorted([*range(1, parts + 1), 1, parts])
    assert_completed_with(page, live_server, record, data)


def test_permanent_network_fault_fails_the_row_and_leaves_a_resumable_upload(
    signed_in_page: Page,
    uploader: Uploader,
    local_storage: None,
    settings: Any,
    live_server: LiveServer,
    user: Any,
) -> None:
    page = signed_in_page
    settings.UPLOADS_DEFAULT_PART_SIZE = 64 * KIB
    data = content(200 * KIB, seed=51)
    traffic = Traffic().watch(page)
    # The retries back off for ~15 s in all; a fake clock skips the waits instead of sleeping.
    page.clock.install()
    healed = False
    gate = PartGate(
        page, lambda _f, n, _a: "abort" if n == 2 and not healed else "pass", origin=live_server.url
    )

    uploader.open().pick(payload("doomed.bin", data))

    row = uploader.row("doomed.bin")
    message = row.get_by_test_id("upload-message")
    for attempt in range(2, 7):
        expect(message).to_have_text(f"Retrying part 2 (attempt {attempt})…")
        page.clock.fast_forward("00:20")
    uploader.wait_state("doomed.bin", "failed")
    expect(message).to_have_text("Network error on part 2.")
    expect(row.get_by_role("button", name="Retry")).to_be_visible()
    record = record_named(user, "doomed.bin")
    assert traffic.parts(str(record.pk)).count(2) == 6  # the first try and five retries
    record.refresh_from_db()
    assert record.upload_status == Status.UPLOADING  # resumable, not completed, not failed

    # The fault clears; the same row picks up where it stopped.
    healed = True
    traffic.clear()
    row.get_by_role("button", name="Retry").click()
    uploader.wait_state("doomed.bin", "done")
    assert traffic.parts(str(record.pk)) == [2]
    assert gate.attempts[(str(record.pk), 2)] == 7
    assert_completed_with(page, live_server, record, data)


# --- 6. the file page: inline edit, parent, delete ---------------------------------------------


@pytest.fixture
def completed_file(user: Any) -> FileRecord:
    record: FileRecord = FileRecordFactory(  # type: ignore[no-untyped-call, assignment]
        created_by=user, name="Draft", file_name="draft.txt", description="first"
    )
    return record


def test_file_page_edit_parent_and_delete(
    signed_in_page: Page, live_server: LiveServer, completed_file: FileRecord
) -> None:
    page = signed_in_page
    post = Post.objects.create(title="Launch")
    page.goto(f"{live_server.url}/files/{completed_file.pk}/")

    # Inline edit: the form replaces the heading in place (no navigation), then saves.
    page.get_by_role("link", name="Edit name and description").click()
    page.get_by_label("Name", exact=True).fill("Final report")
    page.get_by_label("Description").fill("Reviewed\nand approved")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_test_id("file-name")).to_have_text("Final report")
    expect(page.get_by_test_id("file-description")).to_contain_text("Reviewed")
    expect(page).to_have_url(f"{live_server.url}/files/{completed_file.pk}/")
    expect(page).to_have_title("Final report · Direct Uploads")
    completed_file.refresh_from_db()
    assert (completed_file.name, completed_file.description) == (
        "Final report",
        "Reviewed\nand approved",
    )

    # An empty name is refused in place, and nothing is saved.
    page.get_by_role("link", name="Edit name and description").click()
    name_box = page.get_by_label("Name", exact=True)
    name_box.fill("")
    name_box.evaluate("el => el.removeAttribute('required')")  # get past the browser's check
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#name-error")).to_have_text("This field is required.")
    page.get_by_role("link", name="Cancel").click()
    expect(page.get_by_test_id("file-name")).to_have_text("Final report")

    # Set a parent: an unknown type first (the service's message), then a real post.
    page.get_by_label("Parent type (app_label.model)").fill("nope.thing")
    page.get_by_label("Parent id").fill("1")
    page.get_by_role("button", name="Set parent").click()
    expect(page.locator("#parent [role=alert]")).to_have_text(
        "Unknown parent type 'nope.thing'; use 'app_label.model'."
    )
    page.get_by_label("Parent type (app_label.model)").fill("testapp.post")
    page.get_by_label("Parent id").fill(str(post.pk))
    page.get_by_role("button", name="Set parent").click()
    expect(page.get_by_test_id("parent")).to_have_text(f"testapp.post #{post.pk}")
    expect(page.locator("#parent [role=status]")).to_have_text("Saved.")
    completed_file.refresh_from_db()
    assert completed_file.parent == post

    # Delete asks first; saying no keeps the file, saying yes removes it and goes to the list.
    page.once("dialog", lambda d: d.dismiss())
    page.get_by_test_id("delete").click()
    expect(page).to_have_url(f"{live_server.url}/files/{completed_file.pk}/")
    assert FileRecord.objects.filter(pk=completed_file.pk).exists()

    confirms: list[str] = []

    def accept(dialog: Any) -> None:
        confirms.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    page.get_by_test_id("delete").click()
    expect(page).to_have_url(f"{live_server.url}/files/")
    expect(page.get_by_test_id("empty")).to_be_visible()
    assert confirms == ["Delete “Final report”? This cannot be undone."]
    expect(page.get_by_test_id("message")).to_have_text("“Final report” deleted.")
    # Hidden from its owner at once; the bytes wait for the purge.
    assert not FileRecord.objects.visible().filter(pk=completed_file.pk).exists()

    # Back to the file's page: the styled page, with the menu, says the file is gone.
    page.go_back()
    expect(page).to_have_url(f"{live_server.url}/files/{completed_file.pk}/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Not found")
    expect(page.get_by_test_id("error")).to_contain_text("“Final report” was deleted.")
    expect(page.get_by_role("navigation", name="Main")).to_be_visible()
    expect(page.get_by_test_id("delete")).to_have_count(0)


# --- 7. a hostile file name stays text ---------------------------------------------------------


def test_html_file_name_shows_as_text_everywhere(
    uploader: Uploader,
    local_storage: None,
    dialogs: list[str],
    live_server: LiveServer,
    user: Any,
) -> None:
    page = uploader.page
    data = b"just text\n"

    uploader.open().pick(payload(XSS_NAME, data, "text/plain"))

    row = uploader.row(XSS_NAME)
    uploader.wait_state(XSS_NAME, "done")
    expect(row.locator(".file-name")).to_have_text(XSS_NAME)
    expect(row.locator("img")).to_have_count(0)
    record = record_named(user, XSS_NAME)
    assert record.name == XSS_NAME

    page.goto(f"{live_server.url}/files/")
    link = page.get_by_test_id("file-row").get_by_role("link")
    expect(link).to_have_text(XSS_NAME)
    expect(page.locator("#file-table img")).to_have_count(0)

    link.click()
    expect(page).to_have_url(f"{live_server.url}/files/{record.pk}/")
    expect(page.get_by_test_id("file-name")).to_have_text(XSS_NAME)
    page.get_by_role("link", name="Edit name and description").click()
    expect(page.get_by_label("Name", exact=True)).to_have_value(XSS_NAME)
    expect(page.locator("main img")).to_have_count(0)
    assert downloaded(page, live_server, record.pk) == data
    assert dialogs == [], f"a dialog opened: {dialogs}"
