"""The staff dashboard: who may see it, what its totals and filters show, what it costs in
queries, the row and bulk actions, live progress read from the store, and "run cleanup now"."""

from __future__ import annotations

import re
import secrets
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_q.models import Task
from django_q.tasks import async_task

from tests.factories import FileRecordFactory
from tests.helpers import ApiClient, pin_local_disk
from tests.testapp.models import Post
from uploads.errors import UploadNotFound
from uploads.models import FileRecord
from uploads.services import files
from uploads.staff_views import PAGE_SIZE

pytestmark = pytest.mark.django_db
Status = FileRecord.Status
HX = {"HTTP_HX_REQUEST": "true"}
ROW = re.compile(r'data-testid="staff-row" data-file-id="([0-9a-f-]+)" data-status="(\w+)"')


@pytest.fixture(autouse=True)
def _local_storage(request: pytest.FixtureRequest, settings: Any) -> None:
    """The local-disk handler unless a test asks for the `backend` fixture's choice."""
    if "backend" not in request.fixturenames:
        pin_local_disk(settings)


@pytest.fixture
def staff(staff_user: Any) -> Client:
    client = Client()
    client.force_login(staff_user)
    return client


@pytest.fixture
def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def row_ids(response: Any) -> list[str]:
    return [file_id for file_id, _ in ROW.findall(response.content.decode())]


def in_flight(
    owner: Any,
    *,
    size: int = 400,
    expires_in: timedelta = timedelta(hours=1),
    status: str = Status.UPLOADING,
    **fields: Any,
) -> FileRecord:
    """An open record whose upload exists in the local store (an empty part directory)."""
    upload_id = secrets.token_hex(16)
    (Path(settings.UPLOADS_LOCAL_PARTS_DIR) / upload_id).mkdir(parents=True)
    return FileRecordFactory(
        created_by=owner,
        upload_status=status,
        upload_id=upload_id,
        file_size=size,
        upload_expires_at=timezone.now() + expires_in,
        completed_at=None,
        **fields,
    )


# --- a population of several users and every status -----------------------------------------


@pytest.fixture
def population(user: Any, other_user: Any) -> dict[str, Any]:
    carol = get_user_model().objects.create_user("carol", password="x")
    now = timezone.now()
    post = Post.objects.create(title="p")
    post_type = ContentType.objects.get_for_model(Post)
    made: dict[str, Any] = {
        "photo": FileRecordFactory(
            created_by=user, name="Holiday photo", file_size=100, file_content_type="image/png"
        ),
        "scan": FileRecordFactory(
            created_by=user, name="Scan", file_size=200, file_content_type="image/jpeg"
        ),
        "report": FileRecordFactory(
            created_by=user, name="Report", file_size=300, file_content_type="application/pdf"
        ),
        "failed_now": FileRecordFactory(
            created_by=user, upload_status=Status.FAILED, file_size=50, completed_at=None
        ),
        "aborted": FileRecordFactory(
            created_by=user, upload_status=Status.ABORTED, file_size=70, completed_at=None
        ),
        "attached": FileRecordFactory(
            created_by=other_user,
            file_size=1000,
            file_content_type="text/plain",
            parent_content_type=post_type,
            parent_object_id=str(post.pk),
        ),
        "stale": in_flight(other_user, size=400, expires_in=timedelta(hours=-2)),
        "uploading": in_flight(other_user, size=600),
        "pending": in_flight(other_user, size=10, status=Status.PENDING),
        "failed_old": FileRecordFactory(
            created_by=other_user, upload_status=Status.FAILED, file_size=5, completed_at=None
        ),
        "old": FileRecordFactory(created_by=carol, file_size=500, name="Old archive"),
    }
    FileRecord.objects.filter(pk=made["failed_old"].pk).update(modified=now - timedelta(days=2))
    FileRecord.objects.filter(pk=made["old"].pk).update(created=now - timedelta(days=10))
    return made


