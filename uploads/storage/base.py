"""The storage handler protocol: what services need from a store, and nothing more."""

from __future__ import annotations

import errno
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB

# S3's multipart limits (docs.aws.amazon.com/AmazonS3/latest/userguide/qfacts.html).
# 5 GiB is the largest single part S3 accepts.
S3_MAX_PART_SIZE = 5 * GIB
# S3 numbers parts 1..10,000.
S3_MAX_PARTS = 10_000
# 5 TiB is the largest object S3 stores.
S3_MAX_OBJECT_SIZE = 5 * 1024 * GIB


class StorageError(Exception):
    """A storage backend call failed; the message is for logs, never for clients.

    `kind` says what the failure means for the caller; services decide what the client hears.
    """

    kind = "failed"


class GoneFromStore(StorageError):
    """The multipart upload or the object asked for no longer exists in the store."""

    kind = "gone"


class PartsRejected(StorageError):
    """The store refused the part list at completion; sending the right parts fixes it."""

    kind = "fixable"


class UploadRejected(StorageError):
    """The store refused to complete the upload as planned; it can never complete."""

    kind = "uncompletable"


class StorageMisconfigured(StorageError):
    """The store refused our own credentials, bucket or signature: an operator must act."""

    kind = "configuration"


class StorageBusy(StorageError):
    """The store is slow, overloaded or unreachable for now; the same call may work later."""

    kind = "transient"


class StorageFull(StorageError):
    """The store has no room (a full disk or quota); nothing partial was kept."""

    kind = "full"


def os_storage_error(action: str, exc: OSError) -> StorageError:
    """A failed file-system call as a storage error; a full disk becomes StorageFull."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageFull(f"{action}: {exc}")
    return StorageError(f"{action}: {exc}")


@dataclass(frozen=True, slots=True)
class MultipartUpload:
    """Identifies one multipart upload in a store."""

    file_id: str
    key: str
    upload_id: str
    # "SHA256" or "CRC32" when every part carries a client checksum the store must verify.
    checksum_algorithm: str = ""


@dataclass(frozen=True, slots=True)
class PartToSign:
    """One part a URL is signed for: its exact planned size, and its checksum if any."""

    part_number: int
    size: int
    # Base64 digest when the upload has a checksum algorithm.
    checksum: str = ""
    # Where the part's bytes start in the object (a store that writes them in place needs it).
    offset: int = 0


@dataclass(frozen=True, slots=True)
class PartTarget:
    part_number: int
    url: str
    # Headers the PUT must carry because they are signed into the URL (part checksums).
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StoredPart:
    part_number: int
    size: int
    etag: str
    # When the store received the part; None where a store does not say.
    last_modified: datetime | None = None
    # The part's checksum (base64) when the upload uses a checksum algorithm and the store says.
    checksum: str = ""


@dataclass(frozen=True, slots=True)
class CompletedPart:
    part_number: int
    etag: str
    checksum: str = ""


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    size: int
    etag: str
    content_type: str
    # Whole-object checksum the store computed (S3: composite "<base64>-<parts>"), if any.
    checksum: str = ""


# Checksum algorithms S3 verifies per part, with their digest sizes in bytes.
CHECKSUM_DIGEST_SIZES = {"SHA256": 32, "CRC32": 4}


def checksum_header(algorithm: str) -> str:
    return f"x-amz-checksum-{algorithm.lower()}"


def normalize_etag(etag: str) -> str:
    """ETags travel quoted in headers and unquoted in JSON; compare them bare."""
    return etag.strip().strip('"').lower()


class StorageHandler(Protocol):
    # The longest one complete may take in this store: a completion claim older than this was
    # left by a process that died, and another request may complete the upload.
    completion_timeout: timedelta

    def initiate(
        self, *, file_id: str, key: str, content_type: str, checksum_algorithm: str = ""
    ) -> MultipartUpload: ...

    def presign_parts(
        self, upload: MultipartUpload, parts: Sequence[PartToSign], *, expires_in: int
    ) -> list[PartTarget]:
        """URLs that accept exactly each part's planned size (and checksum): nothing else."""
        ...

    def list_parts(self, upload: MultipartUpload) -> list[StoredPart]: ...

    def complete(
        self, upload: MultipartUpload, parts: Sequence[CompletedPart], *, content_type: str
    ) -> ObjectInfo: ...

    def abort(self, upload: MultipartUpload) -> None: ...

    def head(self, key: str) -> ObjectInfo: ...

    def read_head(self, key: str, length: int) -> bytes: ...

    def delete(self, key: str) -> None: ...

    def download_url(self, key: str, *, file_name: str, expires_in: int) -> str: ...

    def list_uploads(self, *, initiated_before: datetime) -> Iterator[MultipartUpload]:
        """Unfinished multipart uploads in the store started before the given time."""
        ...

    def remove_set_aside(self) -> None:
        """Remove what completions left for later removal (nothing in S3); cleanup calls it."""
        ...
