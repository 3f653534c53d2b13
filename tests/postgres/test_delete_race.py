"""Completion racing a delete (DELETE /v1/files/{id}) or an abort (DELETE /v1/files/uploads/{id})
of the same upload, on real PostgreSQL with real threads, twenty rounds per store.

Never a 500, and never a stored object without a record: the loser answers 409 with a reason,
and the file ends either completed with its bytes (then deleted and kept for its retention, if
the delete came second) or ended with nothing stored.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from tests.helpers import ApiClient, Store
from uploads.models import FileRecord
from uploads.services import cleanup

from .conftest import ready_to_complete, run_together

pytestmark = pytest.mark.django_db(transaction=True)
Status = FileRecord.Status
ROUNDS = 20
# Seconds between the staggered starts of the ending request; a completion takes longer on S3.
DELAY_STEP = {"local": 0.005, "s3": 0.08, "verifying": 0.08}


def stored_keys(store_view: Store) -> set[str]:
    """Every object the store holds (parts of unfinished uploads aside)."""
    if store_view.s3 is None:
        root = Path(settings.MEDIA_ROOT)
        parts = Path(settings.UPLOADS_LOCAL_PARTS_DIR)
        return {
            str(path.relative_to(root))
            for path in root.rglob("*")
            if path.is_file() and parts not in path.parents
        }
    pages = store_view.s3.client.get_paginator("list_objects_v2")
    return {
        item["Key"]
        for page in pages.paginate(Bucket=store_view.s3.bucket)
        for item in page.get("Contents", [])
    }


def assert_every_object_has_a_record(store_view: Store) -> None:
    keys = stored_keys(store_view)
    recorded = set(FileRecord.objects.filter(file__in=keys).values_list("file", flat=True))
    assert keys == recorded, f"objects without a record: {sorted(keys - recorded)}"


@pytest.mark.parametrize("ending", ["delete", "abort"])
def test_complete_racing_delete_or_abort(backend, user, store_view: Store, ending):
    outcomes: Counter[str] = Counter()
    for round_number in range(ROUNDS):
        upload, content, parts = ready_to_complete(ApiClient(user), backend, round_number)
        completer, ender = ApiClient(user), ApiClient(user)
        complete_url = f"/v1/files/uploads/{upload['id']}/complete"
        end_url = (
            f"/v1/files/{upload['id']}"
            if ending == "delete"
            else f"/v1/files/uploads/{upload['id']}"
        )

        # Staggered starts, so the ending meets the completion before, during and after it.
        delay = (round_number % 5) * DELAY_STEP[backend]

        def end(client: ApiClient = ender, url: str = end_url, delay: float = delay) -> Any:
            time.sleep(delay)
            return client.delete(url)

        completed, ended = run_together(
            lambda c=completer, u=complete_url, p=parts: c.post(u, {"parts": p}), end
        )
        for outcome in (completed, ended):
            if isinstance(outcome, BaseException):
                raise outcome

        current = FileRecord.objects.get(pk=upload["id"])
        where = (
            f"round {round_number}: {current.upload_status}, complete {completed.status_code} "
            f"{completed.content!r}, {ending} {ended.status_code} {ended.content!r}"
        )
        assert completed.status_code in {200, 409}, where
        assert not store_view.upload_alive(upload["upload_id"]), where
        stored = store_view.object_bytes(current.storage_key)
        if completed.status_code == 200:
            # Completion first: the file's bytes are whole, whatever came second.
            assert current.upload_status == Status.COMPLETED, where
            assert stored == content, where
            if ending == "delete":
                assert ended.status_code == 204, where
                assert current.deleted_at is not None, where
            else:
                assert ended.status_code == 409, where
                assert "completed" in ended.json()["detail"], where
        else:
            # The ending won: nothing of the file is stored, and the loser says why.
            assert ended.status_code == 204, where
            assert current.upload_status == Status.ABORTED, where
            assert stored is None, where
            assert ("deleted" if ending == "delete" else "aborted") in completed.json()["detail"]
        assert_every_object_has_a_record(store_view)
        outcomes[f"complete {completed.status_code}"] += 1

    # Deleted files are purged after their retention: then nothing at all is left.
    cleanup.purge_deleted_files(retention_days=0)
    assert_every_object_has_a_record(store_view)
    if ending == "delete":
        assert not FileRecord.objects.exists()
        assert stored_keys(store_view) == set()
    print(f"{backend} {ending}: {dict(outcomes)}")
