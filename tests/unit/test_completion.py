"""Completion meeting cleanup or a second completion at each step, on the local handler:
deterministic interleavings, each run at a chosen point inside a completion.

The threaded races on PostgreSQL are in tests/postgres/; the interleavings both handlers share
are in tests/integration/test_cleanup_stores.py.
"""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

from tests.helpers import assert_error
from uploads.models import FileRecord
from uploads.services import cleanup, completion
from uploads.storage.local import LocalStorageHandler
from uploads.storage.local import handler as local_handler

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("local_disk")]
Status = FileRecord.Status


def parts_dir() -> Path:
    return Path(settings.UPLOADS_LOCAL_PARTS_DIR)


# --- completion meeting cleanup at each step (deterministic interleavings) -------------------
# The threaded race on PostgreSQL is tests/postgres/test_cleanup_race.py; here cleanup runs at
# a chosen point inside a completion, which no lock covers (no lock is held across store calls).
# The interleavings both handlers share are in tests/integration/test_cleanup_stores.py; these
# reach into the local handler's combine, which takes long for a large file.


def completable(api: Any) -> tuple[dict[str, Any], bytes, list[dict[str, Any]]]:
    """A 3-part upload with every part stored, past its expiry, ready to complete."""
    content = secrets.token_bytes(2 * 1024 + 500)
    init = api.post(
        "/v1/files/uploads",
        {"file_name": "late.bin", "file_size": len(content), "part_size": 1024},
    )
    assert init.status_code == 201, init.content
    body: dict[str, Any] = init.json()
    parts = api.put_parts(body, content)
    FileRecord.objects.filter(pk=body["id"]).update(
        upload_expires_at=timezone.now() - timedelta(seconds=1)
    )
    return body, content, parts


def assert_aborted_with_nothing_stored(body: dict[str, Any]) -> None:
    current = FileRecord.objects.get(pk=body["id"])
    assert (current.upload_status, current.upload_id) == (Status.ABORTED, "")
    assert not (Path(settings.MEDIA_ROOT) / current.storage_key).exists(), "object left behind"
    assert not (parts_dir() / body["upload_id"]).exists(), "parts left behind"


def complete(api: Any, body: dict[str, Any], parts: list[dict[str, Any]]) -> Any:
    return api.post(f"/v1/files/uploads/{body['id']}/complete", {"parts": parts})


def test_cleanup_while_the_store_is_combining_parts(api, monkeypatch):
    """Cleanup may remove the parts while the store makes the object whole."""
    body, _, parts = completable(api)
    opened: list[str] = []
    real = LocalStorageHandler._place

    def placing(self: LocalStorageHandler, *args: Any) -> int:
        opened.extend(["object", "parts"])
        assert cleanup.cleanup_expired_uploads().aborted == 1
        return real(self, *args)

    monkeypatch.setattr(LocalStorageHandler, "_place", placing)
    response = complete(api, body, parts)
    assert len(opened) >= 2
    assert response.status_code in (409, 503), response.content
    assert_aborted_with_nothing_stored(body)


def test_cleanup_between_listing_and_combining_parts(api, monkeypatch):
    body, _, parts = completable(api)
    real = local_handler._scan

    calls: list[Path] = []

    def scan(directory: Path) -> Any:
        found = real(directory)
        calls.append(directory)
        if len(calls) == 2:  # the first listing verifies the parts; the second feeds complete
            assert cleanup.cleanup_expired_uploads().aborted == 1
        return found

    monkeypatch.setattr(local_handler, "_scan", scan)
    response = complete(api, body, parts)
    assert response.status_code in (409, 503), response.content
    assert_aborted_with_nothing_stored(body)


@pytest.mark.parametrize("ending", ["delete", "abort"])
def test_parts_vanishing_under_an_abort_are_not_a_mismatch(api, monkeypatch, ending):
    """The listing meets an abort or delete halfway through removing the parts.

    Deterministic form of what tests/postgres/test_delete_race.py hits now and then: the row
    says the upload ended, so the answer is 409, not parts_mismatch.
    """
    body, _, parts = completable(api)
    real = local_handler._scan

    def scan(directory: Path) -> Any:
        found = real(directory)
        path = f"/v1/files/{'' if ending == 'delete' else 'uploads/'}{body['id']}"
        assert api.delete(path).status_code == 204
        return dict(list(found.items())[:1])  # the rest were removed while listing

    monkeypatch.setattr(local_handler, "_scan", scan)
    response = complete(api, body, parts)
    assert response.status_code == 409, response.content
    assert ("deleted" if ending == "delete" else "aborted") in response.json()["detail"]
    current = FileRecord.objects.get(pk=body["id"])
    assert current.upload_status == Status.ABORTED


