"""Logins as the servers themselves saw them, read from their logs (claim C4).

Each service kind names the line its log writes per login (log_connections is on in compose/'s
templates); counting lines before and after a cell gives how many logins each tier saw for it.
Native processes and containers alike write their logs to the run's logs/; a target's are out of reach.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lab.topology.model import Endpoint, Topology
from lab.topology.runstate import RUNTIME_BASE
from lab.topology.services import kind


def log_path(run_id: str, service: str) -> Path:
    return RUNTIME_BASE / run_id / "logs" / f"{service}.log"


def count(run_id: str, service: str, kind_name: str, user: str | None = None) -> int | None:
    """Logins in the service's log so far; None where its kind logs none or the lab cannot read the log (a target)."""
    needle = kind(kind_name).login_pattern
    if needle is None:
        return None
    try:
        lines = log_path(run_id, service).read_text(errors="replace").splitlines()
    except OSError:
        return None
    return sum(1 for line in lines if needle in line and (user is None or f"user={user}" in line))


class Logins:
    """The logins the server (for the endpoint's user) and the endpoint's pooler logged during a block."""

    def __init__(self, topology: Topology, endpoint: Endpoint) -> None:
        self.run_id, self.user = topology.run_id, endpoint.user
        server = topology.endpoints.get("direct")
        self.server_at = (
            (server.facts.service, server.facts.kind) if server and server.facts.service and server.facts.kind else None
        )
        facts = endpoint.facts
        self.pooler_at = (facts.service, facts.kind) if facts.pooler and facts.service and facts.kind else None
        self.server: int | None = None
        self.pooler: int | None = None

    def _now(self) -> tuple[int | None, int | None]:
        server = count(self.run_id, *self.server_at, user=self.user) if self.server_at else None
        return server, count(self.run_id, *self.pooler_at) if self.pooler_at else None

    @contextmanager
    def counted(self) -> Iterator[Logins]:
        before = self._now()
        yield self
        time.sleep(0.01)  # log lines are written after the login completes (logins come first in a cell)
        after = self._now()
        self.server, self.pooler = (
            None if b is None or a is None else a - b for b, a in zip(before, after, strict=True)
        )
