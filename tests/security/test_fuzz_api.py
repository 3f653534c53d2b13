"""Schemathesis against /v1/openapi.json: generated requests to every operation, in process
through the WSGI app, as a real signed-in user (JWT), against real objects.

For every case: no 5xx, the status code is one the schema documents, and the body matches the
schema documented for that status. Both schema-valid ("positive") and schema-violating
("negative") inputs are generated; path ids are sometimes swapped for real ids (an upload in
flight, a completed file, someone else's file), so cases reach past the 404.

Bounded for CI: about 1,300 cases, well under a minute on this machine's kind.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import schemathesis
from django.contrib.auth import get_user_model
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.helpers import ApiClient, access_token

pytestmark = pytest.mark.django_db

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
EXAMPLES = {GenerationMode.POSITIVE: 60, GenerationMode.NEGATIVE: 40}
MIN_CASES = 1_000
PART = 1024


def _hypothesis(max_examples: int) -> Any:
    return hypothesis_settings(
        max_examples=max_examples,
        deadline=None,
        # No example database: nothing written into the work tree, every run draws afresh
        # (a failure prints the seed that reproduces it).
        database=None,
        suppress_health_check=list(HealthCheck),
    )


def in_test_transaction(app: Any) -> Any:
    """The WSGI app, minus its end-of-request "close old connections".

    That hook would close the test's own database connection (inside its transaction, Django
    sees it as unusable on PostgreSQL); Django's test client switches it off the same way. The
    body is read before the hook comes back, since `close()` is what fires request_finished.
    """

    def wrapped(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        signals.request_started.disconnect(close_old_connections)
        signals.request_finished.disconnect(close_old_connections)
        try:
            response = app(environ, start_response)
            try:
                return [b"".join(response)]
            finally:
                response.close()
        finally:
            signals.request_started.connect(close_old_connections)
            signals.request_finished.connect(close_old_connections)

    return wrapped


@pytest.fixture
def schema(db: Any) -> Any:
    return schemathesis.openapi.from_wsgi(
        "/v1/openapi.json", in_test_transaction(get_wsgi_application())
    )


def seed_files(owner: ApiClient, stranger: ApiClient) -> list[str]:
    """Fresh real ids: the owner's upload in flight, completed file, and a stranger's file."""
    content = bytes(range(256)) * 5  # 1,280 bytes: two parts
    ids = []
    init = owner.post(
        "/v1/files/uploads", {"file_name": "f.bin", "file_size": len(content), "part_size": PART}
    ).json()
    for target in init["presigned_urls"]:
        n = target["part_number"]
        assert owner.put_part(target["url"], content[(n - 1) * PART : n * PART]).status_code == 200
    ids.append(init["id"])
    ids.append(owner.upload(content, part_size=PART)["id"])
    ids.append(stranger.upload(content, part_size=PART)["id"])
    return ids


class Findings:
    def __init__(self) -> None:
        self.cases = 0
        self.statuses: Counter[tuple[str, int]] = Counter()
        self.failures: list[str] = []

    def record(self, label: str, status: int, error: BaseException | None) -> None:
        self.cases += 1
        self.statuses[(label, status)] += 1
        if error is not None and len(self.failures) < 20:
            details = getattr(error, "exceptions", [error])
            reasons = "; ".join(str(item).splitlines()[0][:200] for item in details)
            self.failures.append(f"{label} → {status}: {reasons}")


def run_operation(
    operation: Any,
    mode: GenerationMode,
    examples: int,
    headers: dict[str, str],
    ids: list[str],
    findings: Findings,
) -> None:
    @_hypothesis(examples)
    @given(case=operation.as_strategy(generation_mode=mode), real_id=st.sampled_from([None, *ids]))
    def check(case: Any, real_id: str | None) -> None:
        if real_id is not None and "file_id" in (case.path_parameters or {}):
            case.path_parameters["file_id"] = real_id
        response = case.call(headers=headers)
        try:
            case.validate_response(response, checks=CHECKS)
        except BaseException as error:  # schemathesis raises failure groups; collect, go on
            findings.record(operation.label, response.status_code, error)
        else:
            findings.record(operation.label, response.status_code, None)

    check()


def test_generated_requests_get_documented_answers_and_never_a_5xx(
    schema: Any, local_disk: None, settings: Any, user: Any
) -> None:
    # The token endpoints' password-guessing throttle would turn most cases into 429s;
    # the throttled answer itself is fuzzed in the next test.
    settings.AUTH_TOKEN_THROTTLE_RATE = ""
    stranger = get_user_model().objects.create_user("stranger", password="stranger-pass")
    owner, other = ApiClient(user), ApiClient(stranger)
    headers = {"Authorization": f"Bearer {access_token(user)}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 13, [op.label for op in operations]
    findings = Findings()

    for operation in operations:
        for mode, examples in EXAMPLES.items():
            ids = seed_files(owner, other)
            run_operation(operation, mode, examples, headers, ids, findings)

    per_status = sorted(findings.statuses.items())
    print(f"\nfuzz: {findings.cases} cases over {len(operations)} operations")
    for (label, status), count in per_status:
        print(f"  {label:55} {status}: {count}")
    assert not findings.failures, "\n".join(findings.failures)
    assert findings.cases >= MIN_CASES
    # The cases reached past authentication and lookup: some succeeded, on several operations.
    succeeded = {label for (label, status), _ in per_status if status < 400}
    assert len(succeeded) >= 8, succeeded


def test_throttled_token_answers_match_the_schema(schema: Any, settings: Any, user: Any) -> None:
    settings.AUTH_TOKEN_THROTTLE_RATE = "3/min"
    findings = Findings()
    for operation in schema.get_all_operations():
        operation = operation.ok()
        if operation.path.startswith("/v1/auth/"):
            run_operation(operation, GenerationMode.POSITIVE, 15, {}, [], findings)
    assert not findings.failures, "\n".join(findings.failures)
    assert any(status == 429 for (_, status) in findings.statuses), findings.statuses