def test_parts_removed_between_listing_and_reading_their_sizes(api, monkeypatch):
    """An abort removes the part records after the directory was listed, before each is read."""
    body, _, parts = completable(api)
    real = os.listdir

    def listdir(path: Any = ".") -> Any:
        # rmtree lists directories by file descriptor: only the part listing triggers the abort.
        if not isinstance(path, str | os.PathLike) or Path(path).name != body["upload_id"]:
            return real(path)
        entries = real(path)
        assert api.delete(f"/v1/files/uploads/{body['id']}").status_code == 204
        return entries

    monkeypatch.setattr("uploads.storage.local.handler.os.listdir", listdir)
    response = complete(api, body, parts)
    assert response.status_code == 409, response.content
    assert "aborted" in response.json()["detail"]
    assert_aborted_with_nothing_stored(body)


# --- a second completion meeting the first inside the local combine --------------------------
# Deterministic forms of what tests/postgres/test_complete_race.py hits now and then with
# threads: the second complete runs at a chosen point of the first one's store call.


def test_a_second_complete_while_the_first_removes_the_parts(api, user, monkeypatch):

    body, content, parts = completable(api)
    second: list[Any] = []
    real = LocalStorageHandler._discard

    def discard(directory: Path) -> None:
        files = sorted(directory.iterdir()) if directory.is_dir() else []
        if files and not second:
            files[0].unlink()  # the first complete's cleanup of its parts is under way
            second.append(complete(api, body, parts))
        real(directory)

    monkeypatch.setattr(LocalStorageHandler, "_discard", staticmethod(discard))
    first = complete(api, body, parts)

    current = FileRecord.objects.get(pk=body["id"])
    assert sorted([first.status_code, second[0].status_code]) in ([200, 200], [200, 409]), (
        first.content,
        second[0].content,
    )
    assert current.upload_status == Status.COMPLETED
    assert (Path(settings.MEDIA_ROOT) / current.storage_key).read_bytes() == content


def test_a_second_complete_while_the_first_writes_the_object(api, monkeypatch):
    body, content, parts = completable(api)
    second: list[Any] = []
    real = LocalStorageHandler._place

    def placing(self: LocalStorageHandler, *args: Any) -> int:
        if not second:
            second.append(None)  # the first complete is making the object whole
            second[0] = complete(api, body, parts)
        return real(self, *args)

    monkeypatch.setattr(LocalStorageHandler, "_place", placing)
    first = complete(api, body, parts)

    assert first.status_code == 200, first.content
    assert second[0].status_code in (200, 409), second[0].content
    current = FileRecord.objects.get(pk=body["id"])
    assert current.upload_status == Status.COMPLETED
    assert (Path(settings.MEDIA_ROOT) / current.storage_key).read_bytes() == content


