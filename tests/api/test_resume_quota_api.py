def test_resume_flow(api, settings):
    content = bytes(range(256)) * 40  # 10240 bytes
    init = api.post("/v1/files/uploads", {"file_name": "r.bin", "file_size": len(content), "part_size": 2048, "presign": "none"})
    assert init.status_code == 201, init.content
    body = init.json(); assert body["presigned_urls"] == [] and body["total_parts"] == 5
    fid = body["id"]
    r = api.post(f"/v1/files/uploads/{fid}/presign", {"part_numbers": [1, 2]})
    assert r.status_code == 200, r.content
    for t in r.json()["presigned_urls"]:
        n = t["part_number"]; assert api.put_part(t["url"], content[(n-1)*2048:n*2048]).status_code == 200
    parts = api.get(f"/v1/files/uploads/{fid}/parts").json()
    assert [p["part_number"] for p in parts["parts"]] == [1, 2] and parts["uploaded_bytes"] == 4096
    r = api.post(f"/v1/files/uploads/{fid}/presign", {"part_numbers": [3, 4, 5]})
    for t in r.json()["presigned_urls"]:
        n = t["part_number"]; assert api.put_part(t["url"], content[(n-1)*2048:n*2048]).status_code == 200
    parts = api.get(f"/v1/files/uploads/{fid}/parts").json()["parts"]
    done = api.post(f"/v1/files/uploads/{fid}/complete", {"parts": [{"part_number": p["part_number"], "etag": p["etag"]} for p in parts]})
    assert done.status_code == 200, done.content
    assert api.get(f"/v1/files/uploads/{fid}/parts").status_code == 409
    assert api.post(f"/v1/files/uploads/{fid}/presign", {"part_numbers": [1]}).status_code == 409

def test_quota_and_types(api, settings):
    settings.FILE_UPLOAD_QUOTA_PER_USER = 10000
    assert api.post("/v1/files/uploads", {"file_name": "a.bin", "file_size": 6000}).status_code == 201
    r = api.post("/v1/files/uploads", {"file_name": "b.bin", "file_size": 6000})
    assert r.status_code == 413 and r.json()["code"] == "quota_exceeded", r.content
    settings.FILE_UPLOAD_QUOTA_PER_USER = None
    settings.ALLOWED_FILE_TYPES = ["image/*"]
    r = api.post("/v1/files/uploads", {"file_name": "b.exe", "file_size": 10})
    assert r.status_code == 415, r.content
    exe = b"MZ" + b"\x90" * 2000
    init = api.post("/v1/files/uploads", {"file_name": "x.png", "file_size": len(exe), "file_content_type": "image/png"}).json()
    t = init["presigned_urls"][0]; etag = api.put_part(t["url"], exe)["ETag"]
    r = api.post(f"/v1/files/uploads/{init['id']}/complete", {"parts": [{"part_number": 1, "etag": etag}]})
    assert r.status_code == 400 and "not accepted" in r.json()["detail"], r.content
    assert api.get(f"/v1/files/{init['id']}").json()["upload_status"] == "failed"
