"""Twenty concurrent completes of one fully uploaded upload: one completion in the database,
every answer 200 with the same file or 409, and the stored bytes right."""

from __future__ import annotations

import random
from typing import Any

import pytest
import requests

from tests.helpers import ApiClient
from uploads.models import FileRecord

from .conftest import StoreView, run_together

pytestmark = pytest.mark.django_db(transaction=True)
MIB = 1024 * 1024
CALLERS = 20


def test_concurrent_completes_complete_once(backend, user, store_view: StoreView):
    part_size = 1024 if backend == "local" else 5 * MIB
    content = random.Random(5).randbytes(2 * part_size + 333)
    api = ApiClient(user)
    init = api.post(
        "/v1/files/uploads",
        {"file_name": "twenty.bin", "file_size": len(content), "part_size": part_size},
    )
    assert init.status_code == 201, init.content
    body = init.json()
    parts = []
    for target in body["presigned_urls"]:
        n = target["part_number"]
        chunk = content[(n - 1) * part_size : n * part_size]
        if backend == "local":
            response: Any = api.put_part(target["url"], chunk)
        else:
            response = requests.put(target["url"], data=chunk, timeout=60)
        assert response.status_code == 200
        parts.append({"part_number": n, "etag": response.headers["ETag"]})

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
