from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from uploads.storage import get_storage_handler
from uploads.storage.s3 import S3StorageHandler


class Command(BaseCommand):
    help = (
        "Prepare the S3 bucket for browser uploads: CORS that exposes ETag to the portal's "
        "origins and, optionally, a lifecycle rule that aborts incomplete multipart uploads."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--create", action="store_true", help="Create the bucket if missing.")
        parser.add_argument(
            "--origin",
            action="append",
            dest="origins",
            help="Allowed browser origin (repeatable); default: UPLOADS_CORS_ORIGINS.",
        )
        parser.add_argument(
            "--abort-incomplete-days",
            type=int,
            default=None,
            help="Add a lifecycle rule aborting multipart uploads left incomplete this many days.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        handler = get_storage_handler()
        if not isinstance(handler, S3StorageHandler):
            raise CommandError("The default storage is not S3: set AWS_STORAGE_BUCKET_NAME.")
        client, bucket = handler.client, handler.bucket
        origins = options["origins"] or settings.UPLOADS_CORS_ORIGINS
        try:
            if options["create"]:
                existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
                if bucket not in existing:
                    client.create_bucket(Bucket=bucket)
                    self.stdout.write(f"created bucket {bucket}")
            client.put_bucket_cors(
                Bucket=bucket,
                CORSConfiguration={
                    "CORSRules": [
                        {
                            "AllowedOrigins": origins,
                            "AllowedMethods": ["PUT", "GET", "HEAD"],
                            "AllowedHeaders": ["*"],
                            # Without ETag exposed, a browser cannot read part ETags.
                            "ExposeHeaders": ["ETag"],
                            "MaxAgeSeconds": 3600,
                        }
                    ]
                },
            )
            self.stdout.write(f"CORS on {bucket}: origins {', '.join(origins)}; exposes ETag")
            days = options["abort_incomplete_days"]
            if days:
                client.put_bucket_lifecycle_configuration(
                    Bucket=bucket,
                    LifecycleConfiguration={
                        "Rules": [
                            {
                                "ID": "abort-incomplete-multipart-uploads",
                                "Status": "Enabled",
                                "Filter": {"Prefix": ""},
                                "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": days},
                            }
                        ]
                    },
                )
                self.stdout.write(
                    f"lifecycle on {bucket}: abort incomplete uploads after {days} days"
                )
        except (BotoCoreError, ClientError) as exc:
            raise CommandError(f"S3 refused the bucket setup: {exc}") from exc