def test_dashboard_totals(staff, population, user, other_user):
    response = staff.get("/staff/")
    assert response.status_code == 200
    stats = response.context["stats"]
    assert stats.by_status == {
        "completed": {"count": 5, "bytes": 2100},
        "failed": {"count": 2, "bytes": 55},
        "aborted": {"count": 1, "bytes": 70},
        "uploading": {"count": 2, "bytes": 1000},
        "pending": {"count": 1, "bytes": 10},
    }
    assert (stats.total_files, stats.total_bytes) == (11, 3235)
    assert (stats.in_flight, stats.stale, stats.failed_24h) == (3, 1, 1)
    top = [(row["created_by__username"], row["bytes"], row["count"]) for row in stats.top_users]
    assert top == [("bob", 1000, 1), ("alice", 600, 3), ("carol", 500, 1)]
    per_day = dict(stats.per_day)
    today = timezone.now().date()
    assert per_day[today] == 10
    assert per_day[today - timedelta(days=10)] == 1
    assert sum(per_day.values()) == 11
    html = response.content.decode()
    # The figures reach the page, not only the context.
    for testid, figure in [
        ("stat-total", 11),
        ("stat-completed", 5),
        ("stat-in-flight", 3),
        ("stat-stale", 1),
        ("stat-failed-24h", 1),
        ("stat-aborted", 1),
    ]:
        figure_html = rf'data-testid="{testid}"><span class="figure">{figure}</span>'
        assert re.search(figure_html, html), testid
    assert "files · 3.2 KiB" in html  # total bytes, in IEC units


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (
            "",
            [
                "photo",
                "scan",
                "report",
                "failed_now",
                "aborted",
                "attached",
                "stale",
                "uploading",
                "pending",
                "failed_old",
                "old",
            ],
        ),
        ("user=alice", ["photo", "scan", "report", "failed_now", "aborted"]),
        ("user=nobody", []),
        ("status=completed", ["photo", "scan", "report", "attached", "old"]),
        ("status=uploading", ["stale", "uploading"]),
        ("user=bob&status=failed", ["failed_old"]),
        ("content_type=image/*", ["photo", "scan"]),
        ("content_type=application/pdf", ["report"]),
        ("parent_type=testapp.post", ["attached"]),
        ("q=holiday", ["photo"]),
        ("q=ARCHIVE", ["old"]),
        ("stale=on", ["stale"]),
        ("failed_24h=on", ["failed_now"]),
        ("created_to={ten_days_ago}", ["old"]),
        (
            "created_from={today}",
            [
                "photo",
                "scan",
                "report",
                "failed_now",
                "aborted",
                "attached",
                "stale",
                "uploading",
                "pending",
                "failed_old",
            ],
        ),
        ("created_from={ten_days_ago}&created_to={ten_days_ago}&status=completed", ["old"]),
        # An invalid value falls back to its default; the valid filters still apply.
        ("status=bogus&user=carol", ["old"]),
        ("created_from=not-a-date&user=carol", ["old"]),
    ],
)
def test_filters(staff, population, query, expected):
    today = timezone.now().date()
    query = query.format(today=today, ten_days_ago=today - timedelta(days=10))
    response = staff.get(f"/staff/?{query}", **HX)
    assert response.status_code == 200
    names = {str(record.pk): name for name, record in population.items()}
    assert sorted(names[i] for i in row_ids(response)) == sorted(expected)
    assert f"{len(expected)} file" in response.content.decode()


def test_sort_orders(staff, population):
    sizes = {str(r.pk): r.file_size for r in population.values()}
    ascending = [sizes[i] for i in row_ids(staff.get("/staff/?sort=file_size", **HX))]
    assert ascending == sorted(sizes.values())
    descending = [sizes[i] for i in row_ids(staff.get("/staff/?sort=-file_size", **HX))]
    assert descending == sorted(sizes.values(), reverse=True)
    oldest_first = row_ids(staff.get("/staff/?sort=created", **HX))
    assert oldest_first[0] == str(population["old"].pk)
    newest_first = row_ids(staff.get("/staff/", **HX))
    assert newest_first[-1] == str(population["old"].pk)


def test_htmx_gets_the_table_fragment_and_a_browser_the_whole_page(staff, population):
    fragment = staff.get("/staff/?user=alice", **HX).content.decode()
    assert fragment.lstrip().startswith('<section id="staff-table"')
    assert "<html" not in fragment and "Staff dashboard" not in fragment
    page = staff.get("/staff/?user=alice").content.decode()
    assert "<html" in page and "<h1>Staff dashboard</h1>" in page
    assert '<section id="staff-table"' in page
    assert len(ROW.findall(page)) == len(ROW.findall(fragment)) == 5


