"""Browser tests: real Chromium (pytest-playwright) against pytest-django's live server."""

from __future__ import annotations

import os
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Playwright's sync API runs an asyncio loop in this thread; without this, every ORM call made
# by a test or fixture while a page is open raises SynchronousOnlyOperation.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

import pytest
from playwright.sync_api import BrowserContext, Page, Playwright, expect
from pytest_django.live_server_helper import LiveServer

from e2e.chromium import CHROMIUM_ARGS, system_chromium

# Re-expose the shared fixtures (user, the stores, backend) here, because e2e/ is not under
# tests/ and so does not see tests/conftest.py. An explicit import is the form that works however
# pytest is invoked: `pytest_plugins = ["tests.conftest"]` is only accepted in a conftest pytest
# loads up front (it breaks with "non-top-level conftest" under e.g. `pytest .`), and a root
# conftest.py would hand these fixtures to every directory. Their servers listen on ports
# Chromium accepts (`free_port`).
from tests.conftest import (  # noqa: F401
    backend,
    moto_endpoint,
    s3,
    user,
    verifying,
    verifying_endpoint,
)
from tests.ports import CHROMIUM_UNSAFE_PORTS

NO_BROWSER_HELP = (
    "No Chromium for the browser tests. Install one and run again:\n"
    "  Debian/Ubuntu: apt-get install -y chromium   (found at /usr/bin/chromium)\n"
    "  elsewhere:     .venv/bin/playwright install chromium\n"
    "or point CHROMIUM_PATH at a Chromium/Chrome binary."
)

PASSWORD = "alice-pass"  # the password tests/conftest.py's `user` is created with

ARTIFACTS_DIR_NAME = "e2e-artifacts"
ACTION_TIMEOUT_MS = 15_000
_phase_reports = pytest.StashKey[dict[str, pytest.TestReport]]()
_failed_artifacts = pytest.StashKey[list[Path]]()


# --- Chromium -------------------------------------------------------------------------------


def _chromium_executable() -> str | None:
    """CHROMIUM_PATH, else a distribution Chromium, else None (Playwright's own browser)."""
    executable = system_chromium()
    if executable and not os.access(executable, os.X_OK):
        pytest.fail(
            f"CHROMIUM_PATH={executable} is not an executable file.\n{NO_BROWSER_HELP}",
            pytrace=False,
        )
    return executable


@pytest.fixture(scope="session")
def browser_type_launch_args(
    browser_type_launch_args: dict[str, Any], browser_name: str, playwright: Playwright
) -> dict[str, Any]:
    if browser_name != "chromium":  # --browser firefox/webkit: leave Playwright's defaults
        return browser_type_launch_args
    args = {**browser_type_launch_args, "args": CHROMIUM_ARGS}
    executable = _chromium_executable()
    if executable:
        # `--browser-channel` cannot name a distribution build, so pass the binary itself.
        args["executable_path"] = executable
    elif not Path(playwright.chromium.executable_path).exists():
        pytest.fail(NO_BROWSER_HELP, pytrace=False)
    return args


# --- servers on ports Chromium accepts ------------------------------------------------------


def _one_request_at_a_time(handler_class: type) -> type:
    """`handler_class` (the live server's WSGI handler) serving one request at a time.

    With SQLite in memory, pytest-django hands the server threads the test's one connection.
    Two requests at once would run their SQL inside each other's transactions (the uploader
    initiates, signs and completes several files in parallel); taking turns keeps each
    request's transaction its own. The browser still sends in parallel; requests queue here.
    """
    lock = threading.Lock()

    class OneAtATime(handler_class):  # type: ignore[misc]
        def __call__(self, environ: Any, start_response: Any) -> Any:
            with lock:
                return super().__call__(environ, start_response)

    return OneAtATime


def _start_live_server(addr: str) -> LiveServer:
    server = LiveServer(addr, start=False)
    if server.thread.connections_override:  # only a shared in-memory SQLite needs the turns
        server.thread.static_handler = _one_request_at_a_time(server.thread.static_handler)
    server.start()
    return server


