"""The portal's uploader in Chromium: a 256 MiB file (quick: 64 MiB) uploaded to S3 (moto) with a
SHA-256 per part signed into each URL (the default), next to the same upload without checksums
(UPLOADS_BROWSER_CHECKSUMS off), in one run.

The Django app is served by threads of this process and moto runs in it too, as in bench/client.py;
Chromium (Playwright, the e2e tests' browser) signs in through the login form, picks the file on
/upload/ and the time runs from the pick to the row's "done" (initiate, hashing, signing, every
part PUT to the S3 endpoint, complete). Runs alternate between the two modes, so load on the
machine hits both alike. The figure is the best run of each: on a machine shared with other
work, the run least disturbed by it says most about what checksums cost (the medians are in
the note).

Run: `python -m bench.browser [--quick]`.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.client import _key, _random_file, serve_app
from bench.common import MIB, Row, moto_s3, run_alone
from bench.harness import smoke
from e2e.chromium import CHROMIUM_ARGS, system_chromium

GOAL_RATIO = 0.9
PASSWORD = "bench-browser-pass"
LAST_UPLOAD = "() => window.directUploads.uploads.at(-1)"


@contextmanager
def signed_in_page(username: str, timeout_ms: int) -> Iterator[tuple[Any, str, str]]:
    """A Chromium page signed in as a new user `username` to the app, served over HTTP on a moto
    S3 whose bucket admits the page's origin; yields the page, the app's URL and a work folder."""
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from playwright.sync_api import sync_playwright

    get_user_model().objects.create_user(username, password=PASSWORD)
    with (
        tempfile.TemporaryDirectory(prefix=f"direct-uploads-{username}-") as workdir,
        moto_s3(),
        serve_app(static=True) as server,
        sync_playwright() as playwright,
    ):
        # The bucket's CORS rule must name the page's exact origin, as in production.
        call_command("setup_bucket", "--origin", server, verbosity=0)
        browser = playwright.chromium.launch(executable_path=system_chromium(), args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.set_default_timeout(timeout_ms)
        page.goto(f"{server}/accounts/login/")
        page.get_by_label("Username").fill(username)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(lambda url: "/accounts/login/" not in url)
        try:
            yield page, server, workdir
        finally:
            browser.close()


def run(quick: bool = False) -> list[Row]:
    from django.core.files.storage import default_storage
    from django.test import override_settings

    # Playwright's sync API runs an event loop in this thread; the ORM calls here are sync.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    size = 16 * MIB if smoke() else 64 * MIB if quick else 256 * MIB
    repeat = 1 if smoke() else 2 if quick else 3
    seconds: dict[bool, list[float]] = {True: [], False: []}
    with signed_in_page("bench-browser", timeout_ms=120_000) as (page, server, workdir):
        source = _random_file(workdir, size)
        # Untimed, both ways: the first uploads pay one-time costs (imports, connections,
        # botocore's checksum support) that would fall on whichever mode went first.
        warm_up = Path(workdir) / "warm-up.bin"
        warm_up.write_bytes(os.urandom(MIB))
        for checksums in (True, False):
            with override_settings(UPLOADS_BROWSER_CHECKSUMS=checksums):
                _upload_once(page, server, warm_up, checksums)
            default_storage.delete(_key(page.evaluate(f"({LAST_UPLOAD})().record.id")))
        for attempt in range(repeat):
            # Alternate which mode goes first: neither always gets the warmer machine.
            for checksums in (True, False) if attempt % 2 == 0 else (False, True):
                with override_settings(UPLOADS_BROWSER_CHECKSUMS=checksums):
                    seconds[checksums].append(_upload_once(page, server, source, checksums))
                default_storage.delete(_key(page.evaluate(f"({LAST_UPLOAD})().record.id")))
    mb = size / 1e6
    with_sums, without = mb / min(seconds[True]), mb / min(seconds[False])
    medians = [mb / statistics.median(seconds[mode]) for mode in (True, False)]
    return [
        Row(
            measure=f"portal upload {size // MIB} MiB to S3 in Chromium, SHA-256 per part",
            ours=with_sums,
            baseline=without,
            unit="MB/s",
            goal=f"≥ {GOAL_RATIO}× without checksums",
            passed=with_sums >= GOAL_RATIO * without,
            note=f"best of {repeat} each, alternating (medians {medians[0]:.1f} and "
            f"{medians[1]:.1f} MB/s, {medians[0] / medians[1]:.2f}×); baseline: the same upload "
            "with UPLOADS_BROWSER_CHECKSUMS off; 8 MiB parts, 4 at a time",
        )
    ]


def _upload_once(page: object, server: str, source: Path, checksums: bool) -> float:
    from playwright.sync_api import Page

    from uploads.models import FileRecord

    assert isinstance(page, Page)
    page.goto(f"{server}/upload/")
    page.wait_for_function("() => window.directUploads !== undefined")
    started = time.perf_counter()
    page.set_input_files("#file-input", str(source))
    page.wait_for_function(
        f"() => ['done', 'failed'].includes(({LAST_UPLOAD})()?.state)", polling=10
    )
    elapsed = time.perf_counter() - started
    state, file_id = page.evaluate(f"() => [({LAST_UPLOAD})().state, ({LAST_UPLOAD})().record?.id]")
    assert state == "done", page.evaluate(f"() => String(({LAST_UPLOAD})().error)")
    algorithm = FileRecord.objects.get(pk=file_id).checksum_algorithm
    assert algorithm == ("SHA256" if checksums else ""), algorithm
    return elapsed


def main() -> None:
    run_alone("browser")


if __name__ == "__main__":
    main()
