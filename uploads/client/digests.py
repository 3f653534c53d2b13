"""What ties the bytes on the store to a local file: part checksums, part MD5s, and the whole-file
forms S3 derives from them.

Every digest is computed from disk, one chunk at a time: a 5 GiB part costs 1 MiB of memory.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .models import StoredPart
from .transfer import Cancelled, PartSpec, read_chunks

# The one algorithm our clients send: S3 and the local store both verify SHA-256 per part.
SHA256 = "SHA256"

Hash = Any  # a hashlib object: update() and digest()


def read_part(
    path: Path, spec: PartSpec, *hashes: Hash, stop: threading.Event | None = None
) -> None:
    """Feed the part's bytes, read once from disk, to every hash given."""
    for chunk in read_chunks(path, spec, stop):
        for digest in hashes:
            digest.update(chunk)


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def md5() -> Hash:
    return hashlib.md5(usedforsecurity=False)


def bare_etag(etag: str) -> str:
    """ETags travel quoted in headers and unquoted in JSON; compare them bare."""
    return etag.strip().strip('"').lower()


def stored_part_matches(path: Path, spec: PartSpec, part: StoredPart, algorithm: str) -> bool:
    """Whether the store's part holds exactly the bytes of this part of the local file.

    The part's checksum when the store reports one; otherwise its ETag, which S3 and the local
    store make the MD5 of the part. A part neither can vouch for (an ETag that is not an MD5,
    as with SSE-KMS) does not match: sending it again is the only safe choice.
    """
    if part.size != spec.size:
        return False
    if part.checksum and algorithm == SHA256:
        sha = hashlib.sha256()
        read_part(path, spec, sha)
        return b64(sha.digest()) == part.checksum
    etag = bare_etag(part.etag)
    if len(etag) != 32:
        return False
    digest = md5()
    read_part(path, spec, digest)
    return bool(digest.hexdigest() == etag)


def composite_checksum(path: Path, specs: Sequence[PartSpec]) -> str:
    """S3's checksum of a multipart object: base64 SHA-256 of the parts' SHA-256s, `-<parts>`."""
    return _of_parts(path, specs, hashlib.sha256, lambda d: b64(d))


def multipart_etag(path: Path, specs: Sequence[PartSpec]) -> str:
    """S3's ETag of a multipart object: the MD5 of the parts' MD5s, `-<parts>`."""
    return _of_parts(path, specs, md5, lambda d: d.hex())


def _of_parts(
    path: Path, specs: Sequence[PartSpec], factory: Callable[[], Hash], text: Callable[[bytes], str]
) -> str:
    outer = factory()
    for spec in specs:
        inner = factory()
        read_part(path, spec, inner)
        outer.update(inner.digest())
    return f"{text(outer.digest())}-{len(specs)}"


class Checksums:
    """Part SHA-256s, computed by one background thread in send order, ahead of the senders.

    The thread stays at most `ahead` parts in front of the last part a sender reached, so the
    part about to be sent was read moments ago (still in the page cache) and a failed upload
    has not read the whole file. Only digests are kept: memory does not grow with the parts.
    """

    def __init__(
        self, path: Path, specs: Sequence[PartSpec], *, ahead: int, stop: threading.Event
    ) -> None:
        self._path = path
        self._specs = list(specs)
        self._position = {spec.number: index for index, spec in enumerate(self._specs)}
        self._ahead = max(1, ahead)
        self._stop = stop
        self._front = 0  # index of the furthest part a sender reached
        self._digests: dict[int, str] = {}
        self._error: BaseException | None = None
        # Called by the hashing thread after each part (the signer signs what is ready).
        self.on_hashed: Callable[[], None] | None = None
        self._changed = threading.Condition()
        self._thread = threading.Thread(
            target=self._run, name="direct-uploads-checksums", daemon=True
        )
        self._thread.start()

    def reached(self, number: int) -> None:
        """A sender is at this part: move the hashing window along."""
        with self._changed:
            index = self._position.get(number, 0)
            if index > self._front:
                self._front = index
                self._changed.notify_all()

    def ready(self, number: int) -> bool:
        with self._changed:
            return number in self._digests

    def get(self, number: int) -> str:
        """The part's checksum, waiting for it if it is not computed yet."""
        self.reached(number)
        with self._changed:
            while number not in self._digests:
                if self._error is not None:
                    raise self._error
                if self._stop.is_set():
                    raise Cancelled()
                self._changed.wait(0.5)
            return self._digests[number]

    def _run(self) -> None:
        for index, spec in enumerate(self._specs):
            with self._changed:
                while index > self._front + self._ahead and not self._stop.is_set():
                    self._changed.wait(0.5)
            if self._stop.is_set():
                return
            sha = hashlib.sha256()
            try:
                read_part(self._path, spec, sha, stop=self._stop)
                with self._changed:
                    self._digests[spec.number] = b64(sha.digest())
                    self._changed.notify_all()
                if self.on_hashed is not None:
                    self.on_hashed()
            except Cancelled:
                return
            except BaseException as exc:
                with self._changed:
                    self._error = exc
                    self._changed.notify_all()
                return
