"""What the server and the pooler saw during a cell, beside what the client raised.

A client can swallow an error the server reported (a driver that retries a statement
it believes was invalidated), and a configuration can pass while it leaves prepared
statements behind on the pooler's server connections. Two views, both read from the
real servers:

- `LogWindow`: the WARNING/ERROR/FATAL lines PostgreSQL and the pooler appended to
  their logs while the cell ran, as each service kind reads its own log (PostgreSQL's with
  their SQLSTATE: the lab's log_line_prefix ends with %e). Native processes and containers
  alike write them to the run's logs/; a target's logs are out of reach.
- `fresh_pooler`: the housekeeping before a cell through a pooler, one call whatever the
  pooler: fresh server connections where the experiment asks for them
  (`end_server_connections` takes away what a cell left on them), and what the pooler's
  kind needs beyond that (pgagroal 1.6 is restarted).
- `PreparedCensus`: the prepared statements on every server connection of a
  transaction pooler. pg_prepared_statements shows one session's own statements, so
  the census holds one transaction per server connection of the pool at once (each
  pins a different one) and adds their counts.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg

from lab.observe.logins import log_path
from lab.topology.bounded import answered_within, bounded
from lab.topology.model import Endpoint, Topology
from lab.topology.services import kind
from lab.topology.services.base import LogEvent


class LogWindow:
    """The lines each service appended to its log between `open()` and `events()`, read as its kind reads them."""

    def __init__(self, run_id: str, sources: dict[str, str]) -> None:
        """`sources`: service -> its kind."""
        self.paths = {s: log_path(run_id, s) for s in sources}
        self.kinds = {s: kind(k) for s, k in sources.items()}
        self.offsets: dict[str, int] = {}

    @classmethod
    def of(cls, topology: Topology, endpoint: Endpoint) -> LogWindow:
        """The server's log, and the endpoint's pooler's where it goes through one."""
        sources = {}
        server = topology.endpoints.get("direct")
        for facts in (*([server.facts] if server else []), *([endpoint.facts] if endpoint.facts.pooler else [])):
            if facts.service and facts.kind:
                sources[facts.service] = facts.kind
        return cls(topology.run_id, sources)

    def open(self) -> LogWindow:
        self.offsets = {s: _size(p) for s, p in self.paths.items() if p.exists()}
        return self

    def events(self) -> list[LogEvent] | None:
        """None where no log could be read (a target)."""
        if not self.offsets:
            return None
        out = []
        for service, start in self.offsets.items():
            with self.paths[service].open("rb") as f:
                f.seek(start)
                text = f.read().decode("utf-8", "replace")
            for line in text.splitlines():
                event = self.kinds[service].parse_log(service, line)
                if event is not None:
                    out.append(event)
        return out


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def summarize(
    events: list[LogEvent] | None, raised_sqlstate: str | None, raised_message: str | None
) -> tuple[list[dict[str, Any]] | None, int | None]:
    """The events as distinct (source, level, SQLSTATE, message) with counts, and how many of them the client did not
    raise: every one but those with the SQLSTATE (or, without one, the message) of the client's own error."""
    if events is None:
        return None, None
    counts = Counter(e.key() for e in events)
    rows = [
        {"source": s, "level": lv, "sqlstate": st, "message": msg[:200], "count": n}
        for (s, lv, st, msg), n in counts.items()
    ]

    def raised(e: LogEvent) -> bool:
        if raised_sqlstate and e.sqlstate == raised_sqlstate:
            return True
        if not raised_message or not e.message:
            return False
        return raised_message in e.message or e.message in raised_message

    return rows[:12], sum(1 for e in events if not raised(e) and e.level != "WARNING")


class PreparedCensus:
    """Counts the prepared statements on a transaction pooler's server connections, through the pooler."""

    def __init__(self, dsn: str, server_connections: int) -> None:
        self.connections = [
            psycopg.connect(dsn, prepare_threshold=None, connect_timeout=5) for _ in range(server_connections)
        ]

    def count(self, seconds: float = 10.0) -> int | None:
        """The statements on every server connection of the pool; None where the pooler handed the census none
        (a pooler's own refusal, such as Supavisor's checkout timeout while the cell's clients still hold them): the
        census is an observation of the cell, never a reason for it to fail."""
        total = 0
        try:
            for conn in self.connections:  # each opens a transaction and keeps its server connection until the rollback
                with answered_within(conn, seconds, "the prepared-statement census"):
                    row = conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchone()
                total += int(row[0]) if row else 0
        except psycopg.DatabaseError:
            return None
        finally:
            for conn in self.connections:
                if not conn.closed:
                    try:
                        conn.rollback()
                    except psycopg.Error:
                        pass
        return total

    def close(self) -> None:
        for conn in self.connections:
            conn.close()


def end_server_connections(admin_dsn: str, user: str, wait_s: float = 5.0) -> int:
    """End every server backend of `user`, so the poolers open new ones: a cell then starts with no prepared
    statement that an earlier cell left on a server connection. The number ended. Bounded: a server that answers
    nothing ends it with NoAnswer (the run's health check then names the server)."""
    with bounded(admin_dsn, wait_s + 5, "ending server connections", autocommit=True, prepare_threshold=None) as conn:
        ended = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = %s", [user]
        ).fetchone()
        deadline = time.monotonic() + wait_s
        while conn.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = %s", [user]).fetchone()[0]:  # type: ignore[index]
            if time.monotonic() > deadline:
                raise RuntimeError(f"backends of {user} still there {wait_s:g}s after pg_terminate_backend")
            time.sleep(0.01)
    return int(ended[0]) if ended else 0


def fresh_pooler(
    topology: Topology, endpoint: Endpoint | None, end_connections: bool = False, whole_server: bool = False
) -> bool:
    """Before a cell through `endpoint` (None: a cell through none of the lab's poolers): the other poolers parked where
    idle they would hold server connections the cell may need; with `end_connections`, every server connection of the
    endpoint's user ended on the server (end_server_connections), so the cell starts with none an earlier cell used;
    with `whole_server`, those of every pooler's user, so a cell about the server's connection limit has its slots to
    itself (idle, a pooler keeps its server connections: PgBouncer for server_idle_timeout, 600 s by default, and how
    many depended on the cells before: the RCA's hybrid, 14 of the server's 25, had met "too many clients"); then
    what the pooler's kind needs beyond that (ServiceKind.fresh). PgBouncer and pgpool-II need nothing; pgagroal
    1.6 is restarted, or parked (lab.topology.services.pgagroal says why). Never on a target, whose user's other
    sessions may be somebody's application. True when the cell's own pooler needed something."""
    if not topology.superuser:
        return False
    own = endpoint.facts.service if endpoint is not None else None
    for other in topology.endpoints.values():
        facts = other.facts
        if facts.pooler and facts.kind and facts.service and facts.service != own:
            kind(facts.kind).park(topology, other)
    users = {e.user for e in topology.endpoints.values() if e.facts.pooler} if whole_server else set()
    if end_connections and endpoint is not None and endpoint.facts.pooler:
        users.add(endpoint.user)
    for user in sorted(users):
        end_server_connections(topology.admin_dsn(), user)
    if endpoint is None or not endpoint.facts.pooler or not endpoint.facts.kind or not own:
        return False
    return kind(endpoint.facts.kind).fresh(topology, endpoint, ended=bool(users))