def test_pagination_keeps_the_filters(staff, user, other_user):
    FileRecordFactory.create_batch(120, created_by=user)
    FileRecordFactory.create_batch(3, created_by=other_user)
    seen: list[str] = []
    for page in (1, 2, 3):
        response = staff.get(f"/staff/?user=alice&page={page}", **HX)
        ids = row_ids(response)
        assert len(ids) == (PAGE_SIZE if page < 3 else 120 - 2 * PAGE_SIZE)
        seen += ids
        html = response.content.decode()
        assert f"Page {page} of 3 · 120 files" in html
        if page < 3:
            # The next link carries the filter, once.
            assert f'href="?user=alice&amp;page={page + 1}#files"' in html
    assert len(set(seen)) == 120
    alice = FileRecord.objects.filter(created_by=user).values_list("pk", flat=True)
    assert set(seen) == {str(pk) for pk in alice}
    # Out of range falls back to the last page rather than an error.
    assert "Page 3 of 3" in staff.get("/staff/?user=alice&page=99", **HX).content.decode()


# --- query cost -----------------------------------------------------------------------------


def count_queries(client: Client, url: str, **extra: Any) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url, **extra)
    assert response.status_code == 200
    return len(queries)


def grow_to(owner: Any, total: int) -> None:
    """Open and finished rows of two users, with parents, up to `total` rows."""
    post_type = ContentType.objects.get_for_model(Post)
    post = Post.objects.create(title="q")
    other = get_user_model().objects.get_or_create(username="dave")[0]
    have = FileRecord.objects.count()
    for index in range(have, total):
        if index % 3 == 0:
            in_flight(owner if index % 2 else other)
        else:
            FileRecordFactory(
                created_by=owner if index % 2 else other,
                parent_content_type=post_type if index % 5 == 0 else None,
                parent_object_id=str(post.pk) if index % 5 == 0 else "",
            )


def test_dashboard_queries_do_not_grow_with_rows(staff, user, django_assert_num_queries):
    grow_to(user, 5)
    full_small = count_queries(staff, "/staff/")
    table_small = count_queries(staff, "/staff/?sort=name", **HX)
    grow_to(user, 120)
    with django_assert_num_queries(full_small):
        assert staff.get("/staff/").status_code == 200
    with django_assert_num_queries(table_small):
        assert staff.get("/staff/?sort=name", **HX).status_code == 200
    assert count_queries(staff, "/staff/?page=3", **HX) == table_small
    # A fixed, small number: session, user, the figures, the page's count and rows, cleanup.
    assert full_small <= 15


def test_progress_queries_do_not_grow_with_rows(staff, user, django_assert_num_queries):
    few = [in_flight(user) for _ in range(5)]
    small = count_queries(staff, f"/staff/progress/?ids={','.join(str(r.pk) for r in few)}")
    many = [in_flight(user) for _ in range(PAGE_SIZE)]
    with django_assert_num_queries(small):
        response = staff.get(f"/staff/progress/?ids={','.join(str(r.pk) for r in many)}")
    assert response.content.decode().count('data-testid="progress"') == PAGE_SIZE


# --- access -------------------------------------------------------------------------------------


def staff_urls(file_id: str) -> list[tuple[str, str, dict[str, Any], int]]:
    """(method, url, data, what staff get) for every staff URL."""
    return [
        ("get", "/staff/", {}, 200),
        ("get", f"/staff/progress/?ids={file_id}", {}, 200),
        ("post", "/staff/bulk/", {"action": "abort", "ids": [file_id]}, 200),  # confirm step
        ("post", f"/staff/files/{file_id}/abort/", {}, 302),
        ("post", f"/staff/files/{file_id}/delete/", {}, 302),
        ("post", f"/staff/files/{file_id}/restore/", {}, 302),
        ("post", f"/staff/files/{file_id}/purge/", {}, 302),
        ("post", "/staff/cleanup/", {}, 200),
        ("get", "/staff/cleanup/0123456789abcdef0123456789abcdef/", {}, 200),
    ]


