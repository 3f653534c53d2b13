"""Loopback ports for the servers the tests start (stdlib only: the store launcher uses it)."""

from __future__ import annotations

import socket

# Ports Chromium refuses with net::ERR_UNSAFE_PORT (net/base/port_util.cc, kRestrictedPorts).
# Kernel-assigned ports (32768+ on Linux) never hit these, but a tuned ephemeral range could.
CHROMIUM_UNSAFE_PORTS = frozenset(
    {1, 7, 9, 11, 13, 15, 17, 19, 20, 21, 22, 23, 25, 37, 42, 43, 53, 69, 77, 79, 87, 95, 101,
     102, 103, 104, 109, 110, 111, 113, 115, 117, 119, 123, 135, 137, 139, 143, 161, 179, 389,
     427, 465, 512, 513, 514, 515, 526, 530, 531, 532, 540, 548, 554, 556, 563, 587, 601, 636,
     989, 990, 993, 995, 1719, 1720, 1723, 2049, 3659, 4045, 4190, 5060, 5061, 6000, 6566,
     6665, 6666, 6667, 6668, 6669, 6697, 10080}
)  # fmt: skip


def free_port() -> int:
    """A free loopback port the browser tests can reach too."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in CHROMIUM_UNSAFE_PORTS:
            return port
