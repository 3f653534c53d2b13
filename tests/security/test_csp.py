"""The portal's Content-Security-Policy: what the header says, that the rendered pages keep to
it, and — in real Chromium — that the pages and the uploader work under it with no violation,
also in S3 mode where the browser PUTs parts to the bucket's origin.

tests/settings.py widens connect-src to loopback for the rest of the suite (it switches storage
while pages are open); every test here empties that, so the real policy is what is checked.
"""

from __future__ import annotations

import os
import re
import threading
from html.parser import HTMLParser
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client

from tests.helpers import ApiClient

PART = 1024
PORTAL_PAGES = ["/accounts/login/", "/", "/files/", "/upload/", "/staff/"]


@pytest.fixture(autouse=True)
def strict_policy(settings: Any) -> None:
    settings.UPLOADS_CSP_CONNECT_SRC = []


def directives(response: Any) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    policy = {}
    for item in header.split(";"):
        name, *values = item.split()
        policy[name] = values
    return policy


class PageAudit(HTMLParser):
    """Everything in a page that a strict CSP would block."""

    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []
        self.nonces: set[str] = set()
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name, value in attrs:
            if name.startswith("on"):
                self.problems.append(f"inline handler {name}= on <{tag}>")
            if name == "style":
                self.problems.append(f"inline style on <{tag}>: {value}")
            if name in ("href", "src", "action") and (value or "").startswith("javascript:"):
                self.problems.append(f"javascript: URL on <{tag}>")
        if tag == "style":
            self.problems.append("<style> element")
        if tag == "script":
            self._in_script = "src" not in values
            src = values.get("src") or ""
            if re.match(r"^(https?:)?//", src):
                self.problems.append(f"script from another origin: {src}")
            if values.get("type") == "application/json":
                self._in_script = False  # data, never executed
            elif values.get("nonce"):
                self.nonces.add(str(values["nonce"]))
            elif self._in_script:
                self.problems.append("inline <script> without a nonce")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False


def test_policy_directives_on_portal_pages(client: Client, staff_user: Any, local_disk: None):
    client.force_login(staff_user)
    for path in PORTAL_PAGES:
        response = client.get(path, follow=True)
        assert response.status_code == 200, path
        policy = directives(response)
        assert policy["default-src"] == ["'self'"]
        assert policy["script-src"][0] == "'self'" and len(policy["script-src"]) == 2
        assert re.fullmatch(r"'nonce-[\w-]{16,}'", policy["script-src"][1]), policy["script-src"]
        assert policy["style-src"] == ["'self'"]
        assert policy["img-src"] == ["'self'", "data:"]
        assert policy["connect-src"] == ["'self'"]  # local disk: parts go to this app
        assert policy["frame-ancestors"] == ["'none'"]
        assert policy["object-src"] == ["'none'"]
        assert "'unsafe-inline'" not in response["Content-Security-Policy"]
        assert "'unsafe-eval'" not in response["Content-Security-Policy"]


def test_rendered_pages_keep_to_the_policy(client: Client, staff_user: Any, local_disk: None):
    """No inline script without the response's nonce, no inline style or handler, anywhere."""
    client.force_login(staff_user)
    done = ApiClient(staff_user).upload(b"x" * 3000, part_size=PART)
    pages = [*PORTAL_PAGES, f"/files/{done['id']}/", f"/files/{done['id']}/edit/",
             f"/files/{done['id']}/delete/", "/v1/docs", "/admin/", "/no-such-page/"]  # fmt: skip
    for path in pages:
        response = client.get(path, follow=True)
        assert response.status_code == (404 if path == "/no-such-page/" else 200), path
        audit = PageAudit()
        audit.feed(response.content.decode())
        assert not audit.problems, (path, audit.problems)
        nonce = directives(response)["script-src"][-1]
        for used in audit.nonces:
            assert nonce == f"'nonce-{used}'", (path, used, nonce)
    # htmx must not inject its indicator <style>: the policy would refuse it.
    page = client.get("/files/").content.decode()
    assert '<meta name="htmx-config" content=\'{"includeIndicatorStyles": false}\'>' in page


def test_each_response_gets_a_fresh_nonce(client: Client, user: Any) -> None:
    first = directives(client.get("/accounts/login/"))["script-src"][-1]
    second = directives(client.get("/accounts/login/"))["script-src"][-1]
    assert first != second


def test_s3_mode_allows_the_buckets_origin_only(client: Client, user: Any, s3: Any) -> None:
    client.force_login(user)
    policy = directives(client.get("/upload/"))
    assert policy["connect-src"] == ["'self'", s3.endpoint]


