"""Logins as the servers themselves saw them, read from their logs (claim C4).

PostgreSQL logs "connection authorized" for every login (log_connections = on) and
PgBouncer "login attempt" for every client login (log_connections = 1); both
settings are in compose/'s templates. Counting lines before and after a cell gives
how many logins each tier saw for it.
"""

from __future__ import annotations

from pathlib import Path

from lab.runstate import RUNTIME_BASE

PATTERNS = {"postgres": "connection authorized:", "pgbouncer": "login attempt:"}


def log_path(run_id: str, service: str) -> Path:
    return RUNTIME_BASE / run_id / "logs" / f"{service}.log"


def count(run_id: str, service: str, user: str | None = None) -> int | None:
    """Logins in the service's log so far; None where the lab cannot read it (Docker keeps its own logs)."""
    kind = "postgres" if service == "postgres" else "pgbouncer"
    try:
        lines = log_path(run_id, service).read_text(errors="replace").splitlines()
    except OSError:
        return None
    needle = PATTERNS[kind]
    return sum(1 for line in lines if needle in line and (user is None or f"user={user}" in line))
