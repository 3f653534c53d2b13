"""A peer side by side: django-s3-file-field's initialize + finalize against our initiate +
complete, for a 1-part file and for 10,000 parts, on the same moto server and database.

Both apps run under gunicorn (1 worker, 1 thread each) on loopback: ours from .venv, the peer
(bench/s3ff/, Django 5.2 + Django REST framework, which the project does not use) from
.venv-peer (`make peer-install`). One keep-alive client in this process times each request.

What is timed, per upload (storing the parts in between is done, not timed):
- ours: `POST /v1/files/uploads` (create the multipart upload, presign every part URL, the
  record), then `POST .../complete` (list the parts on S3 and check them, complete on S3, head).
- the peer: `upload-initialize/` (create the multipart upload, presign every part URL), then
  its finalization as its own client runs it: `upload-complete/` (presign the completion
  request), the client's CompleteMultipartUpload on S3, then `finalize/` (head the object).
S3's completion is inside both figures: ours completes on the server, the peer's client does.
Each figure is shown whole and without the time moto's request handler spends (StoreClock):
moto is no model of S3's speed (its ListParts takes about 1 ms a part to serialize).

Part sizes: S3 refuses non-last parts under 5 MiB, so 10,000 real parts would keep 50 GB in
moto's memory. moto's S3_UPLOAD_PART_MIN_SIZE lowers that limit for this moto server, and both
sides store the same 1 KiB parts. Ours is told the same through UPLOADS_MIN_PART_SIZE (a setting
read from the environment; production keeps 5 MiB). The peer has no such knob (64 MiB parts, at
least 5 MiB), so it declares a 10,000 × 64 MiB file to get its 10,000 part URLs; it never checks
sizes, and moto does not check the signed Content-Length, so its parts are 1 KiB too.

Run: `python -m bench.peer [--quick]` (after `make peer-install`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import MIB, Row, moto_s3, run_alone, setup_django
from bench.harness import ROOT, Http, Server, access_token, remove_workdir_at_exit, smoke

GOAL_RATIO = 10.0
PART_SIZE = 1024
PEER_PART_SIZE = 64 * MIB
PEER_PYTHON = ROOT / ".venv-peer" / "bin" / "python"
PEER_FIELD = "s3ff.Blob.blob"
BUCKET = "bench"  # moto_s3()'s
STORE = "S3 API (one moto server on loopback, both sides)"
DATABASE = "one SQLite file, both sides"


def setup() -> None:
    # Read by moto when it is imported, which only moto_s3() does, after this.
    os.environ["S3_UPLOAD_PART_MIN_SIZE"] = str(PART_SIZE)
    # moto keeps a key in memory up to this size (it defaults to the part minimum - 1 KiB).
    os.environ["MOTO_S3_DEFAULT_KEY_BUFFER_SIZE"] = str(MIB)
    setup_django()
    remove_workdir_at_exit()


class StoreClock:
    """Seconds moto's server spends answering, summed over its threads.

    moto runs in this process (moto_s3()), so its WSGI entry point can be timed: the share of
    each timed request that is the store's own work, which real S3 does at its own speed.
    """

    def __init__(self) -> None:
        self.seconds = 0.0
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication

        original = DomainDispatcherApplication.__call__

        def timed_call(app: Any, environ: dict[str, Any], start_response: Any) -> Any:
            start = time.perf_counter()
            try:
                # moto builds the whole response body inside this call.
                return original(app, environ, start_response)
            finally:
                with self._lock:
                    self.seconds += time.perf_counter() - start

        DomainDispatcherApplication.__call__ = timed_call  # type: ignore[method-assign,assignment]
        try:
            yield
        finally:
            DomainDispatcherApplication.__call__ = original  # type: ignore[method-assign]


@dataclass
class Timings:
    """One upload's timed steps: wall seconds, and the store's seconds within them, by name."""

    clock: StoreClock
    steps: dict[str, float] = field(default_factory=dict)
    store: dict[str, float] = field(default_factory=dict)

    def timed(self, name: str, fn: Callable[[], Any]) -> Any:
        store_start = self.clock.seconds
        start = time.perf_counter()
        try:
            return fn()
        finally:
            self.steps[name] = time.perf_counter() - start
            self.store[name] = self.clock.seconds - store_start

    @property
    def total(self) -> float:
        return sum(self.steps.values())

    @property
    def store_total(self) -> float:
        return sum(self.store.values())

    @property
    def app_total(self) -> float:
        """The wall time less the store's own: the app, its framework, loopback HTTP."""
        return self.total - self.store_total


