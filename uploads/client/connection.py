"""The HTTP transport of part PUTs: httpx's own, on sockets that notice an early answer.

A store may refuse a PUT as soon as it has the headers (S3 and LocalStack answer 403 to a bad or
expired signature) and then read no more of the body. httpx writes the whole body before it
reads, and has neither `Expect: 100-continue` nor concurrent send and receive: once the kernel's
buffers are full its write blocks until the write timeout, and the refusal is never seen.

httpcore does read the answer when a write fails ("servers can respond early"), so the write
here fails on purpose: when the socket has taken nothing for STALL_SECONDS and the server has
sent something, what it sent is kept for the reader and the write stops with a WriteError.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterable

import httpcore
import httpx

# How long a blocked write waits before looking for an answer. A server that is reading never
# sends anything mid-body, so looking is cheap and cannot misfire on a slow link.
STALL_SECONDS = 1.0


class _Stream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner
        self._early = b""  # what the server sent while the body was still being written
        # Set once the store refused a request on this connection (see PartTransport).
        self.spent = False

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        if self._early:
            data, self._early = self._early[:max_bytes], self._early[max_bytes:]
            return data
        return self._inner.read(max_bytes, timeout)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        sock = self._inner.get_extra_info("socket")
        if not isinstance(sock, socket.socket):  # not httpcore's plain or TLS socket stream
            self._inner.write(buffer, timeout)
            return
        view = memoryview(buffer)
        waited = 0.0
        while view:
            wait = STALL_SECONDS if timeout is None else min(STALL_SECONDS, timeout)
            try:
                sock.settimeout(wait)
                sent = sock.send(view)
            except TimeoutError as exc:
                waited += wait
                if self._answered(sock):
                    raise httpcore.WriteError("answered before the body was sent") from exc
                if timeout is not None and waited >= timeout:
                    raise httpcore.WriteTimeout(str(exc)) from exc
                continue
            except OSError as exc:
                raise httpcore.WriteError(str(exc)) from exc
            waited = 0.0
            view = view[sent:]

    def _answered(self, sock: socket.socket) -> bool:
        sock.settimeout(0)
        try:
            data = sock.recv(64 * 1024)
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            # Nothing, or only TLS housekeeping (a session ticket) that the TLS layer consumed.
            return False
        except OSError:
            return True  # reset: the reader reports it
        self._early += data  # b"" is the server closing: the reader finds that out too
        return True

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        return _Stream(self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> object:
        if info == "is_readable" and self.spent:
            # httpcore asks this of an idle connection before reusing it: "readable" means the
            # server hung up, so the pool drops it and opens a new one.
            return True
        return self._inner.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    def __init__(self) -> None:
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        inner = self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return _Stream(inner)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        return _Stream(self._inner.connect_unix_socket(path, timeout, socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class PartTransport(httpx.HTTPTransport):
    """httpx's transport (no proxy), whose connections notice a store's early answer."""

    def __init__(self, *, limits: httpx.Limits) -> None:
        super().__init__(limits=limits)
        # httpx does not pass a network backend through; its connection pool takes one
        # (httpcore's extension point), so the pool is built again with ours.
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_Backend(),
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        stream = response.extensions.get("network_stream")
        if response.status_code >= 400 and isinstance(stream, _Stream):
            # A store that refuses a part may answer before reading its body, then read nothing
            # more on that connection while keeping it open (LocalStack does); the rest of the
            # body sits in the kernel's buffers, and the next request sent on it never arrives.
            stream.spent = True
        return response
