"""Local-disk handler: the Django app itself plays S3's part endpoint.

Part URLs point at `local-part` with a signed, expiring token bound to (file id, upload id,
part number). Parts are streamed to files named `<part>.<md5>` under UPLOADS_LOCAL_PARTS_DIR,
so one directory listing yields number, size and ETag of every part, like S3's ListParts.
Single-machine by nature: parts live on this machine's disk.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
import shutil
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Protocol

from django.conf import settings
from django.core import signing
from django.core.files import File
from django.core.files.storage import Storage
from django.urls import reverse

from uploads.errors import AccessDenied, ChecksumMismatch, InvalidInput

from .base import (
    MIB,
    CompletedPart,
    GoneFromStore,
    MultipartUpload,
    ObjectInfo,
    PartTarget,
    PartToSign,
    StorageError,
    StoredPart,
    checksum_header,
    os_storage_error,
)

PART_SALT = "uploads.local.part"
DOWNLOAD_SALT = "uploads.local.download"
# Large enough to keep syscalls few, small enough that memory stays flat for 5 GiB parts.
CHUNK_SIZE = 1 * MIB
_PART_FILE = re.compile(r"^(\d{5})\.([0-9a-f]{32})$")
_UPLOAD_ID = re.compile(r"^[0-9a-f]{32}$")


class Readable(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


@dataclass(frozen=True, slots=True)
class PartGrant:
    """What a verified part token allows: one PUT of one part of one upload."""

    file_id: str
    upload_id: str
    part_number: int
    checksum: str = ""


def _sign(payload: dict[str, object], salt: str) -> str:
    return signing.dumps(payload, salt=salt, compress=False)


def _unsign(token: str, salt: str) -> dict[str, object]:
    try:
        payload = signing.loads(token, salt=salt)
    except signing.BadSignature as exc:
        raise AccessDenied("This upload link is invalid.") from exc
    expires = payload.get("e")
    if not isinstance(payload, dict) or not isinstance(expires, int | float):
        raise AccessDenied("This upload link is invalid.")
    if expires < time.time():
        raise AccessDenied("This link has expired; ask for a new one.")
    return payload


def verify_part_token(token: str) -> PartGrant:
    payload = _unsign(token, PART_SALT)
    try:
        return PartGrant(
            file_id=str(payload["f"]),
            upload_id=str(payload["u"]),
            part_number=int(payload["p"]),  # type: ignore[call-overload]
            checksum=str(payload.get("c", "")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise AccessDenied("This upload link is invalid.") from exc


def verify_download_token(token: str) -> tuple[str, str]:
    payload = _unsign(token, DOWNLOAD_SALT)
    return str(payload["k"]), str(payload["n"])


class _Checksum:
    """An incremental SHA-256 or CRC32 of a part, in S3's base64 form."""

    def __init__(self, algorithm: str) -> None:
        self.algorithm = algorithm
        self._sha = hashlib.sha256() if algorithm == "SHA256" else None
        self._crc = 0

    def update(self, chunk: bytes) -> None:
        if self._sha is not None:
            self._sha.update(chunk)
        elif self.algorithm == "CRC32":
            self._crc = zlib.crc32(chunk, self._crc)

    def base64(self) -> str:
        digest = self._sha.digest() if self._sha is not None else self._crc.to_bytes(4, "big")
        return base64.b64encode(digest).decode()


class _ConcatenatedParts(File):  # type: ignore[type-arg]
    """Reads part files one after another as a single stream, never holding more than a chunk."""

    DEFAULT_CHUNK_SIZE = CHUNK_SIZE

    def __init__(self, paths: Sequence[Path], name: str) -> None:
        self._paths = list(paths)
        self._index = 0
        self._current: IO[bytes] | None = None
        super().__init__(None, name=name)
        self.size = sum(p.stat().st_size for p in self._paths)

    def read(self, size: int = -1) -> bytes:  # type: ignore[override]
        buffer = bytearray()
        while size < 0 or len(buffer) < size:
            if self._current is None:
                if self._index >= len(self._paths):
                    break
                self._current = open(self._paths[self._index], "rb")  # noqa: SIM115
                self._index += 1
            chunk = self._current.read(CHUNK_SIZE if size < 0 else size - len(buffer))
            if not chunk:
                self._current.close()
                self._current = None
                continue
            buffer += chunk
        return bytes(buffer)

    def chunks(self, chunk_size: int | None = None):  # type: ignore[no-untyped-def]
        while chunk := self.read(chunk_size or self.DEFAULT_CHUNK_SIZE):
            yield chunk

    def close(self) -> None:
        if self._current is not None:
            self._current.close()
            self._current = None

    def __bool__(self) -> bool:
        return True