def put_parts(
    s3: Http, upload_id: str, urls: list[tuple[int, str]], body: bytes
) -> list[tuple[int, str]]:
    """Store `body` as every part of the upload on the moto server; (part number, ETag) of each.

    The first part goes through its presigned URL, as a client sends it; the others go straight
    into the server's own state (what its PUT handler does), since 10,000 PUTs through moto's
    HTTP front take about a minute per upload. The bytes that S3 then completes are the same.
    """
    from moto.core.models import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    (number, url), rest = urls[0], urls[1:]
    status, headers, data = s3.request("PUT", url, body)
    assert status == 200, (status, data[:300])
    etags = [(number, headers["ETag"])]
    backend = s3_backends[DEFAULT_ACCOUNT_ID]["global"]
    for number, _url in rest:
        etags.append((number, backend.upload_part(BUCKET, upload_id, number, body).etag))
    return etags


def request_json(http: Http, url: str, payload: Any, expect: int) -> Any:
    """POST JSON; the response body is parsed after the clock stops (see `timed_json`)."""
    body = json.dumps(payload)
    status, _, data = http.request("POST", url, body, {"Content-Type": "application/json"})
    assert status == expect, (url, status, data[:500])
    return data


def ours_cycle(app: Http, s3: Http, clock: StoreClock, parts: int) -> Timings:
    timings = Timings(clock)
    payload = {"file_name": "big.bin", "file_size": parts * PART_SIZE, "part_size": PART_SIZE}
    raw = timings.timed("initiate", lambda: request_json(app, "/v1/files/uploads", payload, 201))
    init = json.loads(raw)
    urls = [(t["part_number"], t["url"]) for t in init["presigned_urls"]]
    assert len(urls) == parts, len(urls)
    etags = put_parts(s3, init["upload_id"], urls, b"x" * PART_SIZE)
    done = {"parts": [{"part_number": n, "etag": etag} for n, etag in etags]}
    url = f"/v1/files/uploads/{init['id']}/complete"
    raw = timings.timed("complete", lambda: request_json(app, url, done, 200))
    result = json.loads(raw)
    assert result["upload_status"] == "completed", result
    assert result["file_size"] == parts * PART_SIZE, result
    return timings


def peer_cycle(app: Http, s3: Http, clock: StoreClock, parts: int) -> Timings:
    timings = Timings(clock)
    # Its part plan: 64 MiB parts; a 1-part file is the real 1 KiB (see the module docstring).
    declared = parts * PEER_PART_SIZE if parts > 1 else PART_SIZE
    payload = {
        "field_id": PEER_FIELD,
        "file_name": "big.bin",
        "file_size": declared,
        "content_type": "application/octet-stream",
    }
    raw = timings.timed(
        "initialize",
        lambda: request_json(app, "/api/s3-upload/upload-initialize/", payload, 200),
    )
    init = json.loads(raw)
    urls = [(p["part_number"], p["upload_url"]) for p in init["parts"]]
    assert len(urls) == parts, len(urls)
    etags = put_parts(s3, init["upload_id"], urls, b"x" * PART_SIZE)
    done = {
        "upload_signature": init["upload_signature"],
        "upload_id": init["upload_id"],
        "parts": [{"part_number": n, "size": PART_SIZE, "etag": etag} for n, etag in etags],
    }
    raw = timings.timed(
        "upload-complete",
        lambda: request_json(app, "/api/s3-upload/upload-complete/", done, 200),
    )
    completion = json.loads(raw)

    def complete_on_s3() -> None:
        status, _, data = s3.request(
            "POST", completion["complete_url"], completion["body"].encode()
        )
        # S3 may answer 200 with an error document; a completed upload names its ETag.
        assert status == 200 and b"<ETag>" in data, (status, data[:500])

    timings.timed("S3 complete", complete_on_s3)
    signature = {"upload_signature": init["upload_signature"]}
    raw = timings.timed(
        "finalize", lambda: request_json(app, "/api/s3-upload/finalize/", signature, 200)
    )
    assert json.loads(raw)["field_value"], raw
    return timings


def describe(timings: Timings) -> str:
    """Each step's wall time, with the store's share in it: `initiate 25.1 (S3 3.2) + ...`."""
    steps = (
        f"{name} {seconds * 1000:.1f} (S3 {timings.store[name] * 1000:.1f})"
        for name, seconds in timings.steps.items()
    )
    return " + ".join(steps) + " ms"


