from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

DEMO_USERS = [
    # (username, password, is_staff)
    ("demo", "demo", False),
    ("admin", "admin", True),
]


class Command(BaseCommand):
    help = "Create the demo user (demo/demo) and staff user (admin/admin) if they are missing."

    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        for username, password, staff in DEMO_USERS:
            if User.objects.filter(username=username).exists():
                self.stdout.write(f"{username}: exists, left unchanged")
                continue
            if staff:
                User.objects.create_superuser(username=username, password=password)
            else:
                User.objects.create_user(username=username, password=password)
            self.stdout.write(self.style.SUCCESS(f"{username}: created (password {password})"))
