"""What the portal's progress display costs: the same upload in Chromium with the upload page's
rows (bar, figures, overall line) and with the bare uploader (upload.js and queue.js driven
without any DOM), on one page, to S3 (moto), SHA-256 per part as by default.

Main-thread time is Chromium's own count (DevTools `Performance.getMetrics`, TaskDuration:
every task the page's main thread ran) taken before and after each upload; throughput is the
file's size over the time from the pick to "done". Runs alternate between the two ways, so load
on the machine hits both alike; the figures are medians.

Run: `python -m bench.progress [--quick]`.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Any

from bench.browser import signed_in_page
from bench.client import _key, _random_file
from bench.common import MIB, Row, run_alone
from bench.harness import smoke

GOAL_MAIN_THREAD = 1.2  # the page's main-thread time, at most this many times the bare uploader's
GOAL_THROUGHPUT = 0.95  # its throughput, at least this share of the bare uploader's

# The bare uploader: the page's own modules and settings, no rows.
START_BARE = """async () => {
  const { Api } = await import(STATIC + "api.js");
  const { Queue } = await import(STATIC + "queue.js");
  const { Upload } = await import(STATIC + "upload.js");
  const config = JSON.parse(document.getElementById("uploader-settings").textContent);
  const file = document.getElementById("bare-input").files[0];
  const api = new Api(config.api, document.body.dataset.csrfToken);
  window.bare = new Upload(file, { api, queue: new Queue({ limit: config.concurrency }) });
  window.bare.start();
}"""
LAST = {"page": "window.directUploads.uploads.at(-1)", "bare": "window.bare"}


def run(quick: bool = False) -> list[Row]:
    # Playwright's sync API runs an event loop in this thread; the ORM calls here are sync.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    size = 16 * MIB if smoke() else 64 * MIB if quick else 192 * MIB
    repeat = 1 if smoke() else 2 if quick else 3
    busy: dict[str, list[float]] = {"page": [], "bare": []}
    seconds: dict[str, list[float]] = {"page": [], "bare": []}
    with signed_in_page("bench-progress", timeout_ms=180_000) as (page, server, workdir):
        source = _random_file(workdir, size)
        cdp = page.context.new_cdp_session(page)
        cdp.send("Performance.enable")
        warm_up = Path(workdir) / "warm-up.bin"
        warm_up.write_bytes(os.urandom(MIB))
        for way in ("page", "bare"):  # untimed: first-use costs fall on neither
            _upload_once(page, cdp, server, warm_up, way)
        for attempt in range(repeat):
            for way in ("page", "bare") if attempt % 2 == 0 else ("bare", "page"):
                took, main_thread = _upload_once(page, cdp, server, source, way)
                seconds[way].append(took)
                busy[way].append(main_thread)
    mb = size / 1e6
    main = {way: statistics.median(values) * 1000 for way, values in busy.items()}
    speed = {way: mb / statistics.median(values) for way, values in seconds.items()}
    what = f"{size // MIB} MiB to S3 (moto) in Chromium, median of {repeat}"
    return [
        Row(
            measure=f"portal upload page main-thread time, {what}",
            ours=main["page"],
            baseline=main["bare"],
            unit="ms",
            goal=f"≤ {GOAL_MAIN_THREAD}× the bare uploader",
            passed=main["page"] <= GOAL_MAIN_THREAD * main["bare"],
            note="DevTools TaskDuration over the upload; baseline: the same modules without "
            f"rows ({main['page'] / main['bare']:.2f}×)",
        ),
        Row(
            measure=f"portal upload throughput with the progress row, {what}",
            ours=speed["page"],
            baseline=speed["bare"],
            unit="MB/s",
            goal=f"≥ {GOAL_THROUGHPUT}× the bare uploader",
            passed=speed["page"] >= GOAL_THROUGHPUT * speed["bare"],
            note="pick to done; baseline: the bare uploader on the same page",
        ),
    ]


def _upload_once(page: Any, cdp: Any, server: str, source: Path, way: str) -> tuple[float, float]:
    from django.core.files.storage import default_storage

    page.goto(f"{server}/upload/")
    page.wait_for_function("() => window.directUploads !== undefined")
    if way == "bare":
        page.evaluate(
            """() => { const input = document.createElement("input");
              input.type = "file"; input.id = "bare-input"; input.hidden = true;
              document.body.append(input); }"""
        )
    static = page.evaluate(
        "() => document.querySelector('script[type=module]').src.replace(/uploader\\.js.*$/, '')"
    )
    before = _task_seconds(cdp)
    started = time.perf_counter()
    if way == "page":
        page.set_input_files("#file-input", str(source))
    else:
        page.set_input_files("#bare-input", str(source))
        page.evaluate(START_BARE.replace("STATIC", repr(static)))
    last = LAST[way]
    page.wait_for_function(f"() => ['done', 'failed'].includes({last}?.state)", polling=20)
    took = time.perf_counter() - started
    main_thread = _task_seconds(cdp) - before
    state, file_id, error = page.evaluate(
        f"() => [{last}.state, {last}.record?.id, String({last}.error)]"
    )
    assert state == "done", error
    default_storage.delete(_key(file_id))
    return took, main_thread


def _task_seconds(cdp: Any) -> float:
    metrics = cdp.send("Performance.getMetrics")["metrics"]
    return float(next(m["value"] for m in metrics if m["name"] == "TaskDuration"))


def main() -> None:
    run_alone("progress")


if __name__ == "__main__":
    main()
