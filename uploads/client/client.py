"""`Client`: the REST API of Direct Uploads, typed, with sign-in, token refresh and retries."""

from __future__ import annotations

import builtins
import os
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx

from .connection import PartTransport
from .digests import (
    SHA256,
    Checksums,
    bare_etag,
    composite_checksum,
    md5,
    multipart_etag,
    read_part,
    stored_part_matches,
)
from .errors import FILE_CHANGED, NETWORK_ERROR, NOT_VERIFIABLE, ClientError
from .models import PartURL, RemoteFile, UploadParts, UploadResult, Verification
from .retry import RETRY_STATUSES, RetryPolicy, retry_after
from .state import ResumeState, resume_key
from .transfer import (
    CHUNK_SIZE,
    MAX_SIGN_BATCH,
    SIGN_BATCH,
    PartSender,
    PartSpec,
    Progress,
    ProgressCallback,
    Signer,
    auto_part_size,
    part_specs,
    send_parts,
)

API_PREFIX = "/v1"
USER_AGENT = "direct-uploads-client/0.1"
# Upload states in which parts may still be sent (the server's FileRecord.OPEN_STATES).
OPEN_STATES = frozenset({"pending", "uploading"})
# Answers meaning the server did nothing and asks to come back later.
_REFUSED_STATUSES = frozenset({429, 503})
# The upload is gone for good after these: a resume must start over, not retry.
_FINAL_CODES = frozenset({"not_found", "invalid_state", "verification_failed"})
# Complete's answer when the store's parts disagree with the list but the upload stays open:
# `extra.parts` names the parts to send again.
PARTS_MISMATCH = "parts_mismatch"
# Rounds of re-sending named parts before complete's refusal is final.
MAX_REPAIRS = 3
# How far the part hashing may run ahead of the senders, in bytes (and at most a sign batch).
HASH_AHEAD_BYTES = 256 * 1024 * 1024


def normalize_server(server: str) -> str:
    """`https://host[:port]` from what people type: a trailing `/` or `/v1` is dropped."""
    server = server.strip().rstrip("/")
    if server.endswith(API_PREFIX):
        server = server[: -len(API_PREFIX)]
    if "://" not in server:
        server = f"http://{server}"
    return server


def _path(template: str, file_id: str) -> str:
    # Quote the id: whatever a caller passes stays one path segment.
    return template.format(id=quote(str(file_id), safe=""))


@dataclass(slots=True)
class _Plan:
    """The upload being sent: new (initiated now) or resumed (what the store already holds)."""

    file_id: str
    part_size: int
    total_parts: int
    resumed: bool
    # "SHA256": every part's checksum is signed into its URL; "": none (an older upload).
    checksum_algorithm: str = ""
    stored: dict[int, str] = field(default_factory=dict)
    stored_bytes: int = 0
    # Parts the store held that are not this file's (they are sent again).
    replaced: int = 0
    urls: list[PartURL] = field(default_factory=list)
    expires_in: int = 0


