"""Which unfinished upload a local file belongs to, so a new run can resume it.

A small JSON file maps (server, absolute path, size, mtime) to a file id. It is only a hint: the
server's `GET …/parts` stays the source of truth, and a stale or lost entry just means starting
over. Entries are dropped once their upload completes, is aborted, or is older than MAX_AGE.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

try:  # POSIX only; elsewhere the in-process lock is all there is.
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

# The server aborts unfinished uploads after a day by default; a week covers a longer setting.
MAX_AGE_SECONDS = 7 * 24 * 3600


def default_state_path() -> Path:
    """`$XDG_CACHE_HOME/direct-uploads/uploads.json`, i.e. `~/.cache/…` by default."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "direct-uploads" / "uploads.json"


def resume_key(server: str, path: Path, stat: os.stat_result) -> str:
    # A file with another size or mtime is another file: its stored parts cannot be reused.
    return f"{server}|{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"


class ResumeState:
    """The key → file id map, safe to share between threads and between processes."""

    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path) if path is not None else default_state_path()
        self._lock = threading.Lock()

    def get(self, key: str) -> str | None:
        with self._locked() as entries:
            entry = entries.get(key)
            return str(entry["file_id"]) if isinstance(entry, dict) else None

    def remember(self, key: str, file_id: str) -> None:
        with self._locked(write=True) as entries:
            entries[key] = {"file_id": file_id, "at": time.time()}

    def forget(self, *, key: str | None = None, file_id: str | None = None) -> None:
        """Drop the entry for `key`, and every entry pointing at `file_id`."""
        with self._locked(write=True) as entries:
            for name in list(entries):
                entry = entries[name]
                if name == key or (isinstance(entry, dict) and entry.get("file_id") == file_id):
                    del entries[name]

    @contextlib.contextmanager
    def _locked(self, *, write: bool = False) -> Iterator[dict[str, Any]]:
        with self._lock, self._file_lock():
            entries = self._read()
            yield entries
            if write:
                self._write(entries)

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        if fcntl is None:
            yield
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            # Missing or damaged: it is a cache, so start empty rather than fail an upload.
            return {}
        if not isinstance(data, dict):
            return {}
        cutoff = time.time() - MAX_AGE_SECONDS
        return {
            key: entry
            for key, entry in data.items()
            if isinstance(entry, dict) and float(entry.get("at") or 0) >= cutoff
        }

    def _write(self, entries: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Write-then-rename: a crash mid-write never leaves a truncated file behind.
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".uploads-", suffix=".json")
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(entries, handle, indent=1, sort_keys=True)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
