"""The local-disk data path: 1 GiB and 4 GiB (quick: 64 and 256 MiB) PUT as parts to a real
server, then completed, next to `dd ... conv=fdatasync` writing the same bytes to the same disk.

The server is `gunicorn project.wsgi` on loopback (SQLite and MEDIA_ROOT in a temp directory,
which is on the same disk as dd's target). The client sends every part from one part-sized file
with `socket.sendfile` over several keep-alive connections: as cheap per byte as dd, since it
shares the two cores with the server.
Our time runs from the first PUT to the end of an `os.sync()` after complete, so both sides are
measured until the bytes are on disk (dd's fdatasync); the figure without the sync is in the
note. dd runs once before and once after ours, and the baseline is their mean: the disk is
shared, and a single dd can be far off. Peak memory is each gunicorn worker's VmHWM from /proc,
a fresh server per size.

Run: `python -m bench.datapath [--quick]`.
"""

from __future__ import annotations

import http.client
import os
import queue
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from bench.common import MIB, Row, run_alone, setup_django
from bench.harness import (
    MB,
    Http,
    Server,
    access_token,
    remove_workdir_at_exit,
    smoke,
)

GOAL_RATIO = 0.6
# Server time of the local complete: verify, sync and link, flat in size.
GOAL_COMPLETE_S = 0.5
GOAL_RSS_MB = 150
# "Flat": the larger file's peak within 10 % of the smaller one's.
FLAT_RATIO = 1.10
CONNECTIONS = 4
WORKERS, THREADS = 2, 4
STORE = "local disk (gunicorn on loopback)"


def setup() -> None:
    setup_django()
    remove_workdir_at_exit()


def sizes(quick: bool) -> list[int]:
    if smoke():
        return [8 * MIB, 24 * MIB]
    return [64 * MIB, 256 * MIB] if quick else [1024 * MIB, 4096 * MIB]


def label(size: int) -> str:
    return f"{size // 1024**3} GiB" if size >= 1024**3 else f"{size // MIB} MiB"


def dd_seconds(target: Path, size: int) -> float:
    os.sync()
    start = time.perf_counter()
    subprocess.run(
        ["dd", "if=/dev/zero", f"of={target}", "bs=1M", f"count={size // MIB}", "conv=fdatasync"],
        check=True,
        capture_output=True,
    )
    seconds = time.perf_counter() - start
    target.unlink()
    os.sync()
    return seconds


def _fill_with_random(file: BinaryIO, size: int) -> None:
    block = os.urandom(MIB)
    for offset in range(0, size, MIB):
        file.write(block[: min(MIB, size - offset)])
    file.flush()


class PartSender:
    """One keep-alive connection that PUTs parts read from a file with `socket.sendfile`.

    As a real client sends a file's parts, and as cheaply as `dd` writes its bytes: the kernel
    sends from the page cache, no copy passes through Python. The client shares the machine's
    cores with the server, so a client that spent a copy per byte would slow the server down.
    """

    def __init__(self, base: str, source: BinaryIO) -> None:
        parts = urlsplit(base)
        self.netloc = parts.netloc
        self.source = source
        self.sock = socket.create_connection((parts.hostname, parts.port or 80), timeout=900)

    def put(self, url: str, length: int) -> tuple[int, str, bytes]:
        parts = urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        self.sock.sendall(
            f"PUT {target} HTTP/1.1\r\nHost: {self.netloc}\r\nContent-Length: {length}\r\n"
            "Content-Type: application/octet-stream\r\n\r\n".encode()
        )
        self.sock.sendfile(self.source, 0, length)
        response = http.client.HTTPResponse(self.sock)
        response.begin()
        data = response.read()
        if response.will_close:
            raise ConnectionError("the server closed the connection")
        return response.status, response.getheader("ETag", ""), data

    def close(self) -> None:
        self.sock.close()


