"""The /v1/ upload API against the local-disk handler: parts are PUT through Django's client."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.files.storage import default_storage
from django.test import Client
from django.utils import timezone
from ninja_jwt.tokens import AccessToken, RefreshToken

from tests.factories import FileRecordFactory
from tests.helpers import PART, UPLOADS, ApiClient, assert_error, initiate, local_part_files
from tests.testapp.models import Post
from uploads.errors import size_text
from uploads.models import FileRecord
from uploads.services import cleanup

KIB = 1024
GIB = 1024**3


# --- Local helpers -------------------------------------------------------------------------


def start(api: ApiClient, content: bytes, **fields: Any) -> tuple[dict[str, Any], list[dict]]:
    """An upload with every part stored but not yet completed."""
    init = initiate(api, len(content), **fields)
    return init, api.put_parts(init, content)


def complete(api: ApiClient, file_id: str, parts: list[dict[str, Any]]) -> Any:
    return api.post(f"{UPLOADS}/{file_id}/complete", {"parts": parts})


def record(file_id: str) -> FileRecord:
    return FileRecord.objects.get(pk=file_id)


def snapshot(file_id: str) -> dict[str, Any]:
    return FileRecord.objects.filter(pk=file_id).values().get()


def part_dir(upload_id: str) -> Path:
    return Path(django_settings.UPLOADS_LOCAL_PARTS_DIR) / upload_id


def download_bytes(api: ApiClient, file_id: str) -> bytes:
    response = api.get(f"/v1/files/{file_id}/download")
    assert response.status_code == 302, response.content
    followed = api.get(response["Location"])
    assert followed.status_code == 200, followed.content
    try:
        return b"".join(followed.streaming_content)
    finally:
        followed.close()


def fail(api: ApiClient, init: dict[str, Any], parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Make the upload one that can never complete: the store lost it. Complete then fails it."""
    shutil.rmtree(part_dir(init["upload_id"]))
    return assert_error(complete(api, init["id"], parts), 400, "verification_failed")


@pytest.fixture
def content() -> bytes:
    # Three parts of 1 KiB, the last one short.
    return os.urandom(2 * PART + 500)


@pytest.fixture
def staff_api(staff_user: Any, api_for: Any) -> ApiClient:
    return api_for(staff_user)  # type: ignore[no-any-return]


@pytest.fixture
def other_api(other_user: Any, api_for: Any) -> ApiClient:
    return api_for(other_user)  # type: ignore[no-any-return]


# --- Initiate ------------------------------------------------------------------------------


def test_initiate_returns_one_absolute_presigned_url_per_part(api, user, content):
    response = api.post(
        UPLOADS,
        {
            "file_name": "report.pdf",
            "file_size": len(content),
            "part_size": PART,
            "name": "Q3 report",
            "description": "numbers",
        },
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["upload_status"] == "uploading"
    assert body["part_size"] == PART
    assert body["total_parts"] == 3
    assert body["upload_id"]
    assert body["expires_in"] == django_settings.FILE_UPLOAD_PRESIGNED_URL_EXPIRATION
    assert [t["part_number"] for t in body["presigned_urls"]] == [1, 2, 3]
    urls = [t["url"] for t in body["presigned_urls"]]
    assert all(url.startswith("http://testserver/") for url in urls)
    assert len(set(urls)) == 3
    assert body["file_name"] == "report.pdf"
    assert body["file_content_type"] == "application/pdf"
    assert body["name"] == "Q3 report"
    assert body["url"] is None
    saved = record(body["id"])
    assert saved.upload_status == FileRecord.Status.UPLOADING
    assert saved.upload_id == body["upload_id"]
    assert saved.created_by == user
    assert saved.file_size == len(content)
    assert part_dir(body["upload_id"]).is_dir()


def test_initiate_without_part_size_uses_the_default(api, settings):
    body = initiate(api, 10, part_size=None)
    assert body["part_size"] == settings.UPLOADS_DEFAULT_PART_SIZE
    assert body["total_parts"] == 1
    assert len(body["presigned_urls"]) == 1


def test_initiate_with_consistent_num_parts(api, content):
    body = initiate(api, len(content), num_parts=3)
    assert body["total_parts"] == 3


def test_initiate_name_defaults_to_file_name(api):
    body = initiate(api, 10, file_name="photo.png")
    assert body["name"] == "photo.png"
    assert body["file_content_type"] == "image/png"


def test_initiate_over_max_file_size_is_too_large(api, settings):
    body = assert_error(
        api.post(UPLOADS, {"file_name": "big.bin", "file_size": settings.MAX_FILE_UPLOAD_SIZE + 1}),
        413,
        "too_large",
    )
    assert body["extra"]["max_file_size"] == settings.MAX_FILE_UPLOAD_SIZE
    assert not FileRecord.objects.exists()


def test_initiate_with_a_size_beyond_64_bits_is_too_large(api):
    # JSON integers of any length stay integers (not floats), so the size rule answers.
    for size in (10**30, 2**64):
        body = assert_error(
            api.post(UPLOADS, {"file_name": "big.bin", "file_size": size}), 413, "too_large"
        )
        assert "max_file_size" in body["extra"]
    assert not FileRecord.objects.exists()


def test_file_datetimes_render_to_the_millisecond_in_utc(api):
    body = initiate(api, 10)
    saved = record(body["id"])
    assert body["created"] == saved.created.isoformat(timespec="milliseconds").replace(
        "+00:00", "Z"
    )
    assert body["upload_expires_at"].endswith("Z")
    assert body["completed_at"] is None


def test_initiate_max_file_size_follows_the_setting(api, settings):
    settings.MAX_FILE_UPLOAD_SIZE = 10 * KIB
    body = assert_error(
        api.post(UPLOADS, {"file_name": "a.bin", "file_size": 10 * KIB + 1}), 413, "too_large"
    )
    # In the units the portal and CLI show sizes in, with the exact figure.
    assert body["detail"] == (
        "The file is 10.0 KiB (10,241 bytes); the largest allowed is 10.0 KiB (10,240 bytes)."
    )
    assert initiate(api, 10 * KIB)["file_size"] == 10 * KIB


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"file_size": -1}, "file_size"),
        ({"file_size": 2048, "part_size": PART - 1}, "part_size"),
        ({"file_size": 100, "part_size": 5 * GIB + 1}, "part_size"),
        ({"file_size": 10_001 * PART, "part_size": PART}, "part_size"),
        ({"file_size": 2 * PART + 500, "part_size": PART, "num_parts": 2}, "num_parts"),
        ({"file_size": 2 * PART + 500, "part_size": PART, "num_parts": 4}, "num_parts"),
        ({"file_size": 10, "part_size": 0}, "part_size"),
    ],
    ids=[
        "negative-size",
        "part-below-min",
        "part-over-5gib",
        "over-10000-parts",
        "too-few-parts",
        "too-many-parts",
        "zero-part-size",
    ],
)
def test_initiate_refuses_bad_sizes_with_400(api, fields, field):
    body = assert_error(api.post(UPLOADS, {"file_name": "a.bin", **fields}), 400, "invalid")
    assert body["extra"]["field"] == field
    assert not FileRecord.objects.exists()