@pytest.mark.parametrize("index", range(len(staff_urls(""))))
def test_access_matrix(index, user, staff_user):
    target = in_flight(user)
    method, url, data, staff_status = staff_urls(str(target.pk))[index]
    path = url.split("?")[0]

    anonymous = getattr(Client(), method)(url, data)
    assert anonymous.status_code == 302
    assert anonymous["Location"].startswith(f"/accounts/login/?next={path}")

    signed_in = Client()
    signed_in.force_login(user)
    assert getattr(signed_in, method)(url, data).status_code == 403
    # Neither of them changed anything.
    target.refresh_from_db()
    assert target.upload_status == Status.UPLOADING
    assert (Path(settings.UPLOADS_LOCAL_PARTS_DIR) / target.upload_id).exists()
    assert not Task.objects.exists()

    staff = Client()
    staff.force_login(staff_user)
    assert getattr(staff, method)(url, data).status_code == staff_status


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("get", "/staff/bulk/"),
        ("get", "/staff/cleanup/"),
        ("post", "/staff/"),
        ("post", "/staff/progress/"),
        ("get", "/staff/files/{id}/abort/"),
    ],
)
def test_wrong_method(staff, user, method, url):
    target = in_flight(user)
    assert getattr(staff, method)(url.format(id=target.pk)).status_code == 405


def test_unknown_row_action_is_404(staff, user):
    target = in_flight(user)
    assert staff.post(f"/staff/files/{target.pk}/frobnicate/").status_code == 404
    assert FileRecord.objects.get(pk=target.pk).upload_status == Status.UPLOADING


# --- row and bulk actions -----------------------------------------------------------------------


def status_of(record: FileRecord) -> str | None:
    return FileRecord.objects.filter(pk=record.pk).values_list("upload_status", flat=True).first()


def test_bulk_abort_needs_confirmation_and_touches_only_the_selected(staff, user, other_user):
    picked = [in_flight(user), in_flight(other_user)]
    left = in_flight(user)
    ids = [str(r.pk) for r in picked]

    ask = staff.post("/staff/bulk/", {"action": "abort", "ids": ids, "query": "user=alice"}, **HX)
    assert ask.status_code == 200
    html = ask.content.decode()
    assert 'data-testid="bulk-confirm"' in html and "Abort 2 files?" in html
    assert all(f'name="ids" value="{i}"' in html for i in ids)
    # The confirmation names the files it acts on, with their sizes and owners.
    listed = re.search(r'data-testid="bulk-files">(.*?)</ul>', html, re.S)
    assert listed, html
    assert listed.group(1).count("<li>") == 2
    for record in picked:
        assert record.name in listed.group(1)
    assert "400 bytes" in listed.group(1) and "alice" in listed.group(1)
    assert left.name not in listed.group(1)
    assert {status_of(r) for r in [*picked, left]} == {Status.UPLOADING}

    done = staff.post(
        "/staff/bulk/",
        {"action": "abort", "ids": ids, "confirm": "yes", "query": "user=alice"},
        **HX,
    )
    assert done.status_code == 200
    assert "2 files aborted." in done.content.decode()
    # The table comes back with the filter the page was showing.
    assert set(row_ids(done)) == {str(picked[0].pk), str(left.pk)}
    assert [status_of(r) for r in picked] == [Status.ABORTED, Status.ABORTED]
    assert not any((Path(settings.UPLOADS_LOCAL_PARTS_DIR) / r.upload_id).exists() for r in picked)
    assert status_of(left) == Status.UPLOADING
    assert (Path(settings.UPLOADS_LOCAL_PARTS_DIR) / left.upload_id).exists()


def test_bulk_delete_without_htmx_redirects_with_a_notice(staff, user):
    picked = [FileRecordFactory(created_by=user), in_flight(user)]
    left = FileRecordFactory(created_by=user)
    ids = [str(r.pk) for r in picked]

    ask = staff.post("/staff/bulk/", {"action": "delete", "ids": ids})
    assert ask.status_code == 200 and "Delete 2 files?" in ask.content.decode()
    assert FileRecord.objects.count() == 3

    done = staff.post(
        "/staff/bulk/", {"action": "delete", "ids": ids, "confirm": "yes", "query": "status=all"}
    )
    assert done.status_code == 302 and done["Location"] == "/staff/?status=all"
    assert list(FileRecord.objects.visible().values_list("pk", flat=True)) == [left.pk]
    assert not (Path(settings.UPLOADS_LOCAL_PARTS_DIR) / picked[1].upload_id).exists()
    page = staff.get(done["Location"]).content.decode()
    assert "2 files deleted." in page
    # The notice is shown once.
    assert "files deleted." not in staff.get("/staff/").content.decode()


