"""A small load generator for bench/throughput.py: N threads, each with one keep-alive
connection to a loopback server, bounded in time and in count. Prints one JSON line.

Run by the bench in a process of its own, so the client's work is not the server's:
`python -m bench.loadgen --base http://127.0.0.1:PORT --mode cycle|bare --token JWT`.

Modes: `cycle` = initiate a one-part file, PUT the part, complete it (3 requests);
`bare` = `GET /bench/constant` (1 request).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from urllib.parse import urlsplit

from bench.harness import Http, median

PART = os.urandom(1024)
# Seconds each step of a cycle took, per thread, for the split in the bench's note.
_steps = threading.local()


def _step(name: str, began: float) -> float:
    now = time.perf_counter()
    _steps.times.setdefault(name, []).append(now - began)
    return now


def cycle(http: Http) -> None:
    began = time.perf_counter()
    status, upload = http.json(
        "POST",
        "/v1/files/uploads",
        {
            "file_name": "small.bin",
            "file_size": len(PART),
            "file_content_type": "application/octet-stream",
        },
    )
    if status != 201:
        raise RuntimeError(f"initiate: {status} {upload}")
    began = _step("initiate", began)
    url = upload["presigned_urls"][0]["url"]
    if urlsplit(url).hostname not in (None, "127.0.0.1", "localhost"):
        raise RuntimeError(f"part URL leaves loopback: {url}")
    status, headers, data = http.request(
        "PUT", url, PART, {"Content-Type": "application/octet-stream"}
    )
    if status != 200:
        raise RuntimeError(f"part PUT: {status} {data[:200]!r}")
    began = _step("put", began)
    status, done = http.json(
        "POST",
        f"/v1/files/uploads/{upload['id']}/complete",
        {"parts": [{"part_number": 1, "etag": headers["ETag"]}]},
    )
    if status != 200:
        raise RuntimeError(f"complete: {status} {done}")
    _step("complete", began)


def bare(http: Http) -> None:
    status, body = http.json("GET", "/bench/constant")
    if status != 200:
        raise RuntimeError(f"bare: {status} {body}")


def authenticated(http: Http) -> None:
    status, body = http.json("GET", "/bench/constant-jwt")
    if status != 200:
        raise RuntimeError(f"authenticated: {status} {body}")


OPERATIONS = {"cycle": cycle, "bare": bare, "authenticated": authenticated}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base", required=True)
    parser.add_argument("--mode", choices=sorted(OPERATIONS), required=True)
    parser.add_argument("--token", default="")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds not counted")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds counted")
    parser.add_argument("--max", type=int, default=100_000, help="most operations counted")
    args = parser.parse_args()
    host = urlsplit(args.base).hostname
    if host not in ("127.0.0.1", "localhost"):
        sys.exit(f"loopback only, not {host}")
    operation = OPERATIONS[args.mode]
    start = time.perf_counter() + args.warmup
    end = start + args.seconds
    lock = threading.Lock()
    counted: list[float] = []
    errors: list[str] = []
    steps: dict[str, list[float]] = {}

    def client() -> None:
        http = Http(args.base, args.token)
        _steps.times = {}
        try:
            while True:
                _steps.times.clear()
                began = time.perf_counter()
                if began >= end or len(counted) >= args.max:
                    return
                try:
                    operation(http)
                except Exception as exc:  # counted and shown, the run goes on
                    with lock:
                        errors.append(f"{type(exc).__name__}: {exc}"[:300])
                    if len(errors) > 50:
                        return
                    continue
                finished = time.perf_counter()
                if began >= start and finished <= end:
                    with lock:
                        counted.append(finished - began)
                        for name, times in _steps.times.items():
                            steps.setdefault(name, []).extend(times)
        finally:
            http.close()

    threads = [threading.Thread(target=client) for _ in range(args.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # When the count bound stopped the run early, the window is shorter than asked.
    window = min(end, time.perf_counter()) - start
    print(
        json.dumps(
            {
                "count": len(counted),
                "seconds": window,
                "per_second": len(counted) / window if window > 0 else 0.0,
                "latency_p50_ms": median(counted) * 1000 if counted else None,
                "step_p50_ms": {name: median(times) * 1000 for name, times in steps.items()},
                "errors": len(errors),
                "first_error": errors[0] if errors else "",
            }
        )
    )


if __name__ == "__main__":
    main()