def test_initiate_small_single_part_below_min_is_allowed(api):
    body = initiate(api, 1000, part_size=PART - 1)
    assert body["total_parts"] == 1


def test_initiate_over_10000_parts_message_names_the_limit(api):
    body = assert_error(
        api.post(UPLOADS, {"file_name": "a.bin", "file_size": 10_001 * PART, "part_size": PART}),
        400,
        "invalid",
    )
    assert "10000" in body["detail"]


@pytest.mark.parametrize(
    "payload",
    [
        {"file_name": "a.bin", "file_size": True},
        {"file_name": "a.bin", "file_size": "100"},
        {"file_name": "a.bin", "file_size": 1.5},
        {"file_name": "a.bin", "file_size": None},
        {"file_name": "a.bin", "file_size": 10, "part_size": True},
        {"file_name": "a.bin", "file_size": 10, "num_parts": True},
        {"file_size": 10},
        {"file_name": "a.bin"},
        {"file_name": 5, "file_size": 10},
    ],
    ids=[
        "size-true",
        "size-string",
        "size-float",
        "size-null",
        "part-size-true",
        "num-parts-true",
        "no-file-name",
        "no-file-size",
        "file-name-number",
    ],
)
def test_initiate_refuses_wrong_types_with_422(api, payload):
    body = assert_error(api.post(UPLOADS, payload), 422, "invalid")
    assert body["extra"]["errors"]
    assert not FileRecord.objects.exists()


def test_initiate_refuses_a_non_json_body(api):
    response = api.client.post(
        UPLOADS, data="{not json", content_type="application/json", headers=api.headers
    )
    assert_error(response, 400, "invalid")
    assert not FileRecord.objects.exists()


@pytest.mark.parametrize(
    ("file_name", "expected"),
    [
        ("../../etc/secret-name.txt", "secret-name.txt"),
        ("/abs/path/secret-name.txt", "secret-name.txt"),
        ("C:\\Users\\x\\secret-name.txt", "secret-name.txt"),
        ("sub/dir/secret-name.txt", "secret-name.txt"),
    ],
)
def test_initiate_reduces_file_name_to_its_base_name(api, file_name, expected):
    body = initiate(api, 10, file_name=file_name)

    assert body["file_name"] == expected
    saved = record(body["id"])
    assert saved.file_name == expected
    key = saved.file.name
    assert "secret-name" not in key
    assert ".." not in key
    assert "\\" not in key
    assert key.endswith(uuid.UUID(body["id"]).hex)


@pytest.mark.parametrize("file_name", ["", "   ", "..", "dir/", "a/.."])
def test_initiate_refuses_file_names_without_a_base_name(api, file_name):
    body = assert_error(
        api.post(UPLOADS, {"file_name": file_name, "file_size": 10}), 400, "invalid"
    )
    assert body["extra"]["field"] == "file_name"


@pytest.mark.parametrize(
    "content_type", ["text/html; evil", "garbage", "text/", "/plain", "text/html\r\nX-A: b"]
)
def test_initiate_refuses_bad_content_types(api, content_type):
    body = assert_error(
        api.post(
            UPLOADS, {"file_name": "a.html", "file_size": 10, "file_content_type": content_type}
        ),
        400,
        "invalid",
    )
    assert body["extra"]["field"] == "file_content_type"
    assert not FileRecord.objects.exists()


def test_initiate_keeps_a_valid_content_type_lowercased(api):
    body = initiate(api, 10, file_name="a.bin", file_content_type="Text/Plain")
    assert body["file_content_type"] == "text/plain"
    assert record(body["id"]).file_content_type == "text/plain"


def test_zero_byte_file_uploads_completes_and_downloads_empty(api):
    init = initiate(api, 0, file_name="empty.txt")
    assert init["total_parts"] == 1
    assert len(init["presigned_urls"]) == 1

    parts = api.put_parts(init, b"")
    response = complete(api, init["id"], parts)

    assert response.status_code == 200, response.content
    assert response.json()["upload_status"] == "completed"
    assert response.json()["file_size"] == 0
    assert download_bytes(api, init["id"]) == b""


# --- Complete ------------------------------------------------------------------------------


def test_complete_returns_the_completed_file(api, user, content):
    init, parts = start(api, content, file_name="data.bin")

    response = complete(api, init["id"], parts)

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["id"] == init["id"]
    assert body["upload_status"] == "completed"
    assert body["file_size"] == len(content)
    assert body["url"] == f"http://testserver/v1/files/{init['id']}/download"
    assert body["created_by"] == user.pk
    assert body["created_by_name"] == "alice"
    saved = record(init["id"])
    assert saved.upload_status == FileRecord.Status.COMPLETED
    assert saved.completed_at is not None
    assert saved.etag.endswith("-3")
    assert saved.uploaded_parts == 3
    with default_storage.open(saved.file.name, "rb") as stored:
        assert stored.read() == content
    # The part files are gone once combined.
    assert not part_dir(init["upload_id"]).exists()


def test_complete_accepts_parts_in_any_order(api, content):
    init, parts = start(api, content)
    response = complete(api, init["id"], list(reversed(parts)))
    assert response.status_code == 200, response.content
    assert download_bytes(api, init["id"]) == content


