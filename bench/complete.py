"""Complete of a 10,000-part upload: server time excluding the store's own calls.

Two figures, each the median of several completes of fresh 10,000-part uploads:
- the service, `upload_complete(...)` called directly with the parts;
- the whole request in-process (JWT auth, JSON body, schema validation, service, response),
  through Django's test client.
Baselines: the least work any verifier must do with the same input, in plain Python: match
10,000 (number, etag) pairs against the store's list in a dict and add up the sizes (for the
request, after `json.loads` of the same body).

Why a stub store and not moto: S3 refuses non-last parts under 5 MiB, so a real 10,000-part
upload on moto means 50 GB in its memory; and the goal excludes the store's calls anyway. The stub
answers list_parts with 10,000 StoredParts built beforehand, and complete/head with an
ObjectInfo. Each of its methods is also timed, and that time is subtracted, so even the stub's
own (tiny) cost is not counted as ours.

Run: `python -m bench.complete [--quick]`.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from unittest import mock

from bench.common import MIB, Row, run_alone, setup_django
from bench.harness import access_token, remove_workdir_at_exit, smoke

GOAL_SECONDS = 0.1
PARTS = 10_000
STORE = "stub handler (store calls timed and subtracted)"


def setup() -> None:
    setup_django()
    remove_workdir_at_exit()


class TimedStubStore:
    """A store that already holds every part and answers at once; its time is kept apart.

    For initiate (bench/initiate.py) it hands out `targets`, the part URLs signed beforehand.
    """

    name = "stub"
    completion_timeout = timedelta(minutes=15)

    def __init__(self, stored: list[Any], size: int, targets: list[Any] | None = None) -> None:
        from uploads.storage.base import ObjectInfo

        self.stored = stored
        self.targets = targets or []
        self.info = ObjectInfo(size=size, etag=f"{'0' * 32}-{len(stored)}", content_type="")
        self.seconds = 0.0
        self.calls: list[str] = []

    def _timed(self, name: str, fn: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        try:
            return fn()
        finally:
            self.seconds += time.perf_counter() - start
            self.calls.append(name)

    def initiate(
        self, *, file_id: str, key: str, content_type: str, checksum_algorithm: str = ""
    ) -> Any:
        from uploads.storage.base import MultipartUpload

        return self._timed(
            "initiate",
            lambda: MultipartUpload(file_id, key, f"bench-{file_id}", checksum_algorithm),
        )

    def presign_parts(self, upload: Any, parts: Any, *, expires_in: int) -> list[Any]:
        return self._timed("presign_parts", lambda: self.targets[: len(parts)])  # type: ignore[no-any-return]

    def list_parts(self, upload: Any) -> list[Any]:
        return self._timed("list_parts", lambda: list(self.stored))  # type: ignore[no-any-return]

    def complete(self, upload: Any, parts: Any, *, content_type: str) -> Any:
        return self._timed("complete", lambda: self.info)

    def head(self, key: str) -> Any:
        return self._timed("head", lambda: self.info)

    def abort(self, upload: Any) -> None:
        raise AssertionError("the bench's parts are all valid; nothing should abort")

    def delete(self, key: str) -> None:
        raise AssertionError("nothing should be deleted")

    def read_head(self, key: str, length: int) -> bytes:
        return self._timed("read_head", lambda: b"")  # type: ignore[no-any-return]


def run(quick: bool = False) -> list[Row]:
    from django.contrib.auth import get_user_model
    from django.test import Client

    from uploads.models import FileRecord
    from uploads.services.completion import upload_complete
    from uploads.storage.base import CompletedPart, StoredPart

    parts = 1_000 if smoke() else PARTS
    repeat = 2 if smoke() else 3 if quick else 7
    part_size = 5 * MIB
    size = (parts - 1) * part_size + 1234
    etags = [
        hashlib.md5(str(n).encode(), usedforsecurity=False).hexdigest() for n in range(1, parts + 1)
    ]
    stored = [
        StoredPart(n, part_size if n < parts else 1234, etags[n - 1]) for n in range(1, parts + 1)
    ]
    # What a client sends: etags quoted, as they come from the PUT responses' ETag header.
    completed = [CompletedPart(n, f'"{etags[n - 1]}"') for n in range(1, parts + 1)]
    body = json.dumps(
        {"parts": [{"part_number": p.part_number, "etag": p.etag} for p in completed]}
    )
    user, _ = get_user_model().objects.get_or_create(username="bench-complete")
    client = Client(HTTP_AUTHORIZATION=f"Bearer {access_token(user)}")

    def new_record() -> Any:
        file_id = uuid.uuid4()
        return FileRecord.objects.create(
            id=file_id,
            name="big.bin",
            file_name="big.bin",
            file_size=size,
            file=f"uploads/bench/{file_id.hex}",
            upload_status=FileRecord.Status.UPLOADING,
            upload_id=uuid.uuid4().hex,
            total_parts=parts,
            part_size=part_size,
            created_by=user,
        )

    def timed_complete(call: Callable[[Any], None]) -> float:
        """Median over `repeat` fresh uploads (after one warm-up), store time subtracted."""
        samples = []
        for index in range(repeat + 1):
            record = new_record()
            store = TimedStubStore(stored, size)
            with mock.patch("uploads.services.completion.get_storage_handler", return_value=store):
                start = time.perf_counter()
                call(record)
                elapsed = time.perf_counter() - start
            assert FileRecord.objects.get(pk=record.pk).upload_status == "completed"
            assert store.calls == ["list_parts", "complete"], store.calls
            if index:
                samples.append(elapsed - store.seconds)
        return sorted(samples)[len(samples) // 2]

    def via_service(record: Any) -> None:
        upload_complete(user=user, file_id=record.pk, parts=completed)

    def via_request(record: Any) -> None:
        response = client.post(
            f"/v1/files/uploads/{record.pk}/complete", body, content_type="application/json"
        )
        assert response.status_code == 200, response.content[:300]

    def floor(parse: bool) -> float:
        samples = []
        for _ in range(repeat):
            start = time.perf_counter()
            items: list[dict[str, Any]] = (
                json.loads(body)["parts"]
                if parse
                else [{"part_number": p.part_number, "etag": p.etag} for p in completed]
            )
            if not parse:
                start = time.perf_counter()
            held = {p.part_number: p for p in stored}
            total = 0
            for item in items:
                part = held[item["part_number"]]
                assert part.etag == item["etag"].strip('"')
                total += part.size
            assert total == size
            samples.append(time.perf_counter() - start)
        return sorted(samples)[len(samples) // 2]

    service = timed_complete(via_service)
    request = timed_complete(via_request)
    label = f"{parts:,}"
    return [
        Row(
            measure=f"complete {label} parts: upload_complete service (excl. store calls)",
            ours=service,
            baseline=floor(parse=False),
            unit="s",
            goal=f"≤ {GOAL_SECONDS} s",
            passed=service <= GOAL_SECONDS,
            note="baseline: dict match of the same parts + size sum in plain Python; "
            f"median of {repeat}",
        ),
        Row(
            measure=f"complete {label} parts: whole request in-process (excl. store calls)",
            ours=request,
            baseline=floor(parse=True),
            unit="s",
            goal=f"≤ {GOAL_SECONDS} s",
            passed=request <= GOAL_SECONDS,
            note="JWT + JSON + schema + service + response; baseline: json.loads of the "
            f"same {len(body) / 1e6:.2f} MB body + the same dict match",
        ),
    ]


def main() -> None:
    run_alone("complete")


if __name__ == "__main__":
    main()
