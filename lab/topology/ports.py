"""Ports on 127.0.0.1: free ones picked by the kernel, fixed ones checked before use."""

from __future__ import annotations

import socket

from lab.errors import PortTaken

HOST = "127.0.0.1"


def free_port() -> int:
    """A port nothing listens on now. The kernel picks it, so parallel runs do not collide."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def ensure_free(port: int, what: str) -> None:
    """Fail with a message naming the port and its would-be owner, before a server fails obscurely."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            raise PortTaken(
                f"port {HOST}:{port} (wanted for {what}) is already in use; stop what holds it "
                f"(`ss -ltnp 'sport = :{port}'` shows it) or let the lab pick free ports"
            ) from None
