"""Completion racing expiry cleanup for the same upload, on real PostgreSQL with real threads.

Each round ends in one of two states and nothing in between: completed with the object stored
and its bytes right, or aborted with no object and no parts left. Never completed without its
object, never aborted with an object (or parts) left behind to bill for.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from tests.helpers import ApiClient, Store
from uploads.errors import UploadError
from uploads.models import FileRecord
from uploads.services import cleanup

from .conftest import ready_to_complete, run_together

pytestmark = pytest.mark.django_db(transaction=True)
Status = FileRecord.Status
# What the losing complete answers: 409 invalid_state. moto answers CompleteMultipartUpload of
# an upload aborted a moment earlier with a 500 (a KeyError in its models) where S3 says
# NoSuchUpload (as the verifying store does): a store failure of a completion whose row has
# ended is that same 409.
LOSING_STATUSES = {"local": {409}, "s3": {409}, "verifying": {409}}
ROUNDS = 20


def prepare(api: ApiClient, backend: str, seed: int) -> tuple[dict[str, Any], bytes, list[dict]]:
    """An upload with every part in the store, ready to complete, already past its expiry."""
    body, content, parts = ready_to_complete(api, backend, seed)
    FileRecord.objects.filter(pk=body["id"]).update(
        upload_expires_at=timezone.now() - timedelta(seconds=1)
    )
    return body, content, parts


def test_complete_racing_cleanup_is_all_or_nothing(backend, user, store_view: Store):
    outcomes: Counter[str] = Counter()
    for round_number in range(ROUNDS):
        api = ApiClient(user)
        upload, content, parts = prepare(api, backend, round_number)
        url = f"/v1/files/uploads/{upload['id']}/complete"

        completer = ApiClient(user)
        response, result = run_together(
            lambda client=completer, url=url, parts=parts: client.post(url, {"parts": parts}),
            cleanup.cleanup_expired_uploads,
        )
        for outcome in (response, result):
            if isinstance(outcome, BaseException):
                raise outcome

        current = FileRecord.objects.get(pk=upload["id"])
        stored = store_view.object_bytes(current.storage_key)
        where = f"round {round_number}: {current.upload_status}, response {response.status_code}"
        # Whatever happened, no parts may be left in the store.
        assert not store_view.upload_alive(upload["upload_id"]), where
        if current.upload_status == Status.COMPLETED:
            assert response.status_code == 200, (where, response.content)
            assert response.json()["id"] == upload["id"]
            assert stored == content, where
            assert result.aborted == 0, where
        else:
            assert current.upload_status == Status.ABORTED, where
            assert response.status_code in LOSING_STATUSES[backend], (where, response.content)
            assert stored is None, f"{where}: an aborted upload left its object behind"
            assert current.upload_id == "", where
            assert result.aborted == 1, where
        outcomes[current.upload_status] += 1
    print(f"{backend}: {dict(outcomes)}")


def test_service_level_race_never_raises_anything_but_upload_errors(user, local_disk):
    """The same race without HTTP in between: the service only ever raises domain errors."""
    from uploads.services.completion import upload_complete
    from uploads.storage.base import CompletedPart

    store = Store("local")
    for round_number in range(20):
        api = ApiClient(user)
        upload, content, parts = prepare(api, "local", 1000 + round_number)
        completed_parts = [CompletedPart(p["part_number"], p["etag"]) for p in parts]
        outcome, _ = run_together(
            lambda file_id=upload["id"], done=completed_parts: upload_complete(
                user=user, file_id=file_id, parts=done
            ),
            cleanup.cleanup_expired_uploads,
        )
        current = FileRecord.objects.get(pk=upload["id"])
        stored = store.object_bytes(current.storage_key)
        if isinstance(outcome, BaseException):
            assert isinstance(outcome, UploadError), repr(outcome)
            assert current.upload_status == Status.ABORTED
            assert stored is None
        else:
            assert current.upload_status == Status.COMPLETED
            assert stored == content
        assert not store.upload_alive(upload["upload_id"])
