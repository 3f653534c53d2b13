"""A part PUT's body, read into the caller's buffer.

Under gunicorn a body of known length is read from the request's socket straight into that
buffer. gunicorn's `wsgi.input` hands out a new bytes object per read and copies each byte
through two buffers on the way: for a multi-GiB part that is as much CPU again as the recv
itself (about 1 s per GiB here, half of what the part's MD5 costs), on a path that is CPU-bound.
Any other server, or a body gunicorn frames itself (chunked), is read through the WSGI stream.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from django.http import HttpRequest


class Body(Protocol):
    def readinto(self, buffer: memoryview, /) -> int:
        """Read up to len(buffer) bytes into it; 0 at the end of the body."""
        ...


class _Stream:
    """Any readable stream (the WSGI input): one copy into the buffer per read."""

    def __init__(self, stream: Any) -> None:
        self._read = stream.read

    def readinto(self, buffer: memoryview, /) -> int:
        data = self._read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class _Socket:
    """The rest of a gunicorn request body, from the bytes gunicorn read ahead and the socket.

    gunicorn's own count of what is left of the body is kept current, so that whatever this
    reader leaves unread (a refused part) is drained by gunicorn before the next request on the
    connection, as when the application reads through `wsgi.input`.
    """

    def __init__(self, sock: Any, reader: Any, unreader: Any) -> None:
        self._sock = sock
        self._reader = reader
        self._unreader = unreader
        ahead = unreader.take_buffered()
        # What gunicorn read past this body belongs to the next request on the connection.
        if len(ahead) > reader.length:
            unreader.unread(ahead[reader.length :])
            ahead = ahead[: reader.length]
        self._ahead = memoryview(ahead)

    def readinto(self, buffer: memoryview, /) -> int:
        left = self._reader.length
        if not left or not buffer:
            return 0
        if self._ahead:
            count = min(len(buffer), len(self._ahead))
            buffer[:count] = self._ahead[:count]
            self._ahead = self._ahead[count:]
        else:
            count = self._sock.recv_into(buffer, min(len(buffer), left))
        self._reader.length = left - count
        return int(count)

    def close(self) -> None:
        # Read-ahead not consumed goes back, in front of what gunicorn holds.
        if self._ahead:
            self._unreader.unread(self._ahead.tobytes())
            self._ahead = memoryview(b"")


def _gunicorn_socket_body(request: HttpRequest) -> _Socket | None:
    sock = request.META.get("gunicorn.socket")
    stream = request.META.get("wsgi.input")
    reader = getattr(stream, "reader", None)
    unreader = getattr(reader, "unreader", None)
    held = getattr(stream, "buf", None)
    if (
        sock is None
        or type(stream).__module__ != "gunicorn.http.body"
        or type(reader).__name__ != "LengthReader"
        # A gunicorn older than these methods keeps the WSGI stream.
        or not hasattr(unreader, "take_buffered")
        or not hasattr(unreader, "unread")
        or not hasattr(sock, "recv_into")
        # Something already read through the WSGI stream holds bytes of the body.
        or held is None
        or held.tell()
        or getattr(request, "_read_started", False)
    ):
        return None
    return _Socket(sock, reader, unreader)


@contextmanager
def part_body(request: HttpRequest) -> Iterator[Body]:
    """The request's body as a `Body`, for the length of the `with` block."""
    direct = _gunicorn_socket_body(request)
    if direct is None:
        yield _Stream(request)
        return
    try:
        yield direct
    finally:
        direct.close()