def test_complete_is_idempotent_with_the_same_parts(api, content):
    init, parts = start(api, content)
    first = complete(api, init["id"], parts)
    assert first.status_code == 200, first.content

    again = complete(api, init["id"], parts)

    assert again.status_code == 200, again.content
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["upload_status"] == "completed"
    assert again.json()["completed_at"] == first.json()["completed_at"]
    assert again.json()["etag"] == first.json()["etag"]
    assert FileRecord.objects.count() == 1
    assert download_bytes(api, init["id"]) == content


def test_complete_again_with_other_parts_is_a_conflict(api, content):
    init, parts = start(api, content)
    assert complete(api, init["id"], parts).status_code == 200
    before = snapshot(init["id"])
    other = [{**parts[0], "etag": '"' + "0" * 32 + '"'}, *parts[1:]]

    assert_error(complete(api, init["id"], other), 409, "invalid_state")
    assert snapshot(init["id"]) == before


def test_complete_an_aborted_upload_is_a_conflict(api, content):
    init, parts = start(api, content)
    assert api.delete(f"{UPLOADS}/{init['id']}").status_code == 204

    body = assert_error(complete(api, init["id"], parts), 409, "invalid_state")
    assert body["extra"]["upload_status"] == "aborted"
    assert record(init["id"]).upload_status == FileRecord.Status.ABORTED


def test_complete_a_failed_upload_is_a_conflict(api, content):
    init, parts = start(api, content)
    fail(api, init, parts)

    assert_error(complete(api, init["id"], parts), 409, "invalid_state")
    assert record(init["id"]).upload_status == FileRecord.Status.FAILED


@pytest.mark.parametrize(
    ("mangle", "extra_key", "extra_value"),
    [
        (lambda parts: parts[:2], "missing", [3]),
        (lambda parts: [*parts, parts[0]], "duplicates", [1]),
        (lambda parts: [parts[0], parts[0], parts[2]], "duplicates", [1]),
        (lambda parts: [*parts, {"part_number": 4, "etag": parts[0]["etag"]}], "unexpected", [4]),
        (lambda parts: [{**parts[0], "part_number": 0}, *parts[1:]], "unexpected", [0]),
        (lambda parts: [], "missing", [1, 2, 3]),
    ],
    ids=["missing", "duplicate", "duplicate-instead-of-one", "out-of-range", "part-zero", "empty"],
)
def test_complete_with_a_wrong_part_list_keeps_the_upload_open(
    api, content, mangle, extra_key, extra_value
):
    init, parts = start(api, content)

    body = assert_error(complete(api, init["id"], mangle(parts)), 400, "invalid")

    assert body["extra"][extra_key] == extra_value
    saved = record(init["id"])
    assert saved.upload_status == FileRecord.Status.UPLOADING
    assert saved.failure_reason == ""
    assert part_dir(init["upload_id"]).is_dir()
    # A client mistake loses nothing: the right list still completes the file.
    assert complete(api, init["id"], parts).status_code == 200
    assert download_bytes(api, init["id"]) == content


def test_complete_with_an_empty_etag_keeps_the_upload_open(api, content):
    init, parts = start(api, content)
    assert_error(complete(api, init["id"], [{**parts[0], "etag": ""}, *parts[1:]]), 400, "invalid")
    assert record(init["id"]).upload_status == FileRecord.Status.UPLOADING


@pytest.mark.parametrize(
    "payload",
    [
        {"parts": [{"part_number": True, "etag": "abc"}]},
        {"parts": [{"part_number": "1", "etag": "abc"}]},
        {"parts": [{"part_number": 1}]},
        {"parts": "nope"},
        {},
    ],
    ids=["part-number-true", "part-number-string", "no-etag", "parts-string", "no-parts"],
)
def test_complete_with_a_malformed_body_is_422(api, content, payload):
    init, _ = start(api, content)
    assert_error(api.post(f"{UPLOADS}/{init['id']}/complete", payload), 422, "invalid")
    assert record(init["id"]).upload_status == FileRecord.Status.UPLOADING


def assert_mismatch(response: Any, parts: list[int], init: dict[str, Any]) -> dict[str, Any]:
    """400 parts_mismatch naming the parts, and the upload open with every stored part kept."""
    body = assert_error(response, 400, "parts_mismatch")
    assert body["extra"] == {"parts": parts, "upload_status": "uploading"}
    saved = record(init["id"])
    assert saved.upload_status == FileRecord.Status.UPLOADING
    assert saved.failure_reason == ""
    assert part_dir(init["upload_id"]).is_dir()
    assert not default_storage.exists(saved.file.name)
    return body


def test_complete_with_a_wrong_etag_keeps_the_upload_open(api, content):
    init, parts = start(api, content)
    kept = sorted(p.name for p in part_dir(init["upload_id"]).iterdir())
    bad = [parts[0], {**parts[1], "etag": '"' + "f" * 32 + '"'}, parts[2]]

    body = assert_mismatch(complete(api, init["id"], bad), [2], init)

    assert body["detail"] == (
        "Part 2 does not match what the store holds; send it again, then complete."
    )
    assert sorted(p.name for p in part_dir(init["upload_id"]).iterdir()) == kept
    detail = api.get(f"/v1/files/{init['id']}").json()
    assert detail["upload_status"] == "uploading"
    # The client sends part 2 again, takes the ETag the store answers, and completes.
    again = api.put_part(init["presigned_urls"][1]["url"], content[PART : 2 * PART])
    assert again.status_code == 200, again.content
    fixed = [parts[0], {"part_number": 2, "etag": again["ETag"]}, parts[2]]
    assert complete(api, init["id"], fixed).status_code == 200
    assert download_bytes(api, init["id"]) == content


def test_complete_with_parts_never_uploaded_keeps_the_upload_open(api, content):
    init = initiate(api, len(content))
    parts = api.put_parts({**init, "presigned_urls": init["presigned_urls"][:1]}, content)
    claimed = [*parts, {"part_number": 2, "etag": "a" * 32}, {"part_number": 3, "etag": "b" * 32}]

    body = assert_mismatch(complete(api, init["id"], claimed), [2, 3], init)

    assert body["detail"] == (
        "Parts 2 and 3 do not match what the store holds; send them again, then complete."
    )
    parts = api.put_parts(init, content)
    assert complete(api, init["id"], parts).status_code == 200
    assert download_bytes(api, init["id"]) == content


