from datetime import timedelta
from django.core.management import call_command
from django.utils import timezone
from uploads.models import FileRecord
from uploads.services import cleanup

def test_cleanup(api, settings, django_assert_max_num_queries):
    ids = []
    for i in range(5):
        r = api.post("/v1/files/uploads", {"file_name": f"{i}.bin", "file_size": 3000, "part_size": 1024}).json()
        ids.append(r["id"])
    FileRecord.objects.filter(pk__in=ids[:3]).update(upload_expires_at=timezone.now() - timedelta(minutes=1))
    with django_assert_max_num_queries(20):
        res = cleanup.cleanup_expired_uploads(batch_size=2)
    assert res.aborted == 3, res
    assert FileRecord.objects.filter(upload_status="aborted", upload_id="").count() == 3
    res = cleanup.cleanup_failed_uploads(0, now=timezone.now() + timedelta(seconds=1))
    assert res.deleted == 3
    # orphan: delete a record of an open upload directly
    FileRecord.objects.filter(pk=ids[3]).delete()
    res = cleanup.reconcile_storage(older_than=timedelta(0), now=timezone.now() + timedelta(seconds=5))
    assert res.examined == 2 and res.aborted == 1, res
    from django_q.models import Schedule
    assert set(Schedule.objects.values_list("name", flat=True)) >= {"cleanup_expired_uploads", "cleanup_failed_uploads", "reconcile_storage"}
    call_command("cleanup_uploads", "--dry-run")

def test_dbg(api, settings):
    import os
    r = api.post("/v1/files/uploads", {"file_name": "x.bin", "file_size": 3000, "part_size": 1024}).json()
    from uploads.storage import get_storage_handler
    h = get_storage_handler()
    print(h.parts_dir, os.listdir(h.parts_dir), r["upload_id"])
    print(list(h.list_uploads(initiated_before=timezone.now() + timedelta(seconds=5))))
