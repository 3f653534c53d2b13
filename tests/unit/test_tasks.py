"""django-q2 entry points, the schedules created on migrate, the scheduler running a due one, and
a task travelling through the Redis broker (the production shape) to a worker."""

from __future__ import annotations

import uuid
from datetime import timedelta
from multiprocessing import Event, Queue, Value
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.utils import timezone
from django_q.conf import Conf
from django_q.models import Schedule, Task

from tests.helpers import ApiClient, unavailable
from uploads import tasks
from uploads.models import FileRecord
from uploads.schedules import SCHEDULES, ensure_schedules
from uploads.services import cleanup

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("local_disk")]
Status = FileRecord.Status
NAMES = [
    "cleanup_expired_uploads",
    "cleanup_failed_uploads",
    "purge_deleted_files",
    "reconcile_storage",
]
REDIS_URL = "redis://127.0.0.1:6379/0"


def expired_upload(api: ApiClient) -> dict[str, Any]:
    """An upload with one part in the local store, past its expiry."""
    init = api.post("/v1/files/uploads", {"file_name": "a.bin", "file_size": 100})
    assert init.status_code == 201, init.content
    body: dict[str, Any] = init.json()
    assert api.put_part(body["presigned_urls"][0]["url"], b"x" * 100).status_code == 200
    FileRecord.objects.filter(pk=body["id"]).update(
        upload_expires_at=timezone.now() - timedelta(minutes=5)
    )
    return body


def parts_dir_exists(upload_id: str) -> bool:
    return (settings.UPLOADS_LOCAL_PARTS_DIR / upload_id).exists()


def assert_aborted(upload: dict[str, Any]) -> None:
    current = FileRecord.objects.get(pk=upload["id"])
    assert (current.upload_status, current.upload_id) == (Status.ABORTED, "")
    assert not parts_dir_exists(upload["upload_id"])


# --- the task functions -----------------------------------------------------------------------


def test_cleanup_expired_task_returns_its_counts(api):
    upload = expired_upload(api)
    assert tasks.cleanup_expired_uploads() == {
        "examined": 1,
        "aborted": 1,
        "deleted": 0,
        "errors": 0,
        "finished": True,
    }
    assert_aborted(upload)


def test_cleanup_failed_task_returns_its_counts(api):
    upload = expired_upload(api)
    FileRecord.objects.filter(pk=upload["id"]).update(
        upload_status=Status.FAILED, modified=timezone.now() - timedelta(days=3)
    )
    assert tasks.cleanup_failed_uploads(days_old=7)["deleted"] == 0
    assert tasks.cleanup_failed_uploads(days_old=2) == {
        "examined": 1,
        "aborted": 0,
        "deleted": 1,
        "errors": 0,
        "finished": True,
    }
    assert not FileRecord.objects.filter(pk=upload["id"]).exists()
    assert not parts_dir_exists(upload["upload_id"])


def test_reconcile_task_returns_its_counts(api, settings):
    settings.UPLOADS_EXPIRATION_SECONDS = 0
    upload = expired_upload(api)
    FileRecord.objects.filter(pk=upload["id"]).delete()
    assert tasks.reconcile_storage() == {
        "examined": 1,
        "aborted": 1,
        "deleted": 0,
        "errors": 0,
        "finished": True,
    }
    assert not parts_dir_exists(upload["upload_id"])


def test_cleanup_all_runs_every_step(api):
    upload = expired_upload(api)
    result = tasks.cleanup_all()
    assert set(result) == {"expired", "failed", "deleted", "reconcile"}
    assert result["expired"]["aborted"] == 1
    assert all(step["errors"] == 0 and step["finished"] for step in result.values())
    assert_aborted(upload)


def test_queue_settings_let_a_run_finish_before_it_is_killed_or_retried():
    q = settings.Q_CLUSTER
    # A run stops itself at its time budget, before the worker's timeout kills it, and a task
    # is only handed out again after the timeout (django-q2 requires timeout < retry).
    assert cleanup.TIME_BUDGET_SECONDS < q["timeout"] < q["retry"]
    assert q["catch_up"] is False


# --- schedules --------------------------------------------------------------------------------


def test_migrate_creates_the_schedules(db):
    Schedule.objects.all().delete()
    call_command("migrate", verbosity=0)
    rows = {s.name: s for s in Schedule.objects.all()}
    assert sorted(rows) == sorted(NAMES)
    for spec in SCHEDULES:
        row = rows[spec["name"]]
        assert (row.func, row.schedule_type, row.repeats) == (
            spec["func"],
            spec["schedule_type"],
            -1,
        )
        assert row.next_run is not None
    assert rows["cleanup_expired_uploads"].schedule_type == Schedule.HOURLY
    assert rows["cleanup_failed_uploads"].kwargs == "{'days_old': 7}"


