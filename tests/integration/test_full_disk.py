"""A full disk under the local store: a part PUT answers 507 `insufficient_storage`, keeps
nothing partial and leaves the upload resumable; a complete that runs out of room leaves no
truncated object, says why, and succeeds once there is room again.

The disk is real: a 512 KiB tmpfs mounted for the test (and unmounted after), filled with a
filler file to the free space each step needs, so ENOSPC comes from the kernel at the write
call, not from a stub. Mounting needs root (CI runs as root); elsewhere the test is skipped with
that reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ApiClient, initiate, local_part_files, pin_local_disk, unavailable
from uploads.models import FileRecord

pytestmark = pytest.mark.django_db

KIB = 1024
PART = 32 * KIB


@pytest.fixture
def small_disk(tmp_path: Path, settings: Any) -> Iterator[Path]:
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k,mode=0700", "tmpfs", str(disk)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if mounted.returncode != 0:
        unavailable(f"cannot mount a small tmpfs (needs root): {mounted.stderr.strip()}")
    try:
        pin_local_disk(settings)
        settings.MEDIA_ROOT = disk / "media"
        settings.UPLOADS_LOCAL_PARTS_DIR = disk / "media" / ".parts"
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False, capture_output=True)


def leave_free(disk: Path, free: int) -> None:
    """Fill the disk until about `free` bytes are left (the filler is replaced each time)."""
    filler = disk / "filler"
    filler.unlink(missing_ok=True)
    size = shutil.disk_usage(disk).free - free
    if size > 0:
        with open(filler, "wb") as out:
            out.write(b"\0" * size)
            out.flush()
            os.fsync(out.fileno())


def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())


def assert_insufficient_storage(response: Any) -> dict[str, Any]:
    assert response.status_code == 507, response.content
    body = response.json()
    assert body["code"] == "insufficient_storage", body
    assert set(body) <= {"detail", "code", "extra"} and "room" in body["detail"], body
    return body  # type: ignore[no-any-return]


def put_part(api: ApiClient, init: dict[str, Any], n: int, content: bytes) -> dict[str, Any]:
    put = api.put_part(init["presigned_urls"][n - 1]["url"], content[(n - 1) * PART : n * PART])
    assert put.status_code == 200, put.content
    return {"part_number": n, "etag": put["ETag"]}


def test_a_full_disk_on_a_part_put_keeps_nothing_and_the_upload_resumes(
    small_disk: Path, user: Any
) -> None:
    api = ApiClient(user)
    content = os.urandom(3 * PART)
    init = initiate(api, len(content), part_size=PART)
    urls = {t["part_number"]: t["url"] for t in init["presigned_urls"]}
    parts_dir = small_disk / "media" / ".parts" / init["upload_id"]

    leave_free(small_disk, PART + PART // 2)
    first = api.put_part(urls[1], content[:PART])
    assert first.status_code == 200, first.content
    assert_insufficient_storage(api.put_part(urls[2], content[PART : 2 * PART]))
    # Nothing partial: only part 1 is there, no temp file of part 2.
    assert [p.name.split(".")[0] for p in local_part_files(parts_dir)] == ["00001"]
    assert FileRecord.objects.get(pk=init["id"]).upload_status == FileRecord.Status.UPLOADING
    listed = api.get(f"/v1/files/uploads/{init['id']}/parts").json()
    assert [p["part_number"] for p in listed["parts"]] == [1]

    # Room again: the client resumes where it stopped.
    (small_disk / "filler").unlink()
    parts = [{"part_number": 1, "etag": first["ETag"]}]
    parts += [put_part(api, init, n, content) for n in (2, 3)]
    done = api.post(f"/v1/files/uploads/{init['id']}/complete", {"parts": parts})
    assert done.status_code == 200, done.content


def test_a_full_disk_at_complete_needs_no_room(small_disk: Path, user: Any) -> None:
    """Each byte was written once, at its part's PUT: completing copies nothing."""
    api = ApiClient(user)
    content = os.urandom(3 * PART)
    init = initiate(api, len(content), part_size=PART)
    parts = [put_part(api, init, n, content) for n in (1, 2, 3)]
    media = small_disk / "media"

    # Far less room than the object: completing it must not need any.
    leave_free(small_disk, PART // 2)
    done = api.post(f"/v1/files/uploads/{init['id']}/complete", {"parts": parts})
    assert done.status_code == 200, done.content
    assert (media / FileRecord.objects.get(pk=init["id"]).storage_key).read_bytes() == content