class Client:
    """A client of one Direct Uploads server.

    Authenticate with an access `token` (and optionally its `refresh_token`), or a `username` and
    `password`: the client then signs in on first use and renews the access token whenever the
    server says it is no longer valid. Use it as a context manager, or call `close()`.
    """

    def __init__(
        self,
        server: str,
        *,
        token: str | None = None,
        refresh_token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        state_path: Path | str | None = None,
        transport: httpx.BaseTransport | None = None,
        part_transport: httpx.BaseTransport | None = None,
    ) -> None:
        if (username is None) != (password is None):
            raise ValueError("Give both username and password, or neither.")
        self.server = normalize_server(server)
        self.retry = retry or RetryPolicy()
        self.state = ResumeState(state_path)
        self._access = token
        self._refresh = refresh_token
        self._username = username
        self._password = password
        self._auth_lock = threading.Lock()
        timeouts = httpx.Timeout(timeout, connect=min(timeout, 15.0))
        self._api = httpx.Client(
            base_url=self.server + API_PREFIX,
            transport=transport,
            timeout=timeouts,
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
        )
        # Part PUTs and downloads go to signed URLs (S3, or this server's /local/ links): their
        # own connection pool, and never the API's Authorization header. Connections are not
        # capped here because the worker pool already caps them at `concurrency`.
        self._http = httpx.Client(
            transport=part_transport
            or PartTransport(
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=64)
            ),
            timeout=timeouts,
            headers={"User-Agent": USER_AGENT},
        )

    # --- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        self._api.close()
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- files -----------------------------------------------------------------------------

    def get(self, file_id: str) -> RemoteFile:
        response = self._request("GET", _path("/files/{id}", file_id))
        return RemoteFile.from_json(response.json())

    def delete(self, file_id: str) -> None:
        """Delete the record (an unfinished upload is aborted in the store first)."""
        self._request("DELETE", _path("/files/{id}", file_id), ok=(204,))
        self.state.forget(file_id=str(file_id))

    def abort(self, file_id: str) -> None:
        """Abort an unfinished upload; the server answers 409 for a completed file."""
        self._request("DELETE", _path("/files/uploads/{id}", file_id), ok=(204,))
        self.state.forget(file_id=str(file_id))

    def download(
        self, file_id: str, dest: Path | str, *, progress: ProgressCallback | None = None
    ) -> Path:
        """Stream the file's bytes to `dest` (a path, or a directory to keep the file's name)."""
        target = Path(dest)
        if target.is_dir():
            target = target / _safe_name(self.get(file_id).file_name or str(file_id))
        failures = 0
        while True:
            # A fresh short-lived link each attempt: the previous one may have expired.
            response = self._request(
                "GET", _path("/files/{id}/download", file_id), ok=(301, 302, 303, 307)
            )
            location = response.headers.get("Location")
            if not location:
                raise ClientError(response.status_code, "invalid_response", "No download link.")
            url = httpx.URL(self.server).join(location)
            try:
                return self._fetch(url, target, progress)
            except ClientError as exc:
                retryable = exc.status == 0 or exc.status in RETRY_STATUSES
                failures += 1
                if not retryable or failures >= self.retry.attempts:
                    raise
                time.sleep(self.retry.delay(failures - 1))

    # --- uploads ---------------------------------------------------------------------------

    def upload(
        self,
        path: Path | str,
        *,
        part_size: int | None = None,
        concurrency: int = 8,
        parent: tuple[str, int | str] | None = None,
        name: str | None = None,
        description: str | None = None,
        content_type: str | None = None,
        resume: bool = True,
        checksums: bool = True,
        progress: ProgressCallback | None = None,
    ) -> UploadResult:
        """Upload a file in parallel parts and complete it; return the completed file.

        With `checksums` (the default) each part's SHA-256 is computed before its URL is signed
        and is signed into it, so the store refuses a part whose bytes differ. With `resume`, an
        unfinished upload of the same file (same path, size and mtime) started by an earlier run
        continues: every part the store holds is checked against the file (its checksum, or its
        MD5 against its ETag) and only the others are sent (`part_size`, `name`, ... then come
        from that upload). `progress` is called as `progress(bytes_done, total)` from the worker
        threads, one call at a time.
        """
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1.")
        started = time.monotonic()
        source = Path(path)
        stat = source.stat()
        if not source.is_file():
            raise IsADirectoryError(f"{source} is not a regular file.")
        key = resume_key(self.server, source, stat)
        plan = self._resume_plan(key, source, stat.st_size, concurrency) if resume else None
        if plan is None:
            plan = self._initiate(
                source,
                stat.st_size,
                part_size=part_size,
                parent=parent,
                name=name,
                description=description,
                content_type=content_type,
                checksums=checksums,
            )
            self.state.remember(key, plan.file_id)

        specs = part_specs(stat.st_size, plan.part_size, plan.total_parts)
        tracker = Progress(stat.st_size, plan.stored_bytes, progress)
        tracker.report()
        missing = [spec for spec in specs if spec.number not in plan.stored]
        parts = {**plan.stored, **self._send(source, plan, missing, tracker, concurrency)}
        try:
            remote, resent = self._complete_repairing(
                source, stat, plan, specs, parts, tracker, concurrency
            )
        except ClientError as exc:
            if exc.code in _FINAL_CODES:
                self.state.forget(key=key, file_id=plan.file_id)
            raise
        self.state.forget(key=key, file_id=plan.file_id)
        return UploadResult(
            file=remote,
            path=source,
            parts_sent=len(missing) + resent,
            parts_reused=len(plan.stored),
            bytes_sent=tracker.bytes_sent,
            seconds=time.monotonic() - started,
            resumed=plan.resumed,
            parts_replaced=plan.replaced,
        )

    def verify(self, path: Path | str, file_id: str) -> Verification:
        """Whether a local file holds exactly the bytes of a completed file, without
        downloading it: the file's composite checksum (SHA-256 uploads) or its multipart ETag is
        computed from the local file, split as the upload was, and compared."""
        source = Path(path)
        size = source.stat().st_size
        remote = self.get(file_id)
        if remote.upload_status != "completed":
            raise ClientError(
                409,
                "invalid_state",
                f"File {remote.id} is {remote.upload_status}; only a completed file can be "
                "verified.",
            )
        if size != remote.file_size:
            return Verification(remote, "size", str(size), str(remote.file_size))
        specs = part_specs(size, remote.part_size, remote.total_parts)
        if remote.checksum and remote.checksum_algorithm == SHA256:
            local = composite_checksum(source, specs)
            if "-" not in remote.checksum:  # a store that leaves off "-<parts>"
                local = local.rsplit("-", 1)[0]
            return Verification(remote, "sha256", local, remote.checksum)
        stored = bare_etag(remote.etag)
        if "-" in stored:
            return Verification(remote, "etag", multipart_etag(source, specs), stored)
        if len(stored) == 32:  # a plain MD5: an object the store received in one piece
            whole = md5()
            read_part(source, PartSpec(1, 0, size), whole)
            return Verification(remote, "md5", whole.hexdigest(), stored)
        raise ClientError(
            0,
            NOT_VERIFIABLE,
            f"File {remote.id} has neither a checksum nor an ETag to compare with.",
        )

    def parts(self, file_id: str) -> UploadParts:
        """The parts the store already holds for an unfinished upload."""
        response = self._request("GET", _path("/files/uploads/{id}/parts", file_id))
        return UploadParts.from_json(response.json())

    def presign(
        self,
        file_id: str,
        part_numbers: Sequence[int],
        checksums: Mapping[int, str] | None = None,
    ) -> tuple[int, list[PartURL]]:
        """Fresh URLs for parts of an unfinished upload → (seconds they last, URLs).

        An upload with a checksum algorithm needs each part's `checksums` (base64): the store
        then accepts exactly those bytes on that URL."""
        urls: list[PartURL] = []
        expires_in = 0
        numbers = builtins.list(part_numbers)
        for start in range(0, len(numbers), MAX_SIGN_BATCH):
            batch = numbers[start : start + MAX_SIGN_BATCH]
            body: dict[str, Any] = {"part_numbers": batch}
            if checksums:
                body["checksums"] = {str(n): checksums[n] for n in batch}
            response = self._request(
                "POST", _path("/files/uploads/{id}/presign", file_id), json=body
            )
            body = response.json()
            expires_in = int(body["expires_in"])
            urls.extend(PartURL.from_json(item) for item in body["presigned_urls"])
        return expires_in, urls

    def complete(self, file_id: str, parts: Mapping[int, str]) -> RemoteFile:
        """Complete with part number → ETag; the server verifies them against the store."""
        body = {"parts": [{"part_number": n, "etag": parts[n]} for n in sorted(parts)]}
        # Safe to repeat: completing again with the same parts returns the same file.
        response = self._request("POST", _path("/files/uploads/{id}/complete", file_id), json=body)
        return RemoteFile.from_json(response.json())

    def list(
        self,
        status: str | None = None,
        *,
        parent: tuple[str, int | str] | None = None,
        page_size: int = 100,
    ) -> Iterator[RemoteFile]:
        """Your files (staff: everyone's), page after page; `status` defaults to completed."""
        params: dict[str, Any] = {"page_size": page_size}
        if status:
            params["status"] = status
        if parent:
            params["parent_content_type"], params["parent_object_id"] = parent
        # By cursor: files uploaded while this walks never make it list a file twice or skip one.
        cursor = ""
        while True:
            response = self._request("GET", "/files", params={**params, "cursor": cursor})
            body = response.json()
            for item in body["results"]:
                yield RemoteFile.from_json(item)
            if not body.get("next"):
                return
            # Only the cursor of `next`: that URL carries the host the server saw, which behind
            # a proxy need not be the one this client reaches.
            cursor = parse_qs(urlsplit(body["next"]).query)["cursor"][0]

    # --- internals -------------------------------------------------------------------------

    def _resume_plan(
        self, key: str, source: Path, file_size: int, concurrency: int
    ) -> _Plan | None:
        file_id = self.state.get(key)
        if file_id is None:
            return None
        try:
            held = self.parts(file_id)
        except ClientError as exc:
            if exc.code not in _FINAL_CODES:
                raise
            # Completed, aborted, cleaned up or someone else's: nothing to resume.
            self.state.forget(key=key, file_id=file_id)
            return None
        if (
            held.upload_status not in OPEN_STATES
            or held.file_size != file_size
            or held.checksum_algorithm not in ("", SHA256)
        ):
            self.state.forget(key=key, file_id=file_id)
            return None
        specs = {
            spec.number: spec
            for spec in part_specs(held.file_size, held.part_size, held.total_parts)
        }
        claimed = [p for p in held.parts if p.part_number in specs]
        # Same path, size and mtime is no proof of the same bytes: each part the store holds is
        # read back from the file and kept only if it matches; the others are sent again.
        workers = max(1, min(concurrency, os.cpu_count() or 1, len(claimed)))
        with ThreadPoolExecutor(workers, thread_name_prefix="direct-uploads-verify") as pool:
            matches = builtins.list(
                pool.map(
                    lambda part: stored_part_matches(
                        source, specs[part.part_number], part, held.checksum_algorithm
                    ),
                    claimed,
                )
            )
        kept = [part for part, ok in zip(claimed, matches, strict=True) if ok]
        return _Plan(
            file_id=file_id,
            part_size=held.part_size,
            total_parts=held.total_parts,
            resumed=True,
            checksum_algorithm=held.checksum_algorithm,
            stored={p.part_number: p.etag for p in kept},
            stored_bytes=sum(p.size for p in kept),
            replaced=len(claimed) - len(kept),
        )

    def _initiate(
        self,
        source: Path,
        file_size: int,
        *,
        part_size: int | None,
        parent: tuple[str, int | str] | None,
        name: str | None,
        description: str | None,
        content_type: str | None,
        checksums: bool,
    ) -> _Plan:
        body: dict[str, Any] = {"file_name": source.name, "file_size": file_size}
        if checksums:
            # No checksum yet, so no URL: the part size is the server's to choose, and parts
            # are hashed once it is known, then signed through …/presign as they are.
            body["checksum_algorithm"] = SHA256
        else:
            # Lazy signing: the first batch now, the rest through …/presign as parts go out.
            body["presign"] = SIGN_BATCH
        chosen = part_size if part_size is not None else auto_part_size(file_size)
        if chosen is not None:
            body["part_size"] = chosen
        if name is not None:
            body["name"] = name
        if description is not None:
            body["description"] = description
        if content_type is not None:
            body["file_content_type"] = content_type
        if parent is not None:
            body["parent_content_type"], body["parent_object_id"] = parent
        # Not idempotent: a retry after a lost answer would open a second upload.
        response = self._request("POST", "/files/uploads", json=body, ok=(201,), idempotent=False)
        data = response.json()
        return _Plan(
            file_id=str(data["id"]),
            part_size=int(data["part_size"]),
            total_parts=int(data["total_parts"]),
            resumed=False,
            checksum_algorithm=str(data.get("checksum_algorithm") or ""),
            urls=[PartURL.from_json(item) for item in data["presigned_urls"]],
            expires_in=int(data["expires_in"]),
        )

    def _send(
        self,
        source: Path,
        plan: _Plan,
        specs: Sequence[PartSpec],
        tracker: Progress,
        concurrency: int,
        *,
        urls: bool = True,
    ) -> dict[int, str]:
        """PUT `specs` (hashed first when the upload has checksums); part number → ETag."""
        stop = threading.Event()
        hashes = None
        if plan.checksum_algorithm:
            ahead = max(concurrency, min(SIGN_BATCH, HASH_AHEAD_BYTES // max(1, plan.part_size)))
            hashes = Checksums(source, specs, ahead=ahead, stop=stop)
        signer = Signer(
            lambda numbers, sums: self.presign(plan.file_id, numbers, sums),
            [spec.number for spec in specs],
            initial=plan.urls if urls else (),
            expires_in=plan.expires_in,
            checksums=hashes,
        )
        if hashes is not None:
            # Hashed parts are signed from the hashing thread, a batch at a time, before the
            # workers reach them.
            hashes.on_hashed = lambda: signer.prefetch(concurrency)
        sender = PartSender(self._http, source, signer, tracker, self.retry, stop)
        try:
            return send_parts(sender, specs, concurrency)
        finally:
            stop.set()  # ends the hashing thread too

    def _complete_repairing(
        self,
        source: Path,
        stat: os.stat_result,
        plan: _Plan,
        specs: Sequence[PartSpec],
        parts: dict[int, str],
        tracker: Progress,
        concurrency: int,
    ) -> tuple[RemoteFile, int]:
        """Complete → (the file, parts sent again). While the server answers that the store
        holds some parts wrongly or not at all and keeps the upload open, those parts are sent
        again (hashed again, on fresh URLs) and complete is asked again, MAX_REPAIRS times."""
        resent = 0
        for repair in range(MAX_REPAIRS + 1):
            # A file edited while it was sent would complete as a mix of old and new bytes.
            now = source.stat()
            if (now.st_size, now.st_mtime_ns) != (stat.st_size, stat.st_mtime_ns):
                self._abort_quietly(plan.file_id)
                raise ClientError(0, FILE_CHANGED, f"{source} changed while it was being uploaded.")
            try:
                return self.complete(plan.file_id, parts), resent
            except ClientError as exc:
                again = _parts_to_resend(exc, plan.total_parts)
                if not again:
                    raise
                if repair == MAX_REPAIRS:
                    raise ClientError(
                        exc.status,
                        exc.code,
                        f"The store still disagrees about part(s) {_listed(again)} after "
                        f"{MAX_REPAIRS} re-sends; the upload stays open: run it again to resume.",
                        extra=exc.extra,
                    ) from exc
            redo = [specs[n - 1] for n in again]
            tracker.take_back(sum(spec.size for spec in redo if spec.number in parts))
            parts.update(self._send(source, plan, redo, tracker, concurrency, urls=False))
            resent += len(redo)
        raise AssertionError("unreachable")

    def _abort_quietly(self, file_id: str) -> None:
        try:
            self.abort(file_id)
        except ClientError:
            # Cleanup on the server aborts it at expiry anyway.
            self.state.forget(file_id=file_id)

    def _fetch(self, url: httpx.URL, target: Path, progress: ProgressCallback | None) -> Path:
        target.parent.mkdir(parents=True, exist_ok=True)
        # Into a temporary file beside the target, renamed at the end: an interrupted download
        # never leaves a truncated file under the real name.
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out:
                # identity: the bytes on disk must be the stored bytes, not a compressed form.
                with self._http.stream("GET", url, headers={"Accept-Encoding": "identity"}) as r:
                    if r.status_code != 200:
                        raise ClientError.from_response(r, "download")
                    total = int(r.headers.get("Content-Length") or 0)
                    done = 0
                    for chunk in r.iter_bytes(CHUNK_SIZE):
                        out.write(chunk)
                        done += len(chunk)
                        if progress is not None:
                            progress(done, total)
                if total and done != total:
                    raise ClientError(0, NETWORK_ERROR, f"Download ended at {done}/{total} bytes.")
            os.replace(tmp, target)
        except httpx.TransportError as exc:
            os.unlink(tmp)
            raise ClientError(0, NETWORK_ERROR, f"download: {exc!r}") from exc
        except BaseException:
            os.unlink(tmp)
            raise
        return target

    def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        ok: Sequence[int] = (200,),
        idempotent: bool = True,
        auth: bool = True,
    ) -> httpx.Response:
        renewed = False
        failures = 0
        while True:
            token = self._token() if auth else None
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            delay: float | None = None
            try:
                response = self._api.request(
                    method, path, json=json, params=params, headers=headers
                )
            except httpx.TransportError as exc:
                error = ClientError(0, NETWORK_ERROR, f"{method} {API_PREFIX}{path}: {exc!r}")
                # A request that never left is always safe to send again; one that may have
                # reached the server only when repeating it changes nothing.
                unsent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
                if not (idempotent or unsent):
                    raise error from exc
            else:
                if response.status_code in ok:
                    return response
                error = ClientError.from_response(response)
                if (
                    response.status_code == 401
                    and auth
                    and not renewed
                    and error.code == "token_not_valid"
                    and self._can_renew()
                ):
                    renewed = True
                    self._renew(token)
                    continue
                # Any 5xx may pass (a locked database, a restarting worker) and repeating an
                # idempotent call is harmless; a non-idempotent one only when the server said
                # it did nothing: 429, or 503 (the store was unavailable, nothing was recorded).
                retryable = RETRY_STATUSES if idempotent else _REFUSED_STATUSES
                if response.status_code not in retryable:
                    raise error
                delay = retry_after(response)
            failures += 1
            if failures >= self.retry.attempts:
                raise error
            time.sleep(self.retry.delay(failures - 1, delay))

    def _token(self) -> str:
        if self._access is None:
            with self._auth_lock:
                if self._access is None:
                    if self._username is None:
                        raise ClientError(
                            401,
                            "not_authenticated",
                            "No credentials: give a token, or a username and password.",
                        )
                    self._sign_in()
        assert self._access is not None
        return self._access

    def _can_renew(self) -> bool:
        return self._refresh is not None or self._username is not None

    def _sign_in(self) -> None:
        response = self._request(
            "POST",
            "/auth/token/pair",
            json={"username": self._username, "password": self._password},
            auth=False,
        )
        tokens = response.json()
        self._access, self._refresh = str(tokens["access"]), tokens.get("refresh")

    def _renew(self, stale: str | None) -> None:
        """Replace an access token the server refused: refresh it, or sign in again."""
        with self._auth_lock:
            if self._access != stale:
                return  # Another thread renewed it while this one waited.
            if self._refresh is not None:
                try:
                    response = self._request(
                        "POST", "/auth/token/refresh", json={"refresh": self._refresh}, auth=False
                    )
                except ClientError as exc:
                    # An expired refresh token: signing in again is the only way left.
                    if exc.status != 401 or self._username is None:
                        raise
                else:
                    tokens = response.json()
                    self._access = str(tokens["access"])
                    self._refresh = tokens.get("refresh") or self._refresh
                    return
            self._sign_in()


def _parts_to_resend(error: ClientError, total_parts: int) -> list[int]:
    """The parts a complete refused as missing or wrong while the upload stays open."""
    if error.code != PARTS_MISMATCH or error.extra.get("upload_status") not in OPEN_STATES:
        return []
    named = error.extra.get("parts")
    if not isinstance(named, builtins.list):
        return []
    return sorted({n for n in named if isinstance(n, int) and 1 <= n <= total_parts})


def _listed(numbers: Sequence[int]) -> str:
    shown = ", ".join(str(n) for n in numbers[:10])
    return shown + (f" and {len(numbers) - 10} more" if len(numbers) > 10 else "")


def _safe_name(name: str) -> str:
    # The name comes from the server: keep its last segment only, never a path out of `dest`.
    base = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    return base if base not in ("", ".", "..") else "download"