def test_bulk_without_selection_or_action_says_so(staff, user):
    target = in_flight(user)
    for data in ({"action": "abort"}, {"action": "explode", "ids": [str(target.pk)]}):
        response = staff.post("/staff/bulk/", data, **HX)
        assert response.status_code == 200
        assert "Select at least one file and an action." in response.content.decode()
        # Nothing was tried: no "0 files aborted."
        assert "0 files" not in response.content.decode()
    assert status_of(target) == Status.UPLOADING


def test_bulk_buttons_are_marked_for_the_selection_script(staff, user):
    in_flight(user)
    html = staff.get("/staff/").content.decode()
    assert html.count("data-bulk>") == 2 and html.count("data-bulk-pick") == 1
    # A file of its own: the page's CSP allows no inline script.
    assert '<script src="/static/uploads/staff.js" defer></script>' in html
    deleted = staff.get("/staff/?deleted=on").content.decode()
    assert 'data-testid="bulk-restore" data-bulk>' in deleted


def test_abort_of_a_completed_file_is_refused_per_row(staff, user):
    finished = FileRecordFactory(created_by=user, file_name="done.bin")
    response = staff.post(f"/staff/files/{finished.pk}/abort/", {"query": ""}, **HX)
    assert response.status_code == 200
    html = response.content.decode()
    assert "0 files aborted." in html
    assert "done.bin: This upload is completed; it can no longer be aborted." in html
    assert status_of(finished) == Status.COMPLETED


def test_bulk_abort_mixing_open_and_completed(staff, user):
    open_one = in_flight(user, file_name="open.bin")
    finished = FileRecordFactory(created_by=user, file_name="done.bin")
    missing = str(uuid.uuid4())
    response = staff.post(
        "/staff/bulk/",
        {"action": "abort", "ids": [str(open_one.pk), str(finished.pk), missing], "confirm": "yes"},
        **HX,
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert "1 file aborted." in html
    assert "done.bin: This upload is completed" in html
    assert f"<li>{missing}: " in html
    assert (status_of(open_one), status_of(finished)) == (Status.ABORTED, Status.COMPLETED)


def test_row_abort_without_htmx_redirects_back(staff, user):
    target = in_flight(user)
    response = staff.post(f"/staff/files/{target.pk}/abort/", {"query": "stale=on"})
    assert response.status_code == 302 and response["Location"] == "/staff/?stale=on"
    assert status_of(target) == Status.ABORTED
    assert "1 file aborted." in staff.get(response["Location"]).content.decode()


# --- deleted files: listed apart, restored or purged --------------------------------------------


def deleted_file(owner: Any, **fields: Any) -> FileRecord:
    """A completed file its owner deleted: hidden, its object still stored."""
    record = FileRecordFactory(created_by=owner, **fields)
    path = Path(settings.MEDIA_ROOT) / record.file.name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * record.file_size)
    FileRecord.objects.filter(pk=record.pk).update(deleted_at=timezone.now())
    return FileRecord.objects.get(pk=record.pk)


def test_deleted_files_are_listed_apart_with_their_bytes(staff, user):
    live = FileRecordFactory(created_by=user, file_size=100)
    gone = deleted_file(user, file_name="gone.bin", file_size=300)

    page = staff.get("/staff/?status=all")
    assert row_ids(page) == [str(live.pk)]
    html = page.content.decode()
    assert 'data-testid="stat-deleted"><span class="figure">1</span>' in html
    assert "deleted, awaiting purge · 300 bytes" in html
    assert 'data-testid="stat-total"><span class="figure">1</span>' in html

    listed = staff.get("/staff/?deleted=on", **HX)
    assert row_ids(listed) == [str(gone.pk)]
    html = listed.content.decode()
    assert 'data-testid="deleted-at"' in html
    assert f"/staff/files/{gone.pk}/restore/" in html and f"/staff/files/{gone.pk}/purge/" in html
    assert f"/staff/files/{gone.pk}/delete/" not in html
    assert 'data-testid="bulk-purge"' in html and 'data-testid="bulk-delete"' not in html


