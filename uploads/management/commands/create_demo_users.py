from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

DEMO_USERS = [
    # (username, password, is_staff)
    ("demo", "demo", False),
    ("admin", "admin", True),
]


class Command(BaseCommand):
    help = "Create the demo user (demo/demo) and staff user (admin/admin) if they are missing."

    def add_arguments(self, parser: CommandParser) -> None:
        # `make run` starts Django once for both steps instead of twice: seconds on a first run.
        parser.add_argument("--migrate", action="store_true", help="Migrate the database first.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["migrate"]:
            call_command("migrate", interactive=False, verbosity=options["verbosity"])
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
