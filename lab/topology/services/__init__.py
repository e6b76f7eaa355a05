"""What the lab knows about each kind of server, in one place that both backends use.

A kind says how to stop it (and what the kernel sends it when its owner dies), what
its log writes per login, how to ask a running one for its version, and which facts
an endpoint of it carries into every row. The native backend adds how to start it
from a Debian binary; the Docker backend reads versions and facts from here too, so a
row says the same things whichever backend produced it.
"""

from __future__ import annotations

import re
import signal
from dataclasses import dataclass
from typing import Any

import psycopg
from packaging.version import InvalidVersion, Version

from lab.topology.compose import Service


@dataclass(frozen=True)
class ServerKind:
    name: str
    stop_signal: int  # a clean, prompt shutdown
    death_signal: int  # what the kernel sends when the lab process that owns it dies
    login_pattern: str | None = None  # a line its log writes for every login (log_connections in the templates)


# postgres: SIGINT is "fast shutdown" (disconnect clients, no waiting), SIGQUIT "immediate shutdown";
# pgbouncer: SIGINT is "safe shutdown" and waits for clients, SIGTERM exits at once;
# nginx: SIGTERM is "fast shutdown", SIGQUIT graceful. The lab's own Python servers
# (the REST stand-in, delay proxies) stop on SIGTERM.
POSTGRES = ServerKind("postgres", signal.SIGINT, signal.SIGQUIT, "connection authorized:")
PGBOUNCER = ServerKind("pgbouncer", signal.SIGTERM, signal.SIGTERM, "login attempt:")
NGINX = ServerKind("nginx", signal.SIGTERM, signal.SIGTERM)
PYTHON = ServerKind("proxy", signal.SIGTERM, signal.SIGTERM)

KINDS = {k.name: k for k in (POSTGRES, PGBOUNCER, NGINX, PYTHON)}


def kind_of(service: str) -> ServerKind:
    """The kind of a compose service by its name: postgres, pgbouncer-*, nginx; anything else is the lab's own."""
    if service == "postgres":
        return POSTGRES
    if service.startswith("pgbouncer"):
        return PGBOUNCER
    return NGINX if service == "nginx" else PYTHON


def server_version(conn: psycopg.Connection) -> str:
    return str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]


def pgbouncer_version(host: str, port: int, user: str, password: str) -> str:
    """The admin console's SHOW VERSION ('PgBouncer 1.18.0' -> '1.18.0'), as an admin_users member."""
    with psycopg.connect(
        host=host,
        port=port,
        user=user,
        password=password,
        dbname="pgbouncer",
        autocommit=True,
        prepare_threshold=None,
        connect_timeout=10,
    ) as conn:
        text = str(conn.execute("SHOW VERSION").fetchone()[0])  # type: ignore[index]
    return text.split()[-1] if text else "unknown"


def prepared_statements(pooler: str | None, version: str | None, settings: str | None) -> str | None:
    """Whether a PgBouncer tracks protocol-level named prepared statements: "tracked" from 1.21 with
    max_prepared_statements > 0 (the default is 0 in 1.21 and 200 from 1.22), "not tracked" before 1.21 or with 0;
    None where that cannot be known (no version declared, or not a PgBouncer). Expectation rules key on it, so a
    1.24 with the setting at 0 is held to the same rules as 1.18."""
    if pooler != "pgbouncer" or not version:
        return None
    try:
        v = Version(version)
    except InvalidVersion:
        return None
    if v < Version("1.21"):
        return "not tracked"
    m = re.search(r"max_prepared_statements\s*=\s*(\d+)", settings or "")
    limit = int(m.group(1)) if m else (0 if v < Version("1.22") else 200)
    return "tracked" if limit > 0 else "not tracked"


def endpoint_facts(svc: Service, base: dict[str, Any], pooler_version: str | None = None) -> dict[str, Any]:
    """The facts every row through this service carries: the same keys whichever backend started it."""
    facts: dict[str, Any] = {"service": svc.name, **base}
    if svc.role == "server":
        return {**facts, "pooler": None, "pool_mode": None}
    settings = svc.labels.get("lab.pgbouncer_settings") or None
    return {
        **facts,
        "pooler": "pgbouncer",
        "pooler_version": pooler_version,
        "pool_mode": svc.pool_mode,
        "pool_size": svc.pool_size,
        "pooler_settings": settings,
        "prepared_statements": prepared_statements("pgbouncer", pooler_version, settings),
    }