def test_staff_restore_brings_a_deleted_file_back_to_its_owner(staff, user):
    gone = deleted_file(user, file_name="back.bin")
    api = ApiClient(user)
    assert api.get(f"/v1/files/{gone.pk}").status_code == 404

    response = staff.post(f"/staff/files/{gone.pk}/restore/", {"query": "deleted=on"}, **HX)

    assert response.status_code == 200
    assert "1 file restored." in response.content.decode()
    assert api.get(f"/v1/files/{gone.pk}").status_code == 200
    assert FileRecord.objects.get(pk=gone.pk).deleted_at is None


def test_staff_purge_removes_the_bytes_and_the_record_now(staff, user, settings):
    settings.FILE_UPLOAD_QUOTA_PER_USER = 1000
    gone = deleted_file(user, file_name="gone.bin", file_size=900)
    api = ApiClient(user)
    assert api.post("/v1/files/uploads", {"file_name": "b", "file_size": 200}).status_code == 413
    path = Path(settings.MEDIA_ROOT) / gone.file.name

    ask = staff.post("/staff/bulk/", {"action": "purge", "ids": [str(gone.pk)]}, **HX)
    assert "Purge 1 file?" in ask.content.decode()
    assert "This cannot be undone." in ask.content.decode()
    assert path.exists()
    done = staff.post(
        "/staff/bulk/", {"action": "purge", "ids": [str(gone.pk)], "confirm": "yes"}, **HX
    )

    assert "1 file purged." in done.content.decode()
    assert not FileRecord.objects.filter(pk=gone.pk).exists()
    assert not path.exists()
    assert api.post("/v1/files/uploads", {"file_name": "b", "file_size": 200}).status_code == 201


def test_restore_and_purge_are_refused_per_row_where_they_do_not_apply(staff, user):
    live = FileRecordFactory(created_by=user, file_name="live.bin")
    discarded = deleted_file(
        user, file_name="discarded.bin", upload_status=Status.ABORTED, completed_at=None
    )

    for action, target in [("restore", live), ("purge", live), ("restore", discarded)]:
        response = staff.post(f"/staff/files/{target.pk}/{action}/", {"query": ""}, **HX)
        assert f"0 files {action}d." in response.content.decode()
    html = response.content.decode()
    assert "discarded.bin: Only completed files can be restored; this one is aborted." in html
    assert FileRecord.objects.get(pk=live.pk).deleted_at is None
    assert FileRecord.objects.get(pk=discarded.pk).deleted_at is not None


def test_only_staff_may_restore_or_purge_through_the_services(user, other_user):
    gone = deleted_file(user)
    for service in (files.file_restore, files.file_purge):
        for who in (user, other_user):
            with pytest.raises(UploadNotFound):
                service(user=who, file_id=gone.pk)
    assert FileRecord.objects.get(pk=gone.pk).deleted_at is not None


# --- live progress ------------------------------------------------------------------------------


def test_progress_reads_parts_from_the_store_and_flags_stalls(staff, user, backend, settings):
    part_size = 1024 if backend == "local" else 5 * 1024 * 1024
    api = ApiClient(user)
    init = api.post(
        "/v1/files/uploads",
        {"file_name": "big.bin", "file_size": 3 * part_size, "part_size": part_size},
    )
    assert init.status_code == 201, init.content
    body = init.json()
    for target in body["presigned_urls"][:2]:
        chunk = b"p" * part_size
        if backend == "local":
            assert api.put_part(target["url"], chunk).status_code == 200
        else:
            assert requests.put(target["url"], data=chunk, timeout=60).status_code == 200
    finished = FileRecordFactory(created_by=user)
    # The database knows nothing of the parts; only the store does.
    assert FileRecord.objects.get(pk=body["id"]).uploaded_parts == 0

    url = f"/staff/progress/?ids={body['id']},{finished.pk}"
    html = staff.get(url).content.decode()
    row = re.search(rf'<span id="progress-{body["id"]}"[^>]*>(.*?)</span>\n', html, re.S)
    assert row, html
    assert "2 / 3 parts" in row.group(1)
    assert ("2.0 KiB" if backend == "local" else "10.0 MiB") in row.group(1)
    assert "stalled" not in row.group(1)
    assert re.search(rf'<span id="progress-{finished.pk}"[^>]*>—</span>', html)

    settings.UPLOADS_STALLED_MINUTES = 0
    html = staff.get(url).content.decode()
    assert 'data-testid="stalled"' in html
    assert html.count('data-testid="stalled"') == 1


