"""The RCA's jit=off three ways, on the real servers: as a startup parameter PgBouncer refuses, as one
PgBouncer is told to ignore (it connects; the setting is dropped), and as a role setting (it applies)."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from lab.clients.python.rca import _as_role
from lab.topology.render import JIT_OFF_USER


def _jit(dsn: str, **kwargs: object) -> str:
    async def go() -> str:
        conn = await asyncpg.connect(dsn, timeout=5, statement_cache_size=0, **kwargs)
        try:
            return str(await conn.fetchval("SHOW jit"))
        finally:
            await conn.close()

    return asyncio.run(go())


def test_pgbouncer_refuses_the_startup_parameter(topology) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(asyncpg.ProtocolViolationError, match="unsupported startup parameter: jit"):
        _jit(topology.endpoint("pgbouncer-transaction").dsn(), server_settings={"jit": "off"})


def test_ignore_startup_parameters_lets_it_connect_and_drops_it(topology) -> None:  # type: ignore[no-untyped-def]
    assert _jit(topology.endpoint("pgbouncer-transaction-ignoring").dsn(), server_settings={"jit": "off"}) == "on"


def test_the_role_setting_applies_through_every_topology(topology) -> None:  # type: ignore[no-untyped-def]
    for name in ("direct", "pgbouncer-transaction", "pgbouncer-session"):
        assert _jit(_as_role(topology.endpoint(name).dsn(), JIT_OFF_USER)) == "off", name
    assert _jit(topology.endpoint("direct").dsn()) == "on"  # the application's own role keeps the server default
