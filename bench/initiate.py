"""Initiate of a 10,000-part upload: server time excluding the store's own calls.

Two figures, each the median of several initiates of a 50 GB file in 10,000 parts:
- the service, `upload_initiate(...)` called directly;
- the whole request in-process (JWT auth, JSON body, schema validation, service, a 4.6 MB JSON
  response), through Django's test client.
Baseline: the least work any server must do to answer the same part URLs, in plain Python:
turn the store's 10,000 targets into dicts and `json.dumps` them.

The store is bench/complete.py's timed stub: `presign_parts` hands out 10,000 URLs signed
beforehand, shaped and sized as S3's (SigV4 query strings, about 430 bytes each), and its time
is subtracted, so signing (the store's work, measured by bench/presign.py on moto) is not
counted as ours.

Run: `python -m bench.initiate [--quick]`.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any
from unittest import mock

from bench.common import MIB, Row, run_alone, setup_django
from bench.complete import TimedStubStore
from bench.harness import access_token, remove_workdir_at_exit, smoke

GOAL_SECONDS = 0.15
PARTS = 10_000
STORE = "stub handler (store calls timed and subtracted)"


def setup() -> None:
    setup_django()
    remove_workdir_at_exit()


def s3_like_targets(parts: int) -> list[Any]:
    """Part URLs as S3's presigner writes them (path, upload id, SigV4 query), one per part."""
    from uploads.storage.base import PartTarget

    key = f"uploads/{uuid.uuid4().hex}/big.bin"
    upload_id = "2~" + uuid.uuid4().hex * 2
    query = (
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20261202"
        "%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20261202T002000Z&X-Amz-Expires=3600"
        "&X-Amz-SignedHeaders=content-length%3Bhost"
    )
    return [
        PartTarget(
            n,
            f"https://bench-bucket.s3.us-east-1.amazonaws.com/{key}?uploadId={upload_id}"
            f"&partNumber={n}&{query}&X-Amz-Signature={uuid.uuid4().hex * 2}",
        )
        for n in range(1, parts + 1)
    ]


def run(quick: bool = False) -> list[Row]:
    from django.contrib.auth import get_user_model
    from django.test import Client

    from uploads.services.uploads import upload_initiate

    parts = 1_000 if smoke() else PARTS
    repeat = 2 if smoke() else 3 if quick else 7
    part_size = 5 * MIB
    size = parts * part_size
    targets = s3_like_targets(parts)
    fields = {"file_name": "big.bin", "file_size": size, "part_size": part_size}
    body = json.dumps(fields)
    user, _ = get_user_model().objects.get_or_create(username="bench-initiate")
    client = Client(HTTP_AUTHORIZATION=f"Bearer {access_token(user)}")
    answered: list[bytes] = []

    def timed_initiate(call: Callable[[], None]) -> float:
        """Median over `repeat` initiates (after one warm-up), store time subtracted."""
        samples = []
        for index in range(repeat + 1):
            store = TimedStubStore([], size, targets)
            with mock.patch("uploads.services.uploads.get_storage_handler", return_value=store):
                start = time.perf_counter()
                call()
                elapsed = time.perf_counter() - start
            assert store.calls == ["initiate", "presign_parts"], store.calls
            if index:
                samples.append(elapsed - store.seconds)
        return sorted(samples)[len(samples) // 2]

    def via_service() -> None:
        initiated = upload_initiate(user=user, **fields)  # type: ignore[arg-type]
        assert len(initiated.presigned_urls) == parts

    def via_request() -> None:
        response = client.post("/v1/files/uploads", body, content_type="application/json")
        assert response.status_code == 201, response.content[:300]
        answered.append(response.content)

    def floor() -> float:
        samples = []
        for _ in range(repeat):
            start = time.perf_counter()
            json.dumps(
                {
                    "presigned_urls": [
                        {"part_number": t.part_number, "url": t.url, "headers": dict(t.headers)}
                        for t in targets
                    ]
                }
            )
            samples.append(time.perf_counter() - start)
        return sorted(samples)[len(samples) // 2]

    service = timed_initiate(via_service)
    request = timed_initiate(via_request)
    # Checked outside the timing: every part's URL, as the store signed it.
    urls = json.loads(answered[-1])["presigned_urls"]
    assert [u["url"] for u in urls] == [t.url for t in targets]
    label = f"{parts:,}"
    return [
        Row(
            measure=f"initiate {label} parts: upload_initiate service (excl. store calls)",
            ours=service,
            baseline=None,
            unit="s",
            goal="(reported)",
            passed=None,
            note=f"median of {repeat}",
        ),
        Row(
            measure=f"initiate {label} parts: whole request in-process (excl. store calls)",
            ours=request,
            baseline=floor(),
            unit="s",
            goal=f"≤ {GOAL_SECONDS} s",
            passed=request <= GOAL_SECONDS,
            note=f"JWT + JSON + schema + service + a {len(answered[-1]) / 1e6:.2f} MB response; "
            "baseline: the same part URLs as dicts through json.dumps",
        ),
    ]


def main() -> None:
    run_alone("initiate")


if __name__ == "__main__":
    main()
