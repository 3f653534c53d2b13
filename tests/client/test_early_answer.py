"""A store may refuse a part PUT as soon as it has the headers (S3 and LocalStack answer 403 to a
bad signature before reading the body) and then read nothing more. The client must notice that
answer while it is still writing, not block until its timeout."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.support import KIB, MIB
from uploads.client import Client, ClientError
from uploads.client.connection import PartTransport
from uploads.client.models import PartURL
from uploads.client.transfer import PartSender, PartSpec, Progress, Signer

from .conftest import FAST_RETRY, Recording

REFUSAL = b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>"


@contextlib.contextmanager
def refusing_server() -> Iterator[str]:
    """Answers 403 once it has a request's headers, then neither reads nor closes."""
    listener = socket.socket()
    # A small receive buffer (inherited by accepted sockets): a 5 MiB body cannot fit in the
    # kernel's buffers on both sides, so a client that only writes is sure to block.
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * KIB)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    held: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            held.append(conn)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                head += chunk
            conn.sendall(
                b"HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\n"
                + f"Content-Length: {len(REFUSAL)}\r\n\r\n".encode()
                + REFUSAL
            )

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/bucket/key?partNumber=1"
    finally:
        listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() waiting in the thread
        listener.close()
        for conn in held:
            conn.close()
        thread.join(5)


def test_an_early_refusal_is_reported_within_seconds(tmp_path: Path) -> None:
    body = tmp_path / "part.bin"
    body.write_bytes(b"x" * (5 * MIB))
    spec = PartSpec(1, 0, 5 * MIB)
    # A write timeout well under what the test allows: a client that waits for it fails here.
    client = Client("http://127.0.0.1:9", token="unused", timeout=5, retry=FAST_RETRY)
    with client, refusing_server() as url:
        signer = Signer(lambda numbers, _sums: (3600, [PartURL(n, url) for n in numbers]), [1])
        sender = PartSender(
            client._http,
            body,
            signer,
            Progress(spec.size, 0, None),
            client.retry,
            threading.Event(),
        )
        started = time.monotonic()
        with pytest.raises(ClientError) as refused:
            sender.send(spec)
        elapsed = time.monotonic() - started

    # The store's own answer, not a timeout: refused, re-signed (as for an expired URL) and
    # refused again, each time as soon as the writes stalled.
    assert (refused.value.status, refused.value.code) == (403, "AccessDenied")
    assert elapsed < 8, f"took {elapsed:.1f} s"


def test_a_tampered_url_refused_early_by_s3_is_reported_within_seconds(
    verifying, make_client, write_file
):
    """The verifying S3 store answers 403 to a bad signature before reading the body; a 5 MiB
    part must not wait for a write timeout to hear it."""
    path, _ = write_file(5 * MIB, seed=33)

    def tamper(request: httpx.Request, attempt: int) -> httpx.Response | None:
        if "X-Amz-Signature" not in request.url.params:
            return None
        signature = request.url.params["X-Amz-Signature"]
        other = signature[:-1] + ("0" if signature[-1] != "0" else "1")
        forged = httpx.Request(
            request.method,
            request.url.copy_set_param("X-Amz-Signature", other),
            headers=request.headers,
            content=request.stream,
        )
        return parts.inner.handle_request(forged)

    parts = Recording(fault=tamper)
    # The client's own part transport under the recorder: it is the one that must notice.
    parts.inner = PartTransport(limits=httpx.Limits())
    client = make_client(part_transport=parts, timeout=60)
    started = time.monotonic()
    with pytest.raises(ClientError) as refused:
        client.upload(path, part_size=5 * MIB)
    elapsed = time.monotonic() - started

    assert refused.value.status == 403
    assert refused.value.code == "SignatureDoesNotMatch"
    assert elapsed < 15, f"took {elapsed:.1f} s"
