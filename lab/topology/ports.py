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


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports. Each socket stays bound until all are picked: asked one at
    a time, the kernel may hand the same just-released port out twice, and two services of
    one run then race for it (seen: the REST stand-in's probe answered by a PgBouncer)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(s)
            s.bind((HOST, 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def ensure_free(wanted: dict[int, str]) -> None:
    """Fail with one line naming every taken port and its would-be owner (port -> what wants it), before a server
    fails obscurely. All of them, not the first: a fixed port inside the ephemeral range can be some client socket's
    for a moment, and the user should see the port they themselves hold too."""
    taken = [port for port in wanted if not _bindable(port)]
    if taken:
        raise PortTaken(
            "; ".join(f"port {HOST}:{port} (wanted for {wanted[port]}) is already in use" for port in taken)
            + f"; stop what holds it (`ss -ltnp 'sport = :{taken[0]}'` shows it) or let the lab pick free ports"
        )


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True
