"""The RCA's attempts 1 and 2, as written in the RCA (docs/incident.md): client configurations of their own.

Only the pool construction is the RCA's; the workload that follows is the lab's
repeated-query scenario, so a pool that does connect is also checked for the
prepared-statement failures that come after the connection.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import asyncpg
from psycopg_pool import AsyncConnectionPool

from lab.clients.python.asyncpg_client import AsyncpgClient
from lab.clients.python.psycopg_client import PsycopgAsyncClient, capture_pool_errors
from lab.results.outcome import WrongResult
from lab.topology.render import JIT_OFF_USER


class RcaAttempt1(AsyncpgClient):
    name = "rca-attempt-1"
    group = "attempt"
    fixes: ClassVar[Mapping[str, str]] = {}
    change: ClassVar[str | None] = None
    snippet: ClassVar[str | None] = None
    docs: ClassVar[tuple[str, ...]] = ()
    workloads = ("repeated-query",)
    description = "asyncpg.create_pool(DATABASE_URL, min_size=1, max_size=5, server_settings={'jit': 'off'})"

    async def open(self) -> None:
        DATABASE_URL = self.dsn
        # --- verbatim from the RCA, attempt 1 ---
        _db_pool = await asyncpg.create_pool(
            DATABASE_URL,
            min_size=1,
            max_size=5,
            server_settings={"jit": "off"},
        )
        # ---
        self.pool = _db_pool


class RcaAttempt2(PsycopgAsyncClient):
    name = "rca-attempt-2"
    group = "attempt"
    fixes: ClassVar[Mapping[str, str]] = {}
    change: ClassVar[str | None] = None
    snippet: ClassVar[str | None] = None
    docs: ClassVar[tuple[str, ...]] = ()
    workloads = ("repeated-query",)
    description = "AsyncConnectionPool(DATABASE_URL, min_size=1, max_size=5, kwargs={'options': '-c jit=off'})"

    async def open(self) -> None:
        DATABASE_URL = self.dsn
        with capture_pool_errors():
            # --- verbatim from the RCA, attempt 2 (opens in the constructor, as psycopg_pool
            # still allows with a deprecation warning) ---
            pool = AsyncConnectionPool(
                DATABASE_URL,
                min_size=1,
                max_size=5,
                kwargs={"options": "-c jit=off"},
            )
            # ---
        self.pool = pool


def _as_role(dsn: str, role: str) -> str:
    """The same DSN, logging in as `role` (same password); through a tenant router (`<user>.<project-ref>`) as
    `<role>.<project-ref>`."""
    url = urlsplit(dsn)
    creds, _, host = url.netloc.rpartition("@")
    user, _, password = creds.partition(":")
    tenant = unquote(user).partition(".")[2]
    login = f"{role}.{tenant}" if tenant else role
    return urlunsplit(url._replace(netloc=f"{quote(login, safe='')}:{password}@{host}"))


class _AlterRole:
    """The RCA's pool without its startup parameter, logging in as a role that has `ALTER ROLE ... SET jit = off`
    (compose/postgres/init.sql): the setting then needs no pooler to pass it on. Opening checks that the server
    applied it, so a cell passes only if jit really is off."""

    #: the role exists only in the lab's own topology, not on a target
    local_only: ClassVar[bool] = True
    #: the role it logs in as: each pooler keeps a pool of server connections per role, so after the cell the lab
    #: ends them (they would otherwise hold server connections the other cells count on: max_connections is 25)
    login_role: ClassVar[str | None] = JIT_OFF_USER

    async def _jit_is_off(self) -> None:
        """Asked on a connection of its own that prepares nothing (statement_cache_size=0), so the check itself
        cannot meet the transaction pooler's prepared-statement failures; the pool's own queries are the workload's."""
        conn = await asyncpg.connect(_as_role(self.dsn, JIT_OFF_USER), statement_cache_size=0, timeout=5)  # type: ignore[attr-defined]
        try:
            jit = await conn.fetchval("SHOW jit")
        finally:
            await conn.close()
        if jit != "off":
            raise WrongResult(f"SHOW jit as {JIT_OFF_USER}", jit, "off")


class RcaAttempt1AlterRole(_AlterRole, RcaAttempt1):
    name = "rca-attempt-1-alter-role"
    fixes = {"rca-attempt-1": ""}
    change = "ALTER ROLE ... SET jit = off instead of the startup parameter"
    snippet = "ALTER ROLE app SET jit = off;  -- then asyncpg.create_pool(DATABASE_URL) without server_settings"
    docs = ("https://www.postgresql.org/docs/15/sql-alterrole.html",)
    description = f"asyncpg.create_pool(min_size=1, max_size=5) as {JIT_OFF_USER} (ALTER ROLE ... SET jit = off), no server_settings"

    async def open(self) -> None:
        self.pool = await asyncpg.create_pool(_as_role(self.dsn, JIT_OFF_USER), min_size=1, max_size=5)
        await self._jit_is_off()


class RcaAttempt2AlterRole(_AlterRole, RcaAttempt2):
    name = "rca-attempt-2-alter-role"
    fixes = {"rca-attempt-2": ""}
    change = "ALTER ROLE ... SET jit = off instead of the startup parameter"
    snippet = "ALTER ROLE app SET jit = off;  -- then AsyncConnectionPool(DATABASE_URL) without options"
    docs = ("https://www.postgresql.org/docs/15/sql-alterrole.html",)
    description = (
        f"AsyncConnectionPool(min_size=1, max_size=5) as {JIT_OFF_USER} (ALTER ROLE ... SET jit = off), no options"
    )

    async def open(self) -> None:
        self.pool = AsyncConnectionPool(
            _as_role(self.dsn, JIT_OFF_USER), min_size=1, max_size=5, open=False, timeout=self.timeout
        )
        with capture_pool_errors():
            await self.pool.open(wait=True, timeout=self.timeout)
        await self._jit_is_off()