class LocalStorageHandler:
    name = "local"

    def __init__(self, storage: Storage, parts_dir: Path | None = None) -> None:
        self.storage = storage
        self.parts_dir = Path(parts_dir or settings.UPLOADS_LOCAL_PARTS_DIR)

    def _upload_dir(self, upload_id: str) -> Path:
        # The id is ours (random hex), but it is read back from the database: never trust a path.
        if not _UPLOAD_ID.match(upload_id):
            raise GoneFromStore(f"not a local upload id: {upload_id!r}")
        return self.parts_dir / upload_id

    def initiate(
        self, *, file_id: str, key: str, content_type: str, checksum_algorithm: str = ""
    ) -> MultipartUpload:
        upload_id = secrets.token_hex(16)
        try:
            self._upload_dir(upload_id).mkdir(parents=True)
        except OSError as exc:
            raise os_storage_error("cannot create part directory", exc) from exc
        return MultipartUpload(file_id, key, upload_id, checksum_algorithm)

    def presign_parts(
        self, upload: MultipartUpload, parts: Sequence[PartToSign], *, expires_in: int
    ) -> list[PartTarget]:
        # The part endpoint checks each body's length against the record's plan, as S3 checks
        # the signed content-length.
        expires = int(time.time()) + expires_in
        targets = []
        for part in parts:
            claims: dict[str, object] = {
                "f": upload.file_id,
                "u": upload.upload_id,
                "p": part.part_number,
                "e": expires,
            }
            headers = {}
            if upload.checksum_algorithm:
                # Bound into the token, as S3 binds it into the signature.
                claims["c"] = part.checksum
                headers = {checksum_header(upload.checksum_algorithm): part.checksum}
            url = reverse("local-part", args=[_sign(claims, PART_SALT)])
            targets.append(PartTarget(part.part_number, url, headers))
        return targets

    def receive_part(
        self,
        upload: MultipartUpload,
        part_number: int,
        body: Readable,
        *,
        length: int,
        checksum: str = "",
    ) -> str:
        """Stream one part body of `length` bytes to disk and return its ETag (its MD5).

        With a checksum algorithm on the upload, the body must match `checksum` or nothing
        is kept, as S3 refuses such a part.
        """
        directory = self._upload_dir(upload.upload_id)
        if not directory.is_dir():
            raise GoneFromStore(f"upload {upload.upload_id} has no part directory")
        temp = directory / f".{part_number:05d}.{secrets.token_hex(8)}.tmp"
        digest = hashlib.md5(usedforsecurity=False)
        verifier = _Checksum(upload.checksum_algorithm)
        received = 0
        try:
            with open(temp, "wb") as out:
                while received < length:
                    chunk = body.read(min(CHUNK_SIZE, length - received))
                    if not chunk:
                        break
                    received += len(chunk)
                    digest.update(chunk)
                    verifier.update(chunk)
                    out.write(chunk)
            if received < length:
                # The client went away mid-body. As on S3, a cut-short PUT stores nothing: a
                # short part kept here would be listed for resume and then fail the upload.
                raise InvalidInput(
                    f"Part {part_number} ended after {received} of {length} bytes.",
                    {"field": "body"},
                )
            if upload.checksum_algorithm and verifier.base64() != checksum:
                raise ChecksumMismatch(
                    f"Part {part_number} does not match its {upload.checksum_algorithm} "
                    "checksum; nothing was stored.",
                    {"part_number": part_number},
                )
            etag = digest.hexdigest()
            final = directory / f"{part_number:05d}.{etag}"
            os.replace(temp, final)
        except FileNotFoundError as exc:
            temp.unlink(missing_ok=True)
            # Aborted or completed while the body was still arriving: the directory is gone.
            raise GoneFromStore(f"upload {upload.upload_id} ended during the PUT") from exc
        except OSError as exc:
            # A full disk mid-body: as with a cut-short PUT, nothing of this part is kept and
            # the parts already stored stay, so the upload resumes once there is room.
            temp.unlink(missing_ok=True)
            raise os_storage_error(f"cannot store part {part_number}", exc) from exc
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        # A re-sent part replaces the earlier one, as on S3.
        for old in directory.glob(f"{part_number:05d}.*"):
            if old != final:
                old.unlink(missing_ok=True)
        return etag

    def _part_files(self, upload: MultipartUpload) -> dict[int, tuple[Path, StoredPart]]:
        directory = self._upload_dir(upload.upload_id)
        found: dict[int, tuple[Path, StoredPart]] = {}
        try:
            entries = list(os.scandir(directory))
        except FileNotFoundError as exc:
            raise GoneFromStore(f"upload {upload.upload_id} has no part directory") from exc
        for entry in entries:
            match = _PART_FILE.match(entry.name)
            if match:
                number = int(match.group(1))
                try:
                    stat = entry.stat()
                except FileNotFoundError:
                    continue  # removed since the listing: by an abort, or replaced by a re-send
                found[number] = (
                    Path(entry.path),
                    StoredPart(
                        number,
                        stat.st_size,
                        match.group(2),
                        datetime.fromtimestamp(stat.st_mtime, tz=UTC),
                    ),
                )
        return found

    def list_parts(self, upload: MultipartUpload) -> list[StoredPart]:
        return [
            part
            for _, part in sorted(self._part_files(upload).values(), key=lambda x: x[1].part_number)
        ]

    def complete(
        self, upload: MultipartUpload, parts: Sequence[CompletedPart], *, content_type: str
    ) -> ObjectInfo:
        stored = self._part_files(upload)
        try:
            paths = [stored[p.part_number][0] for p in parts]
        except KeyError as exc:
            raise GoneFromStore(f"part {exc.args[0]} is missing") from exc
        try:
            combined = _ConcatenatedParts(paths, name=upload.key)
        except FileNotFoundError as exc:
            # Aborted (cleanup, the owner) between listing the parts and combining them.
            raise GoneFromStore(f"a part of {upload.upload_id} vanished: {exc}") from exc
        if self.storage.exists(upload.key):
            # An earlier completion stored the object (and crashed before recording it):
            # report the upload as gone, as S3 would, so the caller finds the object.
            combined.close()
            raise GoneFromStore(f"{upload.key} is already stored")
        try:
            saved_name = self.storage.save(upload.key, combined)
        except OSError as exc:
            # Storage.save leaves what it wrote so far: no truncated object may survive.
            if self.storage.exists(upload.key):
                self.storage.delete(upload.key)
            if isinstance(exc, FileNotFoundError):
                raise GoneFromStore(f"a part of {upload.upload_id} vanished: {exc}") from exc
            raise os_storage_error(f"cannot write {upload.key}", exc) from exc
        finally:
            combined.close()
        if saved_name != upload.key:
            self.storage.delete(saved_name)
            raise StorageError(f"{upload.key} already exists")
        shutil.rmtree(self._upload_dir(upload.upload_id), ignore_errors=True)
        # Same shape as S3's multipart ETag: MD5 of the part MD5s, dash, part count.
        joined = b"".join(bytes.fromhex(stored[p.part_number][1].etag) for p in parts)
        etag = f"{hashlib.md5(joined, usedforsecurity=False).hexdigest()}-{len(parts)}"
        return ObjectInfo(size=combined.size, etag=etag, content_type=content_type)

    def abort(self, upload: MultipartUpload) -> None:
        try:
            shutil.rmtree(self._upload_dir(upload.upload_id))
        except FileNotFoundError:
            pass  # already gone: aborting is idempotent
        except OSError as exc:
            raise StorageError(f"cannot remove parts of {upload.upload_id}: {exc}") from exc

    def head(self, key: str) -> ObjectInfo:
        try:
            size = self.storage.size(key)
        except OSError as exc:
            raise GoneFromStore(f"{key}: {exc}") from exc
        return ObjectInfo(size=size, etag="", content_type="")

    def read_head(self, key: str, length: int) -> bytes:
        try:
            with self.storage.open(key, "rb") as stored:
                data: bytes = stored.read(length)
        except OSError as exc:
            raise StorageError(f"cannot read {key}: {exc}") from exc
        return data

    def open(self, key: str) -> IO[bytes]:
        return self.storage.open(key, "rb")  # type: ignore[no-any-return]

    def delete(self, key: str) -> None:
        try:
            self.storage.delete(key)
        except OSError as exc:
            raise StorageError(f"cannot delete {key}: {exc}") from exc

    def list_uploads(self, *, initiated_before: datetime) -> Iterator[MultipartUpload]:
        cutoff = initiated_before.timestamp()
        try:
            entries = list(os.scandir(self.parts_dir))
        except FileNotFoundError:
            return
        for entry in entries:
            if _UPLOAD_ID.match(entry.name) and entry.is_dir() and entry.stat().st_mtime < cutoff:
                yield MultipartUpload(file_id="", key="", upload_id=entry.name)

    def download_url(self, key: str, *, file_name: str, expires_in: int) -> str:
        token = _sign({"k": key, "n": file_name, "e": int(time.time()) + expires_in}, DOWNLOAD_SALT)
        return reverse("local-download", args=[token])