def test_extra_connect_origins_come_from_the_setting(client: Client, user: Any, settings: Any):
    settings.UPLOADS_CSP_CONNECT_SRC = ["https://telemetry.example.com"]
    client.force_login(user)
    policy = directives(client.get("/files/"))
    assert policy["connect-src"] == ["'self'", "https://telemetry.example.com"]


def test_a_view_may_still_override_the_policy(rf: Any) -> None:
    """The middleware never overwrites a view's own CSP (Django's csp_override)."""
    from django.http import HttpResponse
    from django.views.decorators.csp import csp_override

    from uploads.middleware import StorageConnectSrcMiddleware

    @csp_override({"default-src": ["'none'"]})
    def view(request: Any) -> HttpResponse:
        return HttpResponse("<p>hi</p>", content_type="text/html")

    response = StorageConnectSrcMiddleware(view)(rf.get("/"))
    assert response._csp_config == {"default-src": ["'none'"]}


# --- In a real browser -----------------------------------------------------------------------

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic"]  # fmt: skip
# Recorded by the page itself: every violation the browser reports, whatever its source.
VIOLATIONS_SCRIPT = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__csp.push(
    `${e.violatedDirective} blocked ${e.blockedURI} at ${e.sourceFile}:${e.lineNumber}`);
});
"""


def chromium_executable() -> str | None:
    configured = os.environ.get("CHROMIUM_PATH")
    if configured:
        return configured
    candidates = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
    return next((path for path in candidates if os.access(path, os.X_OK)), None)


def in_browser_thread(script: Any) -> Any:
    """Run `script(browser)` with Playwright's sync API on a thread of its own.

    The sync API runs an event loop and greenlets; on the test's thread they would leave the
    database connection pytest-django set up stranded in another context (an open session that
    blocks dropping the test database). The browser thread never touches the ORM.
    """
    from playwright.sync_api import sync_playwright

    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=chromium_executable(), args=CHROMIUM_ARGS
                )
                try:
                    outcome["result"] = script(browser)
                finally:
                    browser.close()
        except BaseException as exc:  # re-raised on the test's thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="chromium")
    thread.start()
    thread.join(timeout=180)
    assert not thread.is_alive(), "the browser script did not finish"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


@pytest.mark.django_db(transaction=True)
def test_pages_and_uploader_work_under_the_policy_in_s3_mode(
    live_server: Any, staff_user: Any, s3: Any, settings: Any
) -> None:
    call_command("setup_bucket", "--origin", live_server.url)
    settings.UPLOADS_DEFAULT_PART_SIZE = 5 * 1024 * 1024
    data = os.urandom(6 * 1024 * 1024)  # two parts: the browser PUTs both to the bucket
    username = staff_user.get_username()

    def script(browser: Any) -> dict[str, Any]:
        from playwright.sync_api import expect

        context = browser.new_context()
        context.set_default_timeout(20_000)
        context.add_init_script(VIOLATIONS_SCRIPT)
        page = context.new_page()
        console: list[str] = []
        put_urls: list[str] = []
        page.on("console", lambda message: console.append(message.text))
        page.on("request", lambda r: put_urls.append(r.url) if r.method == "PUT" else None)

        page.goto(f"{live_server.url}/accounts/login/")
        page.get_by_label("Username").fill(username)
        page.get_by_label("Password").fill("staff-pass")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("navigation", name="Main")).to_contain_text(username)

        page.goto(f"{live_server.url}/upload/")
        page.wait_for_function(
            "() => window.htmx !== undefined && window.directUploads !== undefined"
        )
        page.set_input_files(
            "#file-input",
            [{"name": "csp.bin", "mimeType": "application/octet-stream", "buffer": data}],
        )
        row = page.get_by_test_id("upload-row").filter(has_text="csp.bin")
        expect(row).to_have_attribute("data-state", "done", timeout=60_000)
        # Each page's own record of violations is read before leaving it.
        violations = {"/upload/": page.evaluate("() => window.__csp")}
        for path in ["/files/", "/staff/", "/v1/docs"]:
            page.goto(f"{live_server.url}{path}")
            page.wait_for_load_state("networkidle")
            if path == "/v1/docs":  # Swagger UI, from our own static files
                expect(page.locator(".swagger-ui").first).to_be_visible()
            violations[path] = page.evaluate("() => window.__csp")
        context.close()
        return {"violations": violations, "console": console, "puts": put_urls}

    seen = in_browser_thread(script)

    assert seen["puts"] and all(url.startswith(s3.endpoint) for url in seen["puts"]), seen["puts"]
    assert not any(seen["violations"].values()), seen["violations"]
    assert not [text for text in seen["console"] if "Content Security Policy" in text]