def test_ensure_schedules_again_neither_duplicates_nor_resets_next_run(db):
    pinned = timezone.now() + timedelta(minutes=37)
    Schedule.objects.filter(name__in=NAMES).update(next_run=pinned)
    # An edited row is put back to the code's definition...
    Schedule.objects.filter(name="reconcile_storage").update(func="somewhere.else")

    ensure_schedules()
    ensure_schedules()
    call_command("migrate", verbosity=0)

    assert Schedule.objects.filter(name__in=NAMES).count() == len(NAMES) == 4
    assert Schedule.objects.count() == len(NAMES)
    assert Schedule.objects.get(name="reconcile_storage").func == "uploads.tasks.reconcile_storage"
    # ...but the running cadence is kept.
    assert set(Schedule.objects.values_list("next_run", flat=True)) == {pinned}


def test_the_scheduler_runs_a_due_cleanup(api):
    from django_q.scheduler import scheduler

    upload = expired_upload(api)
    now = timezone.now()
    Schedule.objects.filter(name="cleanup_expired_uploads").update(
        next_run=now - timedelta(minutes=1)
    )
    Schedule.objects.exclude(name="cleanup_expired_uploads").update(
        next_run=now + timedelta(days=1)
    )

    scheduler()  # Q_CLUSTER sync=True (tests/settings.py): the task runs inline

    assert_aborted(upload)
    task = Task.objects.get(func="uploads.tasks.cleanup_expired_uploads")
    assert task.success, task.result
    assert task.group == "cleanup_expired_uploads"
    assert task.result == {
        "examined": 1,
        "aborted": 1,
        "deleted": 0,
        "errors": 0,
        "finished": True,
    }
    schedule = Schedule.objects.get(name="cleanup_expired_uploads")
    assert timezone.now() < schedule.next_run <= now + timedelta(hours=1)

    scheduler()  # nothing is due any more
    assert Task.objects.count() == 1


# --- the Redis broker -------------------------------------------------------------------------


@pytest.fixture
def redis_broker(monkeypatch: pytest.MonkeyPatch) -> Any:
    """django-q2's Redis broker on the local Redis, on a list no other test or worker uses."""
    redis = pytest.importorskip("redis")
    probe = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        probe.ping()
    except redis.exceptions.ConnectionError as exc:
        unavailable(f"Redis is not reachable at {REDIS_URL}: {exc}")
    finally:
        probe.close()
    from django_q.brokers.redis_broker import Redis

    monkeypatch.setattr(Conf, "REDIS", REDIS_URL)
    broker = Redis(list_key=f"direct-uploads-test-{uuid.uuid4().hex}")
    yield broker
    broker.delete_queue()
    broker.connection.close()


def test_a_task_travels_through_the_redis_broker_to_a_worker(api, redis_broker):
    from django_q.monitor import monitor
    from django_q.pusher import pusher
    from django_q.tasks import async_task
    from django_q.worker import worker

    upload = expired_upload(api)
    # sync=False overrides the test settings' sync mode: the package really goes to Redis.
    task_id = async_task(
        "uploads.tasks.cleanup_expired_uploads",
        broker=redis_broker,
        sync=False,
        task_name="redis-path",
    )
    assert redis_broker.queue_size() == 1
    assert FileRecord.objects.get(pk=upload["id"]).upload_status == Status.UPLOADING

    # The cluster's own pipeline, run in this process: pusher (dequeue and unsign) → worker
    # (execute) → monitor (save the result).
    task_queue: Any = Queue()
    result_queue: Any = Queue()
    stop = Event()
    stop.set()  # the pusher dequeues what is there, then stops
    try:
        pusher(task_queue, stop, broker=redis_broker)
        assert redis_broker.queue_size() == 0
        task_queue.put("STOP")
        worker(task_queue, result_queue, Value("f", -1))
        result_queue.put("STOP")
        monitor(result_queue, broker=redis_broker)
    finally:
        for queue in (task_queue, result_queue):
            queue.close()
            queue.join_thread()

    task = Task.objects.get(id=task_id)
    assert (task.name, task.success) == ("redis-path", True)
    assert task.result["aborted"] == 1
    assert_aborted(upload)
