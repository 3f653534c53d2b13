"""The part engine: parallel part PUTs read from disk, with lazy signing, retries, re-signing.

Memory stays flat whatever the file or part size: a part is read from disk one chunk at a time
while it is sent (seek to its offset, read its bytes only), so at most `concurrency` chunks are
held at once, and a retry reads the part again from disk instead of keeping it in memory.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import httpx

from .errors import ETAG_MISSING, FILE_CHANGED, NETWORK_ERROR, ClientError
from .models import PartURL
from .retry import RETRY_STATUSES, RetryPolicy, retry_after

KIB = 1024
MIB = 1024 * KIB
# Read and send this much at a time: few syscalls, and memory stays flat for 5 GiB parts.
CHUNK_SIZE = 1 * MIB
# 5 MiB is the minimum part size allowed by S3, for every part but the last.
S3_MIN_PART_SIZE = 5 * MIB
# S3 numbers parts 1..10,000.
S3_MAX_PARTS = 10_000
# Part URLs signed per call: initiate signs the first batch, `…/presign` the next ones as the
# workers reach them, so a 10,000-part upload never holds URLs that expire before their turn.
SIGN_BATCH = 100
# The server refuses more per `…/presign` call.
MAX_SIGN_BATCH = 1000
# A part whose fresh URL is refused again and again has a problem signing cannot fix (clock skew).
MAX_RESIGNS = 3
# The store refused the body as not matching its signed checksum (the local store's code, and
# S3's): bytes altered on the way are sent again, read afresh from disk.
CORRUPTED_CODES = frozenset({"checksum_mismatch", "BadDigest"})

ProgressCallback = Callable[[int, int], None]
# (part numbers, their checksums or None) → (seconds the URLs last, URLs)
PresignFunction = Callable[[list[int], dict[int, str] | None], tuple[int, list[PartURL]]]


class PartChecksums(Protocol):
    """Checksums computed ahead of the senders (digests.Checksums)."""

    def reached(self, number: int) -> None: ...

    def ready(self, number: int) -> bool: ...

    def get(self, number: int) -> str: ...


def auto_part_size(file_size: int) -> int | None:
    """The part size to ask for: None (the server's default) while 5 MiB parts fit in 10,000
    parts, else the smallest whole number of MiB that fits the file in 10,000 parts."""
    needed = -(-file_size // S3_MAX_PARTS)
    if needed <= S3_MIN_PART_SIZE:
        return None
    return -(-needed // MIB) * MIB


@dataclass(frozen=True, slots=True)
class PartSpec:
    number: int
    offset: int
    size: int


def part_specs(file_size: int, part_size: int, total_parts: int) -> list[PartSpec]:
    """Every part of the file: `part_size` long but the last (an empty file has one empty part)."""
    return [
        PartSpec(n, (n - 1) * part_size, min(part_size, file_size - (n - 1) * part_size))
        for n in range(1, total_parts + 1)
    ]


class Cancelled(Exception):
    """Another part failed or the caller stopped the upload: this part stops sending."""


def read_chunks(path: Path, spec: PartSpec, stop: threading.Event | None = None) -> Iterator[bytes]:
    """The part's bytes from disk, a chunk at a time: seek to its offset, read its bytes only."""
    remaining = spec.size
    with open(path, "rb") as handle:
        handle.seek(spec.offset)
        while remaining:
            if stop is not None and stop.is_set():
                raise Cancelled()
            chunk = handle.read(min(CHUNK_SIZE, remaining))
            if not chunk:
                raise ClientError(
                    0, FILE_CHANGED, f"{path} got shorter while it was being uploaded."
                )
            remaining -= len(chunk)
            yield chunk


class Progress:
    """Adds up bytes sent across parts and reports them (serialised) to the caller's callback.

    A part that fails midway takes its bytes back, so the figure can step back on a retry."""

    def __init__(self, total: int, done: int, callback: ProgressCallback | None) -> None:
        self.total = total
        self._done = done
        self._in_flight: dict[int, int] = {}
        self._sent = 0
        self._callback = callback
        self._lock = threading.Lock()

    @property
    def bytes_sent(self) -> int:
        """Bytes of parts this run completed (retries not counted twice)."""
        return self._sent

    def report(self) -> None:
        with self._lock:
            self._report()

    def add(self, part: int, size: int) -> None:
        with self._lock:
            self._in_flight[part] = self._in_flight.get(part, 0) + size
            self._report()

    def reset(self, part: int) -> None:
        with self._lock:
            self._in_flight.pop(part, None)
            self._report()

    def take_back(self, size: int) -> None:
        """Bytes counted as done that must be sent again."""
        with self._lock:
            self._done -= size
            self._sent -= size
            self._report()

    def finish(self, part: int, size: int) -> None:
        with self._lock:
            self._in_flight.pop(part, None)
            self._done += size
            self._sent += size
            self._report()

    def _report(self) -> None:
        if self._callback is not None:
            self._callback(self._done + sum(self._in_flight.values()), self.total)


@dataclass(slots=True)
class _Signed:
    target: PartURL
    fresh_until: float


class Signer:
    """Hands out part URLs: signs lazily, in batches just ahead of the workers, and again when a
    URL is about to expire or the store refused it (403).

    With `checksums`, a part is signed only once its checksum is known (it is signed into the
    URL): a batch is the part asked for and the parts after it that are already hashed.
    """

    def __init__(
        self,
        presign: PresignFunction,
        order: Sequence[int],
        *,
        initial: Iterable[PartURL] = (),
        expires_in: int = 0,
        batch: int = SIGN_BATCH,
        checksums: PartChecksums | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._presign = presign
        self._checksums = checksums
        self._order = list(order)
        # Parts before the cursor have been signed once; batches take the next ones in order.
        self._cursor = 0
        self._done: set[int] = set()
        self._batch = max(1, min(batch, MAX_SIGN_BATCH))
        self._clock = clock
        self._urls: dict[int, _Signed] = {}
        self._lock = threading.Lock()
        self.sign_calls = 0
        self._store(expires_in, initial)

    def url(self, part: int) -> PartURL:
        if self._checksums is not None:
            self._checksums.reached(part)
        with self._lock:
            signed = self._urls.get(part)
            if signed is None or signed.fresh_until <= self._clock():
                # Holding the lock across the call is deliberate: the other workers need the same
                # batch, and one call signing it for all beats N calls signing it N times.
                self._sign_from(part)
                signed = self._urls[part]
            return signed.target

    def invalidate(self, target: PartURL) -> None:
        """Forget a refused URL, unless another worker already replaced it."""
        with self._lock:
            signed = self._urls.get(target.part_number)
            if signed is not None and signed.target.url == target.url:
                del self._urls[target.part_number]

    def done(self, part: int) -> None:
        with self._lock:
            self._done.add(part)
            self._urls.pop(part, None)

    def prefetch(self, minimum: int) -> None:
        """Sign the parts that can be signed ahead of the workers (hashed, with checksums) before
        a worker asks, once there are `minimum` of them or they are all that is left."""
        # Never wait for the lock: its holder may be a worker waiting for the very checksum the
        # caller (the hashing thread) is about to compute, and it signs what is ready anyway.
        if not self._lock.acquire(blocking=False):
            return
        try:
            ready, end = self._ready(self._batch)
            if not ready or (len(ready) < minimum and end < len(self._order)):
                return
            self._cursor = end
            # On failure, a worker that needs one of these signs it again, and sees the error.
            with contextlib.suppress(ClientError):
                self._sign(ready)
        finally:
            self._lock.release()

    def _sign_from(self, part: int) -> None:
        # The part asked for, then the next unsigned ones in upload order, whichever worker
        # asks first: workers take parts in order, so the batch is what they need next.
        if self._checksums is not None:
            self._checksums.get(part)  # waits for this one; the rest is what is ready
        more, self._cursor = self._ready(self._batch - 1, skip=part)
        self._sign([part, *more])
        if part not in self._urls:
            raise ClientError(0, "presign_failed", f"The server signed no URL for part {part}.")

    def _ready(self, limit: int, skip: int = 0) -> tuple[list[int], int]:
        """Up to `limit` unsigned parts from the cursor on that can be signed now, and where
        that run ends: with checksums, parts are hashed in order, so it ends at the first part
        not hashed yet."""
        numbers: list[int] = []
        index = self._cursor
        while index < len(self._order) and len(numbers) < limit:
            number = self._order[index]
            hashed = self._checksums is None or self._checksums.ready(number)
            if number != skip and not hashed:
                break
            index += 1
            if number != skip and number not in self._done and number not in self._urls:
                numbers.append(number)
        return numbers, index

    def _sign(self, numbers: list[int]) -> None:
        hashes = self._checksums
        checksums = {n: hashes.get(n) for n in numbers} if hashes is not None else None
        expires_in, targets = self._presign(numbers, checksums)
        self.sign_calls += 1
        self._store(expires_in, targets)

    def _store(self, expires_in: int, targets: Iterable[PartURL]) -> None:
        # Renew a little before the server's deadline: a URL must still be valid when the PUT
        # reaches the store, and the two clocks need not agree to the second.
        margin = min(60.0, expires_in / 10)
        fresh_until = self._clock() + expires_in - margin
        for target in targets:
            self._urls[target.part_number] = _Signed(target, fresh_until)


class PartSender:
    """Sends one part: PUT with retries (network, 5xx, 429) and re-signing (403)."""

    def __init__(
        self,
        http: httpx.Client,
        path: Path,
        signer: Signer,
        progress: Progress,
        retry: RetryPolicy,
        stop: threading.Event,
    ) -> None:
        self.http = http
        self.path = path
        self.signer = signer
        self.progress = progress
        self.retry = retry
        self.stop = stop

    def send(self, spec: PartSpec) -> str:
        """PUT the part; return the ETag the store answered with."""
        failures = resigns = 0
        while True:
            if self.stop.is_set():
                raise Cancelled()
            target = self.signer.url(spec.number)
            delay: float | None = None
            try:
                response = self.http.put(
                    target.url,
                    content=self._body(spec),
                    # Set explicitly, so httpx frames the streamed body with Content-Length:
                    # S3 refuses chunked part uploads.
                    headers={**target.headers, "Content-Length": str(spec.size)},
                )
            except httpx.TransportError as exc:
                error = ClientError(0, NETWORK_ERROR, f"part {spec.number}: {exc!r}")
            else:
                if response.status_code == 200:
                    etag: str | None = response.headers.get("ETag")
                    if not etag:
                        raise ClientError(
                            200, ETAG_MISSING, f"The store sent no ETag for part {spec.number}."
                        )
                    self.progress.finish(spec.number, spec.size)
                    self.signer.done(spec.number)
                    return etag
                error = ClientError.from_response(response, f"part {spec.number}")
                if response.status_code == 403 and resigns < MAX_RESIGNS:
                    # An expired (or, locally, revoked) URL: sign this part again, at once.
                    resigns += 1
                    self.progress.reset(spec.number)
                    self.signer.invalidate(target)
                    continue
                corrupted = error.code in CORRUPTED_CODES
                if response.status_code not in RETRY_STATUSES and not corrupted:
                    raise error
                delay = retry_after(response)
            self.progress.reset(spec.number)
            failures += 1
            if failures >= self.retry.attempts:
                raise error
            # Waiting on the stop event, not sleeping: a failure elsewhere ends the wait at once.
            if self.stop.wait(self.retry.delay(failures - 1, delay)):
                raise Cancelled()

    def _body(self, spec: PartSpec) -> Iterator[bytes]:
        for chunk in read_chunks(self.path, spec, self.stop):
            yield chunk
            self.progress.add(spec.number, len(chunk))


def send_parts(sender: PartSender, specs: Sequence[PartSpec], concurrency: int) -> dict[int, str]:
    """Send `specs` with `concurrency` workers; return part number → ETag, or raise the first
    failure once every worker has stopped."""
    etags: dict[int, str] = {}
    if not specs:
        return etags
    executor = ThreadPoolExecutor(
        max_workers=min(concurrency, len(specs)), thread_name_prefix="direct-uploads-part"
    )
    futures: dict[Future[str], int] = {}
    # The failure that stopped the others; the parts it cancelled may finish before it does.
    first_error: list[BaseException] = []
    lock = threading.Lock()

    def send(spec: PartSpec) -> str:
        try:
            return sender.send(spec)
        except Cancelled:
            raise
        except BaseException as exc:
            with lock:
                if not first_error:
                    first_error.append(exc)
            # Stop here, in the worker: waiting for the main thread to notice would let this
            # worker start the next queued part first.
            sender.stop.set()
            raise

    try:
        # Futures hold only a PartSpec until a worker takes them: no bytes are read ahead.
        futures = {executor.submit(send, spec): spec.number for spec in specs}
        for future in as_completed(futures):
            error = future.exception()
            if error is not None:
                raise first_error[0] if first_error else error
            etags[futures[future]] = future.result()
    except BaseException:
        # The first failure (or Ctrl-C) stops the rest: queued parts never start and parts in
        # flight end at their next chunk; what the store holds is what a resume reuses.
        sender.stop.set()
        raise
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
    return etags