def test_progress_says_when_the_store_does_not_know_the_upload(staff, user):
    gone = in_flight(user)
    (Path(settings.UPLOADS_LOCAL_PARTS_DIR) / gone.upload_id).rmdir()
    html = staff.get(f"/staff/progress/?ids={gone.pk}").content.decode()
    assert "store unavailable" in html


def test_dashboard_polls_progress_only_for_rows_in_flight(staff, user):
    open_one = in_flight(user)
    FileRecordFactory(created_by=user)
    html = staff.get("/staff/", **HX).content.decode()
    assert f'/staff/progress/?ids={open_one.pk}"' in html


# --- run cleanup now ----------------------------------------------------------------------------


def test_run_cleanup_now_shows_its_result(staff, user):
    expired = in_flight(user, expires_in=timedelta(minutes=-5))
    response = staff.post("/staff/cleanup/", **HX)
    assert response.status_code == 200
    match = re.search(r'hx-get="/staff/cleanup/([0-9a-f]+)/"', response.content.decode())
    assert match, response.content
    task_id = match.group(1)
    # Q_CLUSTER sync=True in the test settings: the task has already run.
    assert status_of(expired) == Status.ABORTED
    assert not (Path(settings.UPLOADS_LOCAL_PARTS_DIR) / expired.upload_id).exists()

    status = staff.get(f"/staff/cleanup/{task_id}/", **HX)
    assert status.status_code == 200
    html = status.content.decode()
    assert 'data-testid="cleanup-result"' in html
    assert re.search(r"Cleanup finished in \d+\.\d s: 1 aborted, 0 deleted, 0 errors\.", html)
    task = Task.objects.get(id=task_id)
    assert task.success and task.name == "cleanup by staff"
    # The dashboard's panel lists the run as a row: task, started, took, the counts.
    assert run_rows(staff.get("/staff/")) == [
        ["Cleanup by staff", task.started.strftime("%Y-%m-%d %H:%M:%S"), "*", "1", "0", "0"]
    ]


def run_rows(response: Any) -> list[list[str]]:
    """The cleanup runs table's cells (the time taken as "*": it varies)."""
    rows = re.findall(r'<tr data-testid="cleanup-run">(.*?)</tr>', response.content.decode())
    cells = [
        [re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td[^>]*>(.*?)</td>", r)] for r in rows
    ]
    for row in cells:
        assert re.fullmatch(r"\d+\.\d s", row[2]), row
        row[2] = "*"
    return cells


def test_scheduled_runs_show_the_step_not_their_random_name(staff, user):
    in_flight(user, expires_in=timedelta(minutes=-5))
    async_task("uploads.tasks.cleanup_expired_uploads", task_name="wolfram-three-alpha-ohio")
    async_task("uploads.tasks.purge_deleted_files")

    rows = run_rows(staff.get("/staff/"))

    assert [(row[0], row[3:]) for row in rows] == [
        ("Purge deleted files", ["0", "0", "0"]),
        ("Expired uploads", ["1", "0", "0"]),
    ]
    table = re.search(
        r'(?s)data-testid="cleanup-runs">.*?</table>', staff.get("/staff/").content.decode()
    )
    assert table
    assert "wolfram" not in table.group(0) and "{" not in table.group(0)


def test_cleanup_status_of_an_unknown_task_keeps_waiting(staff):
    html = staff.get("/staff/cleanup/0123456789abcdef0123456789abcdef/").content.decode()
    assert 'data-testid="cleanup-waiting"' in html


# --- whatever a client sends, no 500 -------------------------------------------------------------


@pytest.mark.parametrize("bad", ["not-a-uuid", "1", "%00"])
def test_malformed_ids_are_refused_not_500(staff, user, bad):
    target = in_flight(user)
    progress = staff.get(f"/staff/progress/?ids={bad},{target.pk}")
    assert progress.status_code == 200
    assert f'id="progress-{target.pk}"' in progress.content.decode()

    row = staff.post(f"/staff/files/{bad}/abort/", **HX)
    assert row.status_code == 200
    assert "0 files aborted." in row.content.decode()

    bulk = staff.post(
        "/staff/bulk/", {"action": "delete", "ids": [bad, str(target.pk)], "confirm": "yes"}, **HX
    )
    assert bulk.status_code == 200
    assert "1 file deleted." in bulk.content.decode()
    assert not FileRecord.objects.visible().filter(pk=target.pk).exists()