@pytest.fixture(scope="session")
def live_server(request: pytest.FixtureRequest, django_db_setup: None) -> Iterator[LiveServer]:
    """pytest-django's live server (same address rules), never on a port Chromium refuses."""
    # After the test database exists: the server must share the in-memory test database's
    # connection. Started earlier, its threads open their own connections to SQLite's shared
    # cache, which has no busy timeout: parallel requests then fail with "table is locked".
    addr = (
        request.config.getvalue("liveserver")
        or os.getenv("DJANGO_LIVE_TEST_SERVER_ADDRESS")
        or "localhost"
    )
    server = _start_live_server(addr)
    if ":" not in addr:  # the OS chose the port: choose again until Chromium accepts it
        for _ in range(20):
            if server.thread.port not in CHROMIUM_UNSAFE_PORTS:
                break
            server.stop()
            server = _start_live_server(addr)
    if server.thread.port in CHROMIUM_UNSAFE_PORTS:
        server.stop()
        pytest.fail(f"live server port {server.thread.port} is refused by Chromium (unsafe port)")
    yield server
    server.stop()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # pytest-playwright 0.10's own `base_url` fixture trips pytest 9's deprecation of
    # session fixtures on classes; not ours to fix, so keep it out of every run's summary.
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(
                pytest.mark.filterwarnings(
                    "ignore:Session-scoped fixtures defined as instance methods"
                    ":pytest.PytestRemovedIn10Warning"
                )
            )


# --- failure artifacts: a screenshot and a trace under e2e-artifacts/ -----------------------


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    # Keep each phase's report on the item so fixture teardown can tell whether the test failed.
    report = yield
    item.stash.setdefault(_phase_reports, {})[report.when] = report
    return report


def _test_failed(item: pytest.Item) -> bool:
    reports = item.stash.get(_phase_reports, {})
    return any(reports[when].failed for when in ("setup", "call") if when in reports)


@pytest.fixture
def context(
    new_context: Any, request: pytest.FixtureRequest, pytestconfig: pytest.Config
) -> Iterator[BrowserContext]:
    """pytest-playwright's context, traced; on failure the trace and screenshots are kept."""
    context = new_context()
    # Everything here talks to loopback servers: a missing element or a dead page should fail
    # in seconds, not after Playwright's 30 s default.
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    # With --tracing on/retain-on-failure pytest-playwright already traces this context.
    own_trace = pytestconfig.getoption("--tracing") == "off"
    if own_trace:
        context.tracing.start(screenshots=True, snapshots=True, sources=True)
    yield context

    if not _test_failed(request.node):
        if own_trace:
            context.tracing.stop()
        return
    slug = re.sub(r"[^\w.-]+", "-", request.node.nodeid).strip("-")
    folder = pytestconfig.rootpath / ARTIFACTS_DIR_NAME / slug
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for index, page in enumerate(context.pages):
        try:
            page.screenshot(path=folder / f"screenshot-{index + 1}.png", full_page=True)
        except Exception as exc:  # a crashed page must not hide the test's own failure
            (folder / f"screenshot-{index + 1}.error.txt").write_text(repr(exc))
    if own_trace:
        context.tracing.stop(path=folder / "trace.zip")
    pytestconfig.stash.setdefault(_failed_artifacts, []).append(folder)
    trace_hint = f"  open the trace: playwright show-trace {folder / 'trace.zip'}"
    print(f"\nPlaywright artifacts: {folder}\n{trace_hint if own_trace else ''}")


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    folders = config.stash.get(_failed_artifacts, [])
    if folders:
        terminalreporter.section("e2e artifacts")
        terminalreporter.write_line(
            f"Screenshots and traces of failed browser tests in {folders[0].parent}:"
        )
        for folder in folders:
            terminalreporter.write_line(f"  {folder}")


# --- signed-in page -------------------------------------------------------------------------


@pytest.fixture
def signed_in_page(
    page: Page,
    live_server: LiveServer,
    transactional_db: None,
    user: Any,  # noqa: F811 (the fixture imported above, requested by name)
) -> Page:
    """`page` signed in as `user` through the real login form, on the page sign-in leads to."""
    # Always the live server's own host (localhost): S3 CORS rules match this exact origin.
    page.goto(f"{live_server.url}/accounts/login/")
    username = user.get_username()
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    # Where "home" lands a signed-in user is the portal's business; any page of this server
    # that is not the login form and names the user in the main navigation will do.
    expect(page).to_have_url(re.compile(rf"^{re.escape(live_server.url)}/(?!accounts/login/)"))
    expect(page.get_by_role("navigation", name="Main")).to_contain_text(username)
    return page