def test_complete_with_a_stored_part_of_the_wrong_size_keeps_the_upload_open(api, content):
    init, parts = start(api, content)
    # A part of another size in the store (sent before sizes were enforced at the PUT): the
    # client's ETag for it matches, but the size does not.
    directory = part_dir(init["upload_id"])
    for old in directory.glob("00002.*"):
        old.unlink()
    short = content[PART : 2 * PART - 10]
    digest = hashlib.md5(short, usedforsecurity=False).hexdigest()
    (directory / f"00002.{digest}").write_bytes(short)
    parts[1] = {"part_number": 2, "etag": digest}

    assert_mismatch(complete(api, init["id"], parts), [2], init)

    parts = api.put_parts(init, content)
    assert complete(api, init["id"], parts).status_code == 200
    assert download_bytes(api, init["id"]) == content


@pytest.mark.parametrize(("number", "delta"), [(2, -10), (3, -1), (3, 1), (1, 1)])
def test_a_part_body_of_another_length_is_refused_before_it_is_stored(api, content, number, delta):
    init, parts = start(api, content)
    before = sorted(p.name for p in part_dir(init["upload_id"]).iterdir())
    start_at = (number - 1) * PART
    planned = len(content[start_at : number * PART])
    body = content[start_at : start_at + planned + delta] if delta < 0 else b"x" * (planned + delta)

    response = api.put_part(init["presigned_urls"][number - 1]["url"], body)

    refused = assert_error(
        response, 413 if delta > 0 else 400, "too_large" if delta > 0 else "invalid"
    )
    assert refused["extra"] == {"part_number": number, "expected_size": planned}
    assert refused["detail"] == (
        f"Part {number} must be exactly {size_text(planned)}; this request sends "
        f"{size_text(planned + delta)}. Nothing was stored."
    )
    # Nothing stored, nothing replaced: the earlier part is still there, and the file completes.
    assert sorted(p.name for p in part_dir(init["upload_id"]).iterdir()) == before
    assert complete(api, init["id"], parts).status_code == 200
    assert download_bytes(api, init["id"]) == content


def test_part_larger_than_declared_is_refused_at_put(api, content):
    init = initiate(api, len(content))
    response = api.put_part(init["presigned_urls"][0]["url"], content[: PART + 1])
    assert_error(response, 413, "too_large")
    assert record(init["id"]).upload_status == FileRecord.Status.UPLOADING


def test_part_without_content_length_is_411(api, content):
    init = initiate(api, len(content))
    response = api.client.put(
        init["presigned_urls"][0]["url"],
        data=content[:PART],
        content_type="application/octet-stream",
        CONTENT_LENGTH="",
    )
    assert_error(response, 411, "length_required")
    assert local_part_files(part_dir(init["upload_id"])) == []


def test_empty_part_with_content_length_zero_is_stored(api):
    init = initiate(api, 0)
    response = api.client.put(
        init["presigned_urls"][0]["url"],
        data=b"",
        content_type="application/octet-stream",
        CONTENT_LENGTH="0",
    )
    assert response.status_code == 200, response.content
    parts = [{"part_number": 1, "etag": response["ETag"]}]
    assert complete(api, init["id"], parts).json()["upload_status"] == "completed"


def test_a_forged_part_link_is_refused(api, content):
    init = initiate(api, len(content))
    url = init["presigned_urls"][0]["url"]
    assert_error(api.put_part(url[:-2] + "xx", content[:PART]), 403, "forbidden")
    assert local_part_files(part_dir(init["upload_id"])) == []


def test_complete_unknown_file_is_404(api):
    response = complete(api, str(uuid.uuid4()), [{"part_number": 1, "etag": "a" * 32}])
    assert_error(response, 404, "not_found")


# --- Abort ---------------------------------------------------------------------------------


def test_abort_marks_the_upload_aborted_and_removes_its_parts(api, content):
    init, _ = start(api, content)
    assert part_dir(init["upload_id"]).is_dir()

    response = api.delete(f"{UPLOADS}/{init['id']}")

    assert response.status_code == 204, response.content
    assert response.content == b""
    assert not part_dir(init["upload_id"]).exists()
    assert record(init["id"]).upload_status == FileRecord.Status.ABORTED
    detail = api.get(f"/v1/files/{init['id']}")
    assert detail.status_code == 200
    assert detail.json()["upload_status"] == "aborted"


def test_part_links_are_dead_after_abort(api, content):
    init = initiate(api, len(content))
    assert api.delete(f"{UPLOADS}/{init['id']}").status_code == 204

    response = api.put_part(init["presigned_urls"][0]["url"], content[:PART])

    assert_error(response, 403, "forbidden")
    assert not part_dir(init["upload_id"]).exists()


def test_abort_twice_is_a_conflict(api, content):
    init, _ = start(api, content)
    assert api.delete(f"{UPLOADS}/{init['id']}").status_code == 204
    assert_error(api.delete(f"{UPLOADS}/{init['id']}"), 409, "invalid_state")


def test_abort_a_completed_file_is_a_conflict_and_keeps_it(api, content):
    done = api.upload(content, part_size=PART)

    body = assert_error(api.delete(f"{UPLOADS}/{done['id']}"), 409, "invalid_state")

    assert body["extra"]["upload_status"] == "completed"
    saved = record(done["id"])
    assert saved.upload_status == FileRecord.Status.COMPLETED
    assert download_bytes(api, done["id"]) == content


# --- Resume: parts held, fresh URLs ----------------------------------------------------------


def test_upload_parts_lists_what_the_store_holds(api, content):
    init = initiate(api, len(content))
    urls = init["presigned_urls"]
    first = api.put_part(urls[0]["url"], content[:PART])
    last = api.put_part(urls[2]["url"], content[2 * PART :])

    response = api.get(f"{UPLOADS}/{init['id']}/parts")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["id"] == init["id"]
    assert body["upload_status"] == "uploading"
    assert body["total_parts"] == 3
    assert body["uploaded_bytes"] == PART + 500
    assert [(p["part_number"], p["size"]) for p in body["parts"]] == [(1, PART), (3, 500)]
    etags = [p["etag"].strip('"') for p in body["parts"]]
    assert etags == [first["ETag"].strip('"'), last["ETag"].strip('"')]


