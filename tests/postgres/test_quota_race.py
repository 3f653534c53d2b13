"""Two initiates for one user at the same instant, with room in the quota for only one of them:
exactly one is accepted (201) and the other refused (413 quota_exceeded), every time."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from tests.helpers import ApiClient
from uploads.models import FileRecord

from .conftest import run_together

pytestmark = pytest.mark.django_db(transaction=True)
SIZE = 1000


@pytest.mark.usefixtures("local_disk")
def test_concurrent_initiates_cannot_both_slip_under_the_quota(settings):
    settings.FILE_UPLOAD_QUOTA_PER_USER = SIZE + SIZE // 2
    for round_number in range(10):
        owner = get_user_model().objects.create_user(f"quota-{round_number}", password="x")
        clients = [ApiClient(owner), ApiClient(owner)]
        responses = run_together(
            *(
                lambda client=client, n=n: client.post(
                    "/v1/files/uploads", {"file_name": f"q{n}.bin", "file_size": SIZE}
                )
                for n, client in enumerate(clients)
            )
        )
        for response in responses:
            if isinstance(response, BaseException):
                raise response
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [201, 413], (round_number, [r.content for r in responses])
        refused = next(r for r in responses if r.status_code == 413)
        assert refused.json()["code"] == "quota_exceeded"
        accepted = next(r for r in responses if r.status_code == 201)
        assert list(FileRecord.objects.filter(created_by=owner).values_list("pk", flat=True)) == [
            __import__("uuid").UUID(accepted.json()["id"])
        ]
