"""factory_boy factories for records the tests need without going through a real upload."""

from __future__ import annotations

import uuid

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from uploads.models import FileRecord


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password("pass")


class FileRecordFactory(factory.django.DjangoModelFactory):
    """A record as it looks after a completed upload; its key points at nothing stored."""

    class Meta:
        model = FileRecord

    id = factory.LazyFunction(uuid.uuid4)
    name = factory.Sequence(lambda n: f"file {n}")
    file_name = factory.Sequence(lambda n: f"file-{n}.bin")
    file_size = 10
    file_content_type = "application/octet-stream"
    file = factory.LazyAttribute(lambda o: f"uploads/test/{o.id.hex}")
    upload_status = FileRecord.Status.COMPLETED
    total_parts = 1
    part_size = 5 * 1024 * 1024
    completed_at = factory.LazyFunction(timezone.now)
    created_by = factory.SubFactory(UserFactory)