def test_presign_gives_fresh_working_urls(api, content):
    init = initiate(api, len(content))
    parts = api.put_parts({**init, "presigned_urls": init["presigned_urls"][:2]}, content)

    response = api.post(f"{UPLOADS}/{init['id']}/presign", {"part_numbers": [3]})

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["expires_in"] == django_settings.FILE_UPLOAD_PRESIGNED_URL_EXPIRATION
    assert [t["part_number"] for t in body["presigned_urls"]] == [3]
    url = body["presigned_urls"][0]["url"]
    assert url.startswith("http://testserver/")
    put = api.put_part(url, content[2 * PART :])
    assert put.status_code == 200, put.content
    parts.append({"part_number": 3, "etag": put["ETag"]})
    assert complete(api, init["id"], parts).status_code == 200
    assert download_bytes(api, init["id"]) == content


@pytest.mark.parametrize(
    ("numbers", "status"),
    [([0], 400), ([4], 400), ([True], 422), ([], 422)],
    ids=["zero", "past-end", "true", "empty"],
)
def test_presign_refuses_part_numbers_outside_the_upload(api, content, numbers, status):
    init = initiate(api, len(content))
    response = api.post(f"{UPLOADS}/{init['id']}/presign", {"part_numbers": numbers})
    assert_error(response, status, "invalid")


def test_parts_and_presign_of_a_completed_upload_are_conflicts(api, content):
    done = api.upload(content, part_size=PART)
    assert_error(api.get(f"{UPLOADS}/{done['id']}/parts"), 409, "invalid_state")
    response = api.post(f"{UPLOADS}/{done['id']}/presign", {"part_numbers": [1]})
    assert_error(response, 409, "invalid_state")


# --- List ----------------------------------------------------------------------------------


def test_list_defaults_to_completed_files(api, content):
    done = api.upload(content, part_size=PART)
    initiate(api, 10)

    response = api.get("/v1/files")

    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"count", "next", "previous", "results"}
    assert body["count"] == 1
    assert body["next"] is None
    assert body["previous"] is None
    assert [f["id"] for f in body["results"]] == [done["id"]]
    assert body["results"][0]["upload_status"] == "completed"


def test_list_filters_by_status(api, content):
    done = api.upload(content, part_size=PART)
    open_upload = initiate(api, 10)
    aborted = initiate(api, 10)
    assert api.delete(f"{UPLOADS}/{aborted['id']}").status_code == 204

    def ids(query: str) -> set[str]:
        response = api.get(f"/v1/files?{query}")
        assert response.status_code == 200, response.content
        return {f["id"] for f in response.json()["results"]}

    assert ids("status=uploading") == {open_upload["id"]}
    assert ids("status=aborted") == {aborted["id"]}
    assert ids("status=completed") == {done["id"]}
    assert ids("status=all") == {done["id"], open_upload["id"], aborted["id"]}


@pytest.mark.parametrize("query", ["status=", "status=bogus", "status=COMPLETED%20"])
def test_list_refuses_an_empty_or_unknown_status(api, user, query):
    FileRecordFactory(created_by=user)
    body = assert_error(api.get(f"/v1/files?{query}"), 400, "invalid")
    assert body["extra"]["field"] == "status"


def test_list_paginates_with_next_and_previous_links(api, user):
    FileRecordFactory.create_batch(5, created_by=user)

    first = api.get("/v1/files?page_size=2")

    assert first.status_code == 200, first.content
    page1 = first.json()
    assert page1["count"] == 5
    assert len(page1["results"]) == 2
    assert page1["previous"] is None
    assert page1["next"].startswith("http://testserver/v1/files?")
    assert "page=2" in page1["next"]
    assert "page_size=2" in page1["next"]

    page2 = api.get(page1["next"]).json()
    assert len(page2["results"]) == 2
    assert "page=1" in page2["previous"]
    page3 = api.get(page2["next"]).json()
    assert len(page3["results"]) == 1
    assert page3["next"] is None

    seen = [f["id"] for page in (page1, page2, page3) for f in page["results"]]
    assert len(seen) == len(set(seen)) == 5


def test_list_next_link_keeps_the_filters(api, user):
    FileRecordFactory.create_batch(3, created_by=user, upload_status=FileRecord.Status.FAILED)
    body = api.get("/v1/files?status=failed&page_size=1").json()
    assert body["count"] == 3
    assert "status=failed" in body["next"]
    assert api.get(body["next"]).json()["count"] == 3


def test_list_page_past_the_end_is_empty(api, user):
    FileRecordFactory(created_by=user)
    body = api.get("/v1/files?page=3&page_size=1").json()
    assert body["count"] == 1
    assert body["results"] == []
    assert body["next"] is None


@pytest.mark.parametrize("page", ["99999999999999999999", "9223372036854775807"])
def test_list_a_huge_page_number_is_empty_not_a_server_error(api, user, page):
    FileRecordFactory(created_by=user)
    response = api.get(f"/v1/files?page={page}&page_size=500")
    assert response.status_code == 200, response.content
    assert response.json()["results"] == []
    assert response.json()["count"] == 1
    assert response.json()["next"] is None


@pytest.mark.parametrize("query", ["page=0", "page_size=0", "page_size=501", "page=x"])
def test_list_refuses_bad_pagination(api, query):
    assert_error(api.get(f"/v1/files?{query}"), 422, "invalid")


def test_list_shows_only_own_files_to_non_staff(api, user, other_user):
    mine = FileRecordFactory(created_by=user)
    FileRecordFactory(created_by=other_user)

    body = api.get("/v1/files?status=all").json()

    assert body["count"] == 1
    assert [f["id"] for f in body["results"]] == [str(mine.pk)]


def test_list_shows_every_users_files_to_staff(staff_api, user, other_user, staff_user):
    files = [
        FileRecordFactory(created_by=user),
        FileRecordFactory(created_by=other_user),
        FileRecordFactory(created_by=staff_user),
    ]
    FileRecordFactory(created_by=other_user, upload_status=FileRecord.Status.UPLOADING)

    body = staff_api.get("/v1/files").json()

    assert body["count"] == 3
    assert {f["id"] for f in body["results"]} == {str(f.pk) for f in files}
    assert staff_api.get("/v1/files?status=all").json()["count"] == 4


