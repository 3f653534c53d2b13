"""Resume through the API (parts listing + re-signing), quotas and type checks, local store."""

from __future__ import annotations

CONTENT = bytes(range(256)) * 40  # 10,240 bytes: five parts of 2 KiB
PART = 2048


def put_parts(api, targets):
    for target in targets:
        n = target["part_number"]
        response = api.put_part(target["url"], CONTENT[(n - 1) * PART : n * PART])
        assert response.status_code == 200, response.content


def test_resume_lists_stored_parts_and_signs_only_the_rest(api):
    init = api.post(
        "/v1/files/uploads",
        {"file_name": "r.bin", "file_size": len(CONTENT), "part_size": PART, "presign": "none"},
    )
    assert init.status_code == 201, init.content
    body = init.json()
    assert body["presigned_urls"] == []
    assert body["total_parts"] == 5
    uploads = f"/v1/files/uploads/{body['id']}"

    first = api.post(f"{uploads}/presign", {"part_numbers": [1, 2]})
    assert first.status_code == 200, first.content
    put_parts(api, first.json()["presigned_urls"])
    held = api.get(f"{uploads}/parts").json()
    assert [p["part_number"] for p in held["parts"]] == [1, 2]
    assert held["uploaded_bytes"] == 2 * PART

    rest = api.post(f"{uploads}/presign", {"part_numbers": [3, 4, 5]})
    put_parts(api, rest.json()["presigned_urls"])
    parts = api.get(f"{uploads}/parts").json()["parts"]
    done = api.post(
        f"{uploads}/complete",
        {"parts": [{"part_number": p["part_number"], "etag": p["etag"]} for p in parts]},
    )
    assert done.status_code == 200, done.content
    # A finished upload has nothing left to list or sign.
    assert api.get(f"{uploads}/parts").status_code == 409
    assert api.post(f"{uploads}/presign", {"part_numbers": [1]}).status_code == 409


def test_quota_counts_unfinished_uploads(api, settings):
    settings.FILE_UPLOAD_QUOTA_PER_USER = 10_000
    first = api.post("/v1/files/uploads", {"file_name": "a.bin", "file_size": 6000})
    assert first.status_code == 201
    second = api.post("/v1/files/uploads", {"file_name": "b.bin", "file_size": 6000})
    assert second.status_code == 413, second.content
    assert second.json()["code"] == "quota_exceeded"


def test_types_are_checked_at_initiate_and_against_the_stored_bytes(api, settings):
    settings.ALLOWED_FILE_TYPES = ["image/*", "application/pdf"]
    refused = api.post("/v1/files/uploads", {"file_name": "b.exe", "file_size": 10})
    assert refused.status_code == 415, refused.content
    # The refusal names what is accepted.
    assert refused.json()["detail"].endswith("Accepted types: image/*, application/pdf.")

    exe = b"MZ" + b"\x90" * 2000  # a Windows executable's first bytes
    init = api.post(
        "/v1/files/uploads",
        {"file_name": "x.png", "file_size": len(exe), "file_content_type": "image/png"},
    ).json()
    etag = api.put_part(init["presigned_urls"][0]["url"], exe)["ETag"]
    done = api.post(
        f"/v1/files/uploads/{init['id']}/complete", {"parts": [{"part_number": 1, "etag": etag}]}
    )
    assert done.status_code == 400, done.content
    assert "not accepted" in done.json()["detail"]
    assert api.get(f"/v1/files/{init['id']}").json()["upload_status"] == "failed"
