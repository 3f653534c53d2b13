"""Python client of the Direct Uploads API: `Client(server, token=...)` or `username=/password=`.

`direct-uploads` (uploads.client.cli) is its command line. The package needs httpx (with its
httpcore; and rich for progress bars in the CLI), never Django: it can be copied into any
Python ≥ 3.12 project.
"""

from __future__ import annotations

from .client import Client, normalize_server
from .errors import ClientError
from .models import PartURL, RemoteFile, StoredPart, UploadParts, UploadResult, Verification
from .retry import RetryPolicy
from .state import ResumeState, default_state_path
from .transfer import auto_part_size

__all__ = [
    "Client",
    "ClientError",
    "PartURL",
    "RemoteFile",
    "ResumeState",
    "RetryPolicy",
    "StoredPart",
    "UploadParts",
    "UploadResult",
    "Verification",
    "auto_part_size",
    "default_state_path",
    "normalize_server",
]