# --- Detail, edit --------------------------------------------------------------------------


SPEC_FIELDS = {
    "id", "name", "description", "file_name", "file_size", "file_content_type", "url",
    "upload_status", "created_by", "created_by_name", "created", "parent_content_type",
    "parent_object_id",
}  # fmt: skip


def test_get_file_returns_the_spec_fields(api, user, content):
    done = api.upload(content, part_size=PART, file_name="notes.txt", description="d")

    response = api.get(f"/v1/files/{done['id']}")

    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) >= SPEC_FIELDS
    assert body["id"] == done["id"]
    assert body["file_name"] == "notes.txt"
    assert body["name"] == "notes.txt"
    assert body["description"] == "d"
    assert body["file_size"] == len(content)
    assert body["file_content_type"] == "text/plain"
    assert body["upload_status"] == "completed"
    assert body["created_by"] == user.pk
    assert body["url"].startswith("http://testserver/")
    assert body["parent_content_type"] is None
    assert body["parent_object_id"] is None


@pytest.mark.parametrize(
    "file_id", ["not-a-uuid", str(uuid.uuid4()), "1"], ids=["not-a-uuid", "unknown-uuid", "1"]
)
def test_get_unknown_or_malformed_id_is_404(api, file_id):
    assert_error(api.get(f"/v1/files/{file_id}"), 404, "not_found")


def test_patch_changes_name_and_description(api, user):
    file = FileRecordFactory(created_by=user, name="old", description="old d")

    response = api.patch(f"/v1/files/{file.pk}", {"name": "  New name ", "description": "new d"})

    assert response.status_code == 200, response.content
    assert response.json()["name"] == "New name"
    assert response.json()["description"] == "new d"
    file.refresh_from_db()
    assert (file.name, file.description) == ("New name", "new d")


def test_patch_one_field_keeps_the_other(api, user):
    file = FileRecordFactory(created_by=user, name="keep", description="old")
    response = api.patch(f"/v1/files/{file.pk}", {"description": ""})
    assert response.status_code == 200, response.content
    file.refresh_from_db()
    assert (file.name, file.description) == ("keep", "")


@pytest.mark.parametrize(
    "payload",
    [
        {"file_name": "evil.exe"},
        {"file_content_type": "text/html"},
        {"name": "fine", "file_name": "evil.exe"},
        {"file_size": 1},
        {"upload_status": "completed"},
    ],
)
def test_patch_refuses_other_fields_and_changes_nothing(api, user, payload):
    file = FileRecordFactory(created_by=user, name="orig")
    before = snapshot(str(file.pk))

    body = assert_error(api.patch(f"/v1/files/{file.pk}", payload), 422, "invalid")

    assert body["extra"]["errors"]
    assert snapshot(str(file.pk)) == before


def test_nul_characters_in_free_text_are_dropped_not_a_server_error(api, user):
    # PostgreSQL cannot store NUL in text; a client sending one must not cause a 500.
    body = initiate(api, 10, name="a\x00b", description="line 1\nline\x00 2")
    assert (body["name"], body["description"]) == ("ab", "line 1\nline 2")

    response = api.patch(f"/v1/files/{body['id']}", {"name": "c\x00", "description": "\x00d"})

    assert response.status_code == 200, response.content
    saved = record(body["id"])
    assert (saved.name, saved.description) == ("c", "d")


@pytest.mark.parametrize(
    "query", ["parent_object_id=%00", "parent_content_type=testapp.po%00st", "status=%00"]
)
def test_list_with_nul_in_a_filter_is_400(api, user, query):
    FileRecordFactory(created_by=user)
    assert_error(api.get(f"/v1/files?{query}"), 400, "invalid")
    assert api.get("/v1/files").json()["count"] == 1


def test_patch_refuses_an_empty_name(api, user):
    file = FileRecordFactory(created_by=user, name="orig")
    body = assert_error(api.patch(f"/v1/files/{file.pk}", {"name": "   "}), 400, "invalid")
    assert body["extra"]["field"] == "name"
    file.refresh_from_db()
    assert file.name == "orig"


# --- Delete --------------------------------------------------------------------------------


def test_delete_hides_a_completed_file_and_keeps_its_bytes(api, staff_api, content):
    done = api.upload(content, part_size=PART)
    key = record(done["id"]).file.name

    response = api.delete(f"/v1/files/{done['id']}")

    assert response.status_code == 204, response.content
    path = f"/v1/files/{done['id']}"
    for response in [
        api.get(path),
        api.get(f"{path}/download"),
        api.patch(path, {"name": "back"}),
        api.post(f"{path}/set-parent", {"parent_content_type": None, "parent_object_id": None}),
        api.delete(path),
    ]:
        assert_error(response, 404, "not_found")
    assert api.get("/v1/files?status=all").json()["count"] == 0
    assert staff_api.get("/v1/files?status=all").json()["count"] == 0
    assert_error(staff_api.get(f"/v1/files/{done['id']}"), 404, "not_found")
    # Kept "for safety", as the spec says, until the retention period ends.
    saved = record(done["id"])
    assert saved.deleted_at is not None
    assert saved.upload_status == FileRecord.Status.COMPLETED
    assert default_storage.exists(key)


def test_delete_in_flight_upload_aborts_it_in_the_store(api, content):
    init, parts = start(api, content)
    assert part_dir(init["upload_id"]).is_dir()

    response = api.delete(f"/v1/files/{init['id']}")

    assert response.status_code == 204, response.content
    saved = record(init["id"])
    assert (saved.upload_status, saved.upload_id) == (FileRecord.Status.ABORTED, "")
    assert saved.deleted_at is not None
    assert not part_dir(init["upload_id"]).exists()
    assert_error(api.put_part(init["presigned_urls"][0]["url"], content[:PART]), 403, "forbidden")
    # Its owner learns why it cannot go on, rather than a bare 404.
    body = assert_error(complete(api, init["id"], parts), 409, "invalid_state")
    assert "deleted" in body["detail"]
    assert_error(api.delete(f"{UPLOADS}/{init['id']}"), 409, "invalid_state")
    assert_error(api.get(f"{UPLOADS}/{init['id']}/parts"), 404, "not_found")


