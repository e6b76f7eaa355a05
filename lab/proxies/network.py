"""The lab's network: delay proxies placed in front of endpoints, one process per proxied port.

An endpoint seen across a network of a chosen round-trip time is the same endpoint
with its ports replaced by proxies' ports and `rtt_ms` in its facts, so every row
measured through it says which network it crossed.
"""

from __future__ import annotations

import socket
import sys

from lab.topology.model import Endpoint
from lab.topology.ports import HOST, free_port
from lab.topology.processes import Server, run_as_self
from lab.topology.runstate import RunState
from lab.topology.services import kind
from lab.topology.services.base import wait_ready


def _tcp_probe(port: int) -> bool:
    with socket.create_connection((HOST, port), timeout=1):
        return True


class Network:
    """Delay proxies of one run, recorded in its state so that they are stopped and reaped with it."""

    def __init__(self, state: RunState) -> None:
        self.state = state
        self.proxies: list[Server] = []
        self._cache: dict[tuple[str, int, float], Endpoint] = {}

    def delayed(self, endpoint: Endpoint, rtt_ms: float) -> Endpoint:
        """The endpoint across a network with this round-trip time (0: the endpoint itself)."""
        if rtt_ms <= 0:
            return endpoint
        key = (endpoint.topology, endpoint.port, rtt_ms)
        if key not in self._cache:
            ports = {}
            for field, port in (("port", endpoint.port), ("tls_port", endpoint.tls_port)):
                if port is not None:
                    ports[field] = self._proxy(endpoint, port, rtt_ms)
            self._cache[key] = endpoint.via(ports["port"], ports.get("tls_port"), rtt_ms=rtt_ms, delay_proxy=True)
        return self._cache[key]

    def _proxy(self, endpoint: Endpoint, port: int, rtt_ms: float) -> int:
        listen = free_port()
        name = f"delay-{endpoint.topology}-{port}-{rtt_ms:g}ms"
        server = self.state.start(
            name,
            [
                sys.executable,
                "-m",
                "lab.proxies.delay",
                "--listen",
                f"{HOST}:{listen}",
                "--target",
                f"{endpoint.host}:{port}",
                "--one-way-ms",
                str(rtt_ms / 2),
            ],
            run_as_self(),
            kind("lab-proxy"),
        )
        self.proxies.append(server)
        wait_ready(server, lambda: _tcp_probe(listen), name)
        return listen

    def stop(self) -> None:
        for server in reversed(self.proxies):
            server.stop()
        self.proxies.clear()
        self._cache.clear()
