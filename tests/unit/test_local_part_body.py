"""A local part PUT's body read straight from gunicorn's socket: the bytes are the body's, and
the connection stays usable for the next request whether the body was read whole or not.

Driven through gunicorn's own request parser and WSGI environ over a socket pair, with the next
request pipelined behind the body, as a keep-alive client may send it."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator

import pytest
from django.core.handlers.wsgi import WSGIRequest
from gunicorn.config import Config
from gunicorn.http import wsgi
from gunicorn.http.parser import RequestParser

from uploads.storage.local.body import Body, _Socket, part_body

CLIENT, SERVER = ("127.0.0.1", 50000), ("127.0.0.1", 8000)
NEXT = b"GET /next HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nnext!"


def put(body: bytes) -> bytes:
    return b"PUT /part HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


@pytest.fixture
def connection() -> Iterator[tuple[socket.socket, socket.socket]]:
    server, client = socket.socketpair()
    yield server, client
    server.close()
    client.close()


def requests_on(server: socket.socket, client: socket.socket, wire: bytes) -> Iterator[WSGIRequest]:
    """Each request gunicorn parses from `wire`, as the Django request the view would get."""
    # A thread: the socket buffer is smaller than the bodies.
    sender = threading.Thread(target=client.sendall, args=(wire,))
    sender.start()
    cfg = Config()
    parser = RequestParser(cfg, server, CLIENT)
    for message in parser:
        _, environ = wsgi.create(message, server, CLIENT, SERVER, cfg)
        yield WSGIRequest(environ)
    sender.join()


def read_all(body: Body, step: int) -> bytes:
    buffer = memoryview(bytearray(step))
    out = bytearray()
    while count := body.readinto(buffer):
        out += buffer[:count]
    return bytes(out)


@pytest.mark.parametrize("size", [0, 1024, 3 * 1024 * 1024 + 7])
def test_the_body_comes_from_the_socket_and_the_next_request_follows(connection, size):
    content = os.urandom(size)
    seen = []
    for request in requests_on(*connection, put(content) + NEXT):
        if request.method == "PUT":
            with part_body(request) as body:
                assert isinstance(body, _Socket)  # not through gunicorn's wsgi.input
                seen.append(read_all(body, 64 * 1024))
        else:
            seen.append(request.read())
            connection[1].shutdown(socket.SHUT_WR)
    assert seen == [content, b"next!"]


@pytest.mark.parametrize("size", [1024, 3 * 1024 * 1024])
def test_a_body_left_unread_is_drained_before_the_next_request(connection, size):
    """A refused part stops reading; gunicorn then skips the rest of its body, as it would
    after an application that stopped reading `wsgi.input`."""
    content = os.urandom(size)
    seen = []
    for request in requests_on(*connection, put(content) + NEXT):
        if request.method == "PUT":
            with part_body(request) as body:
                buffer = memoryview(bytearray(10))
                assert body.readinto(buffer) == 10
                seen.append(bytes(buffer))
        else:
            seen.append(request.read())
            connection[1].shutdown(socket.SHUT_WR)
    assert seen == [content[:10], b"next!"]


def test_a_chunked_body_is_read_through_the_wsgi_stream(connection):
    """Django reads a body without Content-Length as empty (the view then refuses a non-empty
    part): so does the part body, and gunicorn skips the chunks."""
    chunked = (
        b"PUT /part HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n"
    )
    seen = []
    for request in requests_on(*connection, chunked + NEXT):
        if request.method == "PUT":
            with part_body(request) as body:
                assert not isinstance(body, _Socket)
                seen.append(read_all(body, 3))
        else:
            seen.append(request.read())
            connection[1].shutdown(socket.SHUT_WR)
    assert seen == [b"", b"next!"]