def test_delete_keeps_the_quota_until_the_purge(api, staff_api, settings, content):
    settings.FILE_UPLOAD_QUOTA_PER_USER = len(content) + 100
    done = api.upload(content, part_size=PART)
    key = record(done["id"]).file.name
    assert api.delete(f"/v1/files/{done['id']}").status_code == 204

    # Its bytes are still stored, so they still count: delete-then-upload is no way around it.
    body = assert_error(
        api.post(UPLOADS, {"file_name": "b", "file_size": 200}), 413, "quota_exceeded"
    )
    assert body["extra"]["used"] == len(content)

    cleanup.purge_deleted_files()
    assert record(done["id"]).deleted_at is not None  # still within its retention period
    result = cleanup.purge_deleted_files(now=timezone.now() + timedelta(days=7, seconds=1))

    assert (result.examined, result.deleted, result.errors) == (1, 1, 0)
    assert not FileRecord.objects.filter(pk=done["id"]).exists()
    assert not default_storage.exists(key)
    assert initiate(api, 200)["upload_status"] == "uploading"


def test_delete_twice_is_404(api, user):
    file = FileRecordFactory(created_by=user)
    assert api.delete(f"/v1/files/{file.pk}").status_code == 204
    assert_error(api.delete(f"/v1/files/{file.pk}"), 404, "not_found")


# --- Download ------------------------------------------------------------------------------


def test_download_redirects_to_the_exact_bytes(api, content):
    done = api.upload(content, part_size=PART, file_name="data.bin")

    response = api.get(f"/v1/files/{done['id']}/download")

    assert response.status_code == 302, response.content
    followed = api.get(response["Location"])
    assert followed.status_code == 200
    assert "attachment" in followed["Content-Disposition"]
    assert "data.bin" in followed["Content-Disposition"]
    assert b"".join(followed.streaming_content) == content
    followed.close()


@pytest.mark.parametrize("state", ["uploading", "aborted", "failed"])
def test_download_of_a_non_completed_file_is_a_conflict(api, content, state):
    init, parts = start(api, content)
    if state == "aborted":
        assert api.delete(f"{UPLOADS}/{init['id']}").status_code == 204
    elif state == "failed":
        fail(api, init, parts)

    body = assert_error(api.get(f"/v1/files/{init['id']}/download"), 409, "invalid_state")
    assert body["extra"]["upload_status"] == state


def test_download_link_with_a_forged_token_is_refused(api):
    response = api.get("/local/download/forged-token")
    assert_error(response, 403, "forbidden")


# --- Auth tokens ---------------------------------------------------------------------------


def test_token_pair_with_good_credentials_gives_working_tokens(anon_api, user):
    response = anon_api.post("/v1/auth/token/pair", {"username": "alice", "password": "alice-pass"})

    assert response.status_code == 200, response.content
    tokens = response.json()
    assert tokens["access"] and tokens["refresh"]
    listed = anon_api.get("/v1/files", headers={"Authorization": f"Bearer {tokens['access']}"})
    assert listed.status_code == 200, listed.content


@pytest.mark.parametrize(
    "credentials",
    [
        {"username": "alice", "password": "wrong"},
        {"username": "nobody", "password": "alice-pass"},
    ],
)
def test_token_pair_with_bad_credentials_is_401(anon_api, user, credentials):
    response = anon_api.post("/v1/auth/token/pair", credentials)
    body = assert_error(response, 401, "authentication_failed")
    assert "access" not in body


def test_token_pair_for_an_inactive_user_is_401(anon_api, user):
    user.is_active = False
    user.save()
    response = anon_api.post("/v1/auth/token/pair", {"username": "alice", "password": "alice-pass"})
    assert response.status_code == 401
    assert set(response.json()) <= {"detail", "code", "extra"}


def test_token_pair_with_nul_in_the_username_is_refused(anon_api, user):
    response = anon_api.post("/v1/auth/token/pair", {"username": "alice\x00", "password": "x"})
    # 401 where the database can compare NUL (SQLite), 400 where it refuses it (PostgreSQL).
    assert response.status_code in (400, 401), response.content
    assert set(response.json()) <= {"detail", "code", "extra"}
    assert "access" not in response.json()


def test_token_pair_without_fields_is_an_input_error(anon_api, user):
    response = anon_api.post("/v1/auth/token/pair", {})
    body = assert_error(response, 400, "invalid")
    assert "access" not in body


def test_token_refresh_gives_a_working_access_token(anon_api, user):
    pair = anon_api.post(
        "/v1/auth/token/pair", {"username": "alice", "password": "alice-pass"}
    ).json()

    response = anon_api.post("/v1/auth/token/refresh", {"refresh": pair["refresh"]})

    assert response.status_code == 200, response.content
    access = response.json()["access"]
    listed = anon_api.get("/v1/files", headers={"Authorization": f"Bearer {access}"})
    assert listed.status_code == 200


def test_token_refresh_with_a_bad_token_is_401(anon_api, user):
    assert_error(
        anon_api.post("/v1/auth/token/refresh", {"refresh": "garbage"}), 401, "token_not_valid"
    )


def test_access_token_is_not_a_refresh_token(anon_api, user):
    pair = anon_api.post(
        "/v1/auth/token/pair", {"username": "alice", "password": "alice-pass"}
    ).json()
    response = anon_api.post("/v1/auth/token/refresh", {"refresh": pair["access"]})
    assert_error(response, 401, "token_not_valid")


def expired_access_token(user: Any) -> str:
    token = AccessToken.for_user(user)
    token.set_exp(lifetime=-timedelta(seconds=1))
    return str(token)


@pytest.mark.parametrize("token", ["garbage", "", "expired", "refresh"])
def test_an_invalid_bearer_token_is_401_token_not_valid(anon_api, user, token):
    # A distinct code tells a client to refresh its token rather than to sign in again.
    value = {
        "expired": lambda: expired_access_token(user),
        "refresh": lambda: str(RefreshToken.for_user(user)),
    }.get(token, lambda: token)()

    response = anon_api.get("/v1/files", headers={"Authorization": f"Bearer {value}"})

    assert_error(response, 401, "token_not_valid")