def upload_through_server(server: Server, token: str, size: int) -> dict[str, float]:
    """Initiate, PUT every part over CONNECTIONS connections, complete; the phases' times."""
    api = Http(server.base, token)
    status, upload = api.json(
        "POST",
        "/v1/files/uploads",
        {
            "file_name": "big.bin",
            "file_size": size,
            "file_content_type": "application/octet-stream",
        },
    )
    assert status == 201, upload
    part_size = upload["part_size"]
    targets: queue.Queue[dict[str, Any]] = queue.Queue()
    for target in upload["presigned_urls"]:
        targets.put(target)
    etags: dict[int, str] = {}
    errors: list[str] = []

    def sender(source: BinaryIO) -> None:
        client = PartSender(server.base, source)
        try:
            while not errors:
                try:
                    target = targets.get_nowait()
                except queue.Empty:
                    return
                number = target["part_number"]
                length = min(part_size, size - (number - 1) * part_size)
                status, etag, data = client.put(target["url"], length)
                if status != 200:
                    errors.append(f"part {number}: {status} {data[:200]!r}")
                    return
                etags[number] = etag
        except Exception as exc:  # reported as the bench's error, with the cause
            errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            client.close()

    # Every part is sent from one part-sized file (in the page cache after its first read).
    with tempfile.TemporaryFile() as source:
        _fill_with_random(source, part_size)
        start = time.perf_counter()
        threads = [threading.Thread(target=sender, args=(source,)) for _ in range(CONNECTIONS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    if errors:
        raise RuntimeError(f"part PUT failed: {errors[0]}; server log: {server.log_tail()}")
    sent = time.perf_counter()
    parts = [{"part_number": n, "etag": etag} for n, etag in sorted(etags.items())]
    status, done = api.json("POST", f"/v1/files/uploads/{upload['id']}/complete", {"parts": parts})
    assert status == 200 and done["upload_status"] == "completed", (status, done)
    completed = time.perf_counter()
    os.sync()
    synced = time.perf_counter()
    api.close()
    return {
        "puts": sent - start,
        "complete": completed - sent,
        "sync": synced - completed,
        "parts": len(parts),
        "part_size": part_size,
    }


def run(quick: bool = False) -> list[Row]:
    from django.conf import settings
    from django.contrib.auth import get_user_model

    from uploads.models import FileRecord

    media = Path(settings.MEDIA_ROOT)
    media.mkdir(parents=True, exist_ok=True)
    user, _ = get_user_model().objects.get_or_create(username="bench-datapath")
    token = access_token(user)
    rows: list[Row] = []
    peaks: dict[int, float] = {}
    idle: dict[int, float] = {}
    completes: dict[int, float] = {}
    for size in sizes(quick):
        # dd before and after ours: the disk is shared, and one dd alone can be far off.
        dd_before = dd_seconds(media / "dd-baseline.bin", size)
        with Server(workers=WORKERS, threads=THREADS) as server:
            server.warm_up()
            idle[size] = max(server.rss_bytes()) / MB
            phases = upload_through_server(server, token, size)
            per_worker = [rss / MB for rss in server.peak_rss_bytes()]
        record = FileRecord.objects.filter(created_by=user).latest("created")
        stored = media / record.storage_key
        assert stored.stat().st_size == size, f"{stored} has {stored.stat().st_size} bytes"
        shutil.rmtree(media / settings.UPLOADS_KEY_PREFIX, ignore_errors=True)
        os.sync()
        dd_after = dd_seconds(media / "dd-baseline.bin", size)
        dd = (dd_before + dd_after) / 2
        peaks[size] = max(per_worker)
        total = phases["puts"] + phases["complete"] + phases["sync"]
        ours, theirs = size / total / MB, size / dd / MB
        rows.append(
            Row(
                measure=f"local data path {label(size)}: part PUTs + complete, to disk",
                ours=ours,
                baseline=theirs,
                unit="MB/s",
                goal=f"≥ {GOAL_RATIO:.0%} of dd",
                passed=ours / theirs >= GOAL_RATIO,
                note=(
                    f"{phases['parts']:.0f} parts of {phases['part_size'] / MIB:.0f} MiB over "
                    f"{CONNECTIONS} connections: PUTs {phases['puts']:.1f} s, complete "
                    f"{phases['complete']:.1f} s, sync {phases['sync']:.1f} s "
                    f"({size / (total - phases['sync']) / MB:.0f} MB/s before the sync); "
                    f"baseline: dd bs=1M conv=fdatasync, mean of {dd_before:.2f} s before and "
                    f"{dd_after:.2f} s after"
                ),
            )
        )
        first = sizes(quick)[0]
        rows.append(
            Row(
                measure=f"local complete {label(size)}: request time",
                ours=phases["complete"],
                baseline=None if size == first else completes[first],
                unit="s",
                goal=f"≤ {GOAL_COMPLETE_S} s, flat in size",
                passed=phases["complete"] <= GOAL_COMPLETE_S,
                note=f"POST …/complete of {phases['parts']:.0f} parts over loopback, the file "
                "already on disk: verify, sync, link"
                + ("" if size == first else f"; baseline: the {label(first)} run"),
            )
        )
        completes[size] = phases["complete"]
        workers = ", ".join(f"{mb:.0f}" for mb in per_worker)
        if size == first:
            rows.append(
                Row(
                    measure=f"server peak RSS (VmHWM), {label(size)} upload",
                    ours=peaks[size],
                    baseline=idle[size],
                    unit="MB",
                    goal=f"< {GOAL_RSS_MB} MB",
                    passed=peaks[size] < GOAL_RSS_MB,
                    note=f"largest of {WORKERS} gunicorn workers ({workers} MB); baseline: a "
                    "worker's RSS after warm-up, before the upload",
                )
            )
        else:
            flat = peaks[size] <= peaks[first] * FLAT_RATIO
            rows.append(
                Row(
                    measure=f"server peak RSS (VmHWM), {label(size)} upload",
                    ours=peaks[size],
                    baseline=peaks[first],
                    unit="MB",
                    goal=f"< {GOAL_RSS_MB} MB, flat (≤ {FLAT_RATIO:.2f}× the {label(first)} run)",
                    passed=peaks[size] < GOAL_RSS_MB and flat,
                    note=f"largest of {WORKERS} workers ({workers} MB); baseline: the "
                    f"{label(first)} run's peak",
                )
            )
    return rows


def main() -> None:
    run_alone("datapath")


if __name__ == "__main__":
    main()