def median_sample(samples: list[Timings], key: Callable[[Timings], float]) -> Timings:
    """The sample with the median figure, so the steps shown add up to it."""
    return sorted(samples, key=key)[(len(samples) - 1) // 2]


def run(quick: bool = False) -> list[Row]:
    import moto.settings
    from django.contrib.auth import get_user_model

    # moto's server logs every request it answers.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)

    if not PEER_PYTHON.exists():
        raise RuntimeError(f"the peer's virtualenv is missing: run `make peer-install` ({ROOT})")
    assert moto.settings.S3_UPLOAD_PART_MIN_SIZE == PART_SIZE, "moto was imported before setup()"
    big = 200 if smoke() else 1_000 if quick else 10_000
    repeat = {1: 1 if smoke() else 3 if quick else 5, big: 1 if smoke() or quick else 3}
    user, _ = get_user_model().objects.get_or_create(username="bench-peer")
    database = os.environ["DATABASE_URL"].removeprefix("sqlite:///")
    assert Path(database).is_file(), database
    rows: list[Row] = []
    clock = StoreClock()
    with moto_s3() as (endpoint, _client), clock.installed():
        s3_env = {
            "AWS_STORAGE_BUCKET_NAME": BUCKET,
            "AWS_S3_ENDPOINT_URL": endpoint,
            "AWS_S3_REGION_NAME": "us-east-1",
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
        }
        ours_env = {**s3_env, "UPLOADS_MIN_PART_SIZE": str(PART_SIZE)}
        peer_env = {**s3_env, "PEER_DATABASE_PATH": database}
        with (
            Server(workers=1, threads=1, env=ours_env) as ours_server,
            Server(
                settings_module="bench.s3ff.settings",
                workers=1,
                threads=1,
                env=peer_env,
                python=str(PEER_PYTHON),
                app="bench.s3ff.wsgi:application",
            ) as peer_server,
        ):
            ours_app = Http(ours_server.base, token=access_token(user))
            peer_app = Http(peer_server.base)
            s3 = Http(endpoint)
            # Warm both: imports, the first S3 connection, the first database query.
            ours_cycle(ours_app, s3, clock, 1)
            peer_cycle(peer_app, s3, clock, 1)
            for parts in (1, big):
                ours: list[Timings] = []
                theirs: list[Timings] = []
                # Interleaved, so a change in the machine's load touches both sides alike.
                for _ in range(repeat[parts]):
                    ours.append(ours_cycle(ours_app, s3, clock, parts))
                    theirs.append(peer_cycle(peer_app, s3, clock, parts))
                    print(
                        f"[peer] {parts:,} parts: ours {describe(ours[-1])}, peer "
                        f"{describe(theirs[-1])}",
                        file=sys.stderr,
                        flush=True,
                    )
                rows += peer_rows(parts, big, ours, theirs)
    return rows


def peer_rows(parts: int, big: int, ours: list[Timings], theirs: list[Timings]) -> list[Row]:
    label = f"{parts:,} part{'s' if parts > 1 else ''}"
    is_goal = parts == big == 10_000
    rows = []
    figures: list[tuple[Callable[[Timings], float], str, bool]] = [
        (lambda t: t.total, "whole, S3 included", False),
        (lambda t: t.app_total, "excl. the S3 server's own time", is_goal),
    ]
    for key, what, goal in figures:
        ours_s = statistics.median(key(t) for t in ours)
        theirs_s = statistics.median(key(t) for t in theirs)
        rows.append(
            Row(
                measure=f"initiate + complete, {label}, {what} (vs django-s3-file-field "
                "initialize + finalize)",
                ours=ours_s,
                baseline=theirs_s,
                unit="s",
                goal=f"≥ {GOAL_RATIO:.0f}× faster" if goal else "",
                passed=(theirs_s / ours_s >= GOAL_RATIO) if goal else None,
                note=f"median of {len(ours)}; ours: {describe(median_sample(ours, key))}; "
                f"peer: {describe(median_sample(theirs, key))}; each app under gunicorn "
                f"(1 worker) over loopback HTTP; {PART_SIZE} B parts stored on the same moto "
                "server before each complete (not timed); ours authenticates (JWT), lists and "
                "checks the parts and keeps a record (SQLite), the peer as shipped does none",
            )
        )
    return rows


def main() -> None:
    run_alone("peer")


if __name__ == "__main__":
    main()