@pytest.mark.django_db(transaction=True)
def test_a_second_complete_must_not_delete_the_first_ones_object(user, monkeypatch):
    """Two threads, stepped by events (no timing): A stores the object; B tries to complete
    too, and if it reaches the store, starts writing its own copy under another name; A removes
    the parts and marks the file completed; B's next part read fails. B must neither delete
    A's object nor answer anything but 200 or 409 (refusing B before the store is fine)."""
    import threading

    from django.db import connections

    from tests.helpers import ApiClient

    body, content, parts = completable(ApiClient(user))
    a_saved, a_done = threading.Event(), threading.Event()
    # Set when B starts writing in the store, or when B is done (refused before the store).
    b_writing, b_done, b_moved = threading.Event(), threading.Event(), threading.Event()
    responses: dict[str, Any] = {}

    real_discard = LocalStorageHandler._discard

    def discard(directory: Path) -> None:
        if threading.current_thread().name == "A" and not a_saved.is_set():
            a_saved.set()
            assert b_moved.wait(10)
        real_discard(directory)

    real_place = LocalStorageHandler._place

    def placing(self: LocalStorageHandler, *args: Any) -> int:
        if threading.current_thread().name == "B" and not b_writing.is_set():
            b_writing.set()
            b_moved.set()
            assert a_done.wait(10)
        return real_place(self, *args)

    def run(name: str) -> None:
        try:
            if name == "B":
                assert a_saved.wait(10)
            responses[name] = complete(ApiClient(user), body, parts)
        except BaseException as exc:
            responses[name] = exc
        finally:
            for event in (a_done,) if name == "A" else (b_done, b_moved):
                event.set()
            connections.close_all()

    monkeypatch.setattr(LocalStorageHandler, "_discard", staticmethod(discard))
    monkeypatch.setattr(LocalStorageHandler, "_place", placing)
    threads = [threading.Thread(target=run, args=(name,), name=name) for name in "AB"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert a_saved.is_set() and b_done.is_set(), responses

    assert responses["A"].status_code == 200, responses["A"].content
    assert responses["B"].status_code in (200, 409), responses["B"].content
    current = FileRecord.objects.get(pk=body["id"])
    assert current.upload_status == Status.COMPLETED
    stored = Path(settings.MEDIA_ROOT) / current.storage_key
    assert stored.is_file(), "completed, but the object is gone"
    assert stored.read_bytes() == content


# --- the claim: a conditional write of the row as read ----------------------------------------
# Complete reads the row, checks it and claims it in one conditional write, with no transaction
# between: whatever another request does to the row in between, the claim does not overwrite.


def _between_read_and_claim(monkeypatch: Any, change: Any) -> list[int]:
    """Run `change` once, after complete has checked the row and before it claims it."""
    real = completion._check_part_list
    runs: list[int] = []

    def checked(record: FileRecord, parts: Any) -> Any:
        result = real(record, parts)
        if not runs:
            change(record)
        runs.append(1)
        return result

    monkeypatch.setattr(completion, "_check_part_list", checked)
    return runs


def test_a_claim_taken_by_another_request_in_between_answers_409(api, monkeypatch):
    body, _, parts = completable(api)
    rows = FileRecord.objects.filter(pk=body["id"])
    _between_read_and_claim(monkeypatch, lambda _: rows.update(completing_since=timezone.now()))

    response = complete(api, body, parts)

    assert_error(response, 409, "invalid_state")
    assert "being completed by another request" in response.json()["detail"]
    assert rows.get().upload_status == Status.UPLOADING
    assert not (Path(settings.MEDIA_ROOT) / rows.get().storage_key).exists()


@pytest.mark.parametrize("ending", ["abort", "delete"])
def test_an_upload_ended_in_between_is_not_claimed(api, monkeypatch, ending):
    body, _, parts = completable(api)
    rows = FileRecord.objects.filter(pk=body["id"])

    def end(record: FileRecord) -> None:
        if ending == "abort":
            rows.update(upload_status=Status.ABORTED)
        else:
            rows.update(deleted_at=timezone.now())

    runs = _between_read_and_claim(monkeypatch, end)

    response = complete(api, body, parts)

    assert_error(response, 409, "invalid_state")
    assert len(runs) == 1, "read again, the ended upload is refused before its parts are checked"
    assert rows.get().completing_since is None
    assert not (Path(settings.MEDIA_ROOT) / rows.get().storage_key).exists()


def test_a_lapsed_claim_renewed_in_between_is_not_taken_over(api, monkeypatch):
    """Two requests find the same lapsed claim: only the first to write it completes."""
    body, _, parts = completable(api)
    rows = FileRecord.objects.filter(pk=body["id"])
    rows.update(completing_since=timezone.now() - timedelta(hours=1))
    _between_read_and_claim(monkeypatch, lambda _: rows.update(completing_since=timezone.now()))

    response = complete(api, body, parts)

    assert_error(response, 409, "invalid_state")
    assert rows.get().upload_status == Status.UPLOADING


def test_a_claim_released_in_between_is_read_again_and_taken(api, monkeypatch):
    body, content, parts = completable(api)
    rows = FileRecord.objects.filter(pk=body["id"])
    rows.update(completing_since=timezone.now() - timedelta(hours=1))
    runs = _between_read_and_claim(monkeypatch, lambda _: rows.update(completing_since=None))

    response = complete(api, body, parts)

    assert response.status_code == 200, response.content
    assert len(runs) == 2, "the claim lost to the change, and the row was read again"
    record = rows.get()
    assert (record.upload_status, record.completing_since) == (Status.COMPLETED, None)
    assert (Path(settings.MEDIA_ROOT) / record.storage_key).read_bytes() == content
