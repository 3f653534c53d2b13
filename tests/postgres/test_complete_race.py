"""Twenty concurrent completes of one fully uploaded upload: one completion in the database,
every answer 200 with the same file or 409, and the stored bytes right."""

from __future__ import annotations

import pytest

from tests.helpers import ApiClient, Store
from uploads.models import FileRecord

from .conftest import ready_to_complete, run_together

pytestmark = pytest.mark.django_db(transaction=True)
CALLERS = 20


def test_concurrent_completes_complete_once(backend, user, store_view: Store):
    body, content, parts = ready_to_complete(ApiClient(user), backend, 5, full_parts=2, tail=333)

    url = f"/v1/files/uploads/{body['id']}/complete"
    clients = [ApiClient(user) for _ in range(CALLERS)]
    responses = run_together(
        *(lambda client=client: client.post(url, {"parts": parts}) for client in clients)
    )

    for response in responses:
        if isinstance(response, BaseException):
            raise response
    codes = sorted(r.status_code for r in responses)
    assert set(codes) <= {200, 409}, [(r.status_code, r.content) for r in responses]
    assert 200 in codes
    assert {r.json()["id"] for r in responses if r.status_code == 200} == {body["id"]}
    assert all(r.json()["upload_status"] == "completed" for r in responses if r.status_code == 200)

    current = FileRecord.objects.get(pk=body["id"])
    assert current.upload_status == FileRecord.Status.COMPLETED
    assert current.completed_at is not None
    assert FileRecord.objects.filter(created_by=user).count() == 1
    assert store_view.object_bytes(current.storage_key) == content
    assert not store_view.upload_alive(body["upload_id"])