def test_another_auth_scheme_is_401_not_authenticated(anon_api, user):
    basic = {"Authorization": "Basic YWxpY2U6YWxpY2UtcGFzcw=="}
    response = anon_api.get("/v1/files", headers=basic)
    assert_error(response, 401, "not_authenticated")


def test_session_auth_works_for_reads(user):
    client = ApiClient()
    client.client.force_login(user)
    assert client.get("/v1/files").status_code == 200


def test_session_auth_writes_need_the_csrf_header(user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    payload = json.dumps({"file_name": "a.bin", "file_size": 1})

    refused = client.post(UPLOADS, data=payload, content_type="application/json")

    assert_error(refused, 403, "forbidden")
    assert not FileRecord.objects.exists()
    client.get("/accounts/login/")
    token = client.cookies["csrftoken"].value
    accepted = client.post(
        UPLOADS, data=payload, content_type="application/json", headers={"X-CSRFToken": token}
    )
    assert accepted.status_code == 201, accepted.content


# --- Access rules across every endpoint ----------------------------------------------------


FILE_ENDPOINTS = [
    ("get", "/v1/files/{id}", None),
    ("patch", "/v1/files/{id}", {"name": "renamed", "description": "changed"}),
    ("delete", "/v1/files/{id}", None),
    ("post", "/v1/files/{id}/set-parent", {"parent_content_type": None, "parent_object_id": None}),
    ("get", "/v1/files/{id}/download", None),
    ("post", "/v1/files/uploads/{id}/complete", "PARTS"),
    ("delete", "/v1/files/uploads/{id}", None),
    ("get", "/v1/files/uploads/{id}/parts", None),
    ("post", "/v1/files/uploads/{id}/presign", {"part_numbers": [1]}),
]
FILE_ENDPOINT_IDS = [
    "get", "patch", "delete", "set-parent", "download", "complete", "abort", "parts", "presign",
]  # fmt: skip


def call(client: ApiClient, method: str, path: str, data: Any, target: dict[str, Any]) -> Any:
    if data == "PARTS":
        data = {"parts": target["parts"]}
    path = path.format(id=target["id"])
    if method in ("post", "patch"):
        return getattr(client, method)(path, data)
    return getattr(client, method)(path)


@pytest.fixture(params=["uploading", "completed"])
def alices_file(request, api, db, content) -> dict[str, Any]:
    """Alice's file with a parent, either with every part stored or completed."""
    post = Post.objects.create(title="p")
    init, parts = start(api, content, parent_content_type="testapp.post", parent_object_id=post.pk)
    if request.param == "completed":
        assert complete(api, init["id"], parts).status_code == 200
    return {**init, "parts": parts, "state": request.param}


def assert_untouched(api: ApiClient, target: dict[str, Any], before: dict[str, Any]) -> None:
    assert snapshot(target["id"]) == before
    if target["state"] == "uploading":
        assert part_dir(target["upload_id"]).is_dir()
        # Still the owner's to finish.
        assert complete(api, target["id"], target["parts"]).status_code == 200
    else:
        assert default_storage.exists(before["file"])


@pytest.mark.parametrize(("method", "path", "data"), FILE_ENDPOINTS, ids=FILE_ENDPOINT_IDS)
def test_another_users_file_is_404_and_untouched(api, other_api, alices_file, method, path, data):
    before = snapshot(alices_file["id"])

    response = call(other_api, method, path, data, alices_file)

    body = assert_error(response, 404, "not_found")
    assert alices_file["id"] not in body["detail"]
    assert_untouched(api, alices_file, before)


@pytest.mark.parametrize(("method", "path", "data"), FILE_ENDPOINTS, ids=FILE_ENDPOINT_IDS)
def test_anonymous_is_401_on_file_endpoints(api, anon_api, alices_file, method, path, data):
    before = snapshot(alices_file["id"])

    response = call(anon_api, method, path, data, alices_file)

    assert_error(response, 401, "not_authenticated")
    assert_untouched(api, alices_file, before)


@pytest.mark.parametrize(
    ("method", "path", "data"),
    [("get", "/v1/files", None), ("post", UPLOADS, {"file_name": "a.bin", "file_size": 10})],
    ids=["list", "initiate"],
)
def test_anonymous_is_401_on_collection_endpoints(anon_api, db, method, path, data):
    response = anon_api.post(path, data) if method == "post" else anon_api.get(path)
    assert_error(response, 401, "not_authenticated")
    assert not FileRecord.objects.exists()


@pytest.mark.parametrize(("method", "path", "data"), FILE_ENDPOINTS, ids=FILE_ENDPOINT_IDS)
@pytest.mark.parametrize("file_id", ["not-a-uuid", "00000000-0000-0000-0000-000000000000"])
def test_unknown_file_is_404_on_every_endpoint(api, method, path, data, file_id):
    target = {"id": file_id, "parts": [{"part_number": 1, "etag": "a" * 32}]}
    assert_error(call(api, method, path, data, target), 404, "not_found")


def test_staff_can_get_anothers_file(staff_api, user):
    file = FileRecordFactory(created_by=user)
    response = staff_api.get(f"/v1/files/{file.pk}")
    assert response.status_code == 200, response.content
    assert response.json()["id"] == str(file.pk)
    assert response.json()["created_by"] == user.pk


def test_staff_can_delete_anothers_file(staff_api, user):
    file = FileRecordFactory(created_by=user)
    assert staff_api.delete(f"/v1/files/{file.pk}").status_code == 204
    assert not FileRecord.objects.visible().filter(pk=file.pk).exists()


def test_staff_can_delete_anothers_in_flight_upload(api, staff_api, content):
    init, _ = start(api, content)
    assert staff_api.delete(f"/v1/files/{init['id']}").status_code == 204
    assert not FileRecord.objects.visible().filter(pk=init["id"]).exists()
    assert not part_dir(init["upload_id"]).exists()


def test_staff_can_abort_anothers_upload(api, staff_api, content):
    init, _ = start(api, content)

    response = staff_api.delete(f"{UPLOADS}/{init['id']}")

    assert response.status_code == 204, response.content
    assert record(init["id"]).upload_status == FileRecord.Status.ABORTED
    assert not part_dir(init["upload_id"]).exists()


def test_staff_can_download_anothers_file(api, staff_api, content):
    done = api.upload(content, part_size=PART)
    assert download_bytes(staff_api, done["id"]) == content
