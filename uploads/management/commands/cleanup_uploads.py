from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from uploads.models import FileRecord
from uploads.services import cleanup


class ProgressBar:
    """A one-line text progress bar on stderr (only when it is a terminal, or when asked)."""

    def __init__(self, label: str, total: int, stream: Any, enabled: bool) -> None:
        self.label, self.total, self.stream, self.enabled = label, max(total, 1), stream, enabled
        self.done = 0

    def __call__(self, step: int) -> None:
        self.done += step
        if not self.enabled:
            return
        width = 30
        filled = min(width, int(width * self.done / self.total))
        self.stream.write(
            f"\r{self.label:<10} [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total}"
        )
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.done:
            self.stream.write("\n")


class Command(BaseCommand):
    help = (
        "Abort expired uploads, delete old failed ones, purge deleted files past their "
        "retention, and reconcile the store (all by default)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--expired", action="store_true", help="Abort expired uploads.")
        parser.add_argument("--failed", action="store_true", help="Delete old failed/aborted ones.")
        parser.add_argument("--days", type=int, default=7, help="Age for --failed (default 7).")
        parser.add_argument(
            "--deleted",
            action="store_true",
            help="Purge deleted files older than UPLOADS_DELETED_RETENTION_DAYS.",
        )
        parser.add_argument(
            "--reconcile", action="store_true", help="Abort store uploads no record knows."
        )
        parser.add_argument("--dry-run", action="store_true", help="Count only; change nothing.")
        parser.add_argument(
            "--time-budget",
            type=float,
            default=cleanup.TIME_BUDGET_SECONDS,
            help="Seconds per step before stopping (the next run continues).",
        )
        parser.add_argument("--progress", action="store_true", help="Show a progress bar.")

    def handle(self, *args: Any, **options: Any) -> None:
        names = ("expired", "failed", "deleted", "reconcile")
        steps = [name for name in names if options[name]] or list(names)
        dry = options["dry_run"]
        show = options["progress"] or sys.stderr.isatty()
        now = timezone.now()
        for step in steps:
            if step == "expired":
                total = FileRecord.objects.expired(now).count()
                bar = ProgressBar("expired", total, sys.stderr, show)
                result = cleanup.cleanup_expired_uploads(
                    now=now, dry_run=dry, progress=bar, time_budget=options["time_budget"]
                )
            elif step == "failed":
                total = cleanup.old_failures(now, options["days"]).count()
                bar = ProgressBar("failed", total, sys.stderr, show)
                result = cleanup.cleanup_failed_uploads(
                    options["days"],
                    now=now,
                    dry_run=dry,
                    progress=bar,
                    time_budget=options["time_budget"],
                )
            elif step == "deleted":
                total = cleanup.purge_due(now).count()
                bar = ProgressBar("deleted", total, sys.stderr, show)
                result = cleanup.purge_deleted_files(
                    now=now, dry_run=dry, progress=bar, time_budget=options["time_budget"]
                )
            else:
                bar = ProgressBar("reconcile", 0, sys.stderr, False)
                result = cleanup.reconcile_storage(now=now, dry_run=dry)
            bar.close()
            verb = "would change" if dry else "done"
            counts = ", ".join(f"{key} {value}" for key, value in result.as_dict().items())
            self.stdout.write(f"{step}: {verb} — {counts}")
