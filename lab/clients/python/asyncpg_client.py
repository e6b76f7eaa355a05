"""asyncpg through its own pool (asyncpg.create_pool)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import uuid4

import asyncpg

from lab.clients.python.base import BeforeCommit, Client, Rows, Step, to_dollar
from lab.results.outcome import in_phase


class AsyncpgClient(Client):
    name = "asyncpg-default"
    packages = ("asyncpg",)
    description = "asyncpg.create_pool with default settings (statement cache of 100 named prepared statements)"
    connect_kwargs: dict[str, Any] = {}

    async def open(self) -> None:
        self.pool = await asyncpg.create_pool(
            self.dsn, min_size=self.size, max_size=self.size, timeout=self.timeout, **self.connect_kwargs
        )

    async def _run(self, conn: Any, query: str, args: list[Any]) -> Rows:
        """One statement on one connection, as this configuration sends it."""
        return [tuple(r) for r in await conn.fetch(query, *args)]

    async def fetch(self, sql: str, params: dict[str, Any]) -> Rows:
        query, args = to_dollar(sql, params)
        async with self.pool.acquire() as conn:
            return await self._run(conn, query, args)

    batch_api = "conn.fetchmany(query, args): one statement, every argument set pipelined, the rows of each"

    async def batch(self, sql: str, params: Sequence[dict[str, Any]]) -> list[Rows]:
        query, _ = to_dollar(sql, params[0])
        args = [to_dollar(sql, p)[1] for p in params]
        async with self.pool.acquire() as conn:
            records = await conn.fetchmany(query, args)
        return [[tuple(r)] for r in records]  # one row per argument set (RETURNING)

    async def transaction(self, steps: Sequence[Step], before_commit: BeforeCommit | None = None) -> list[Rows]:
        results: list[Rows] = []
        async with self.pool.acquire() as conn:
            tx = conn.transaction()
            await tx.start()
            try:
                for step in steps:
                    query, args = to_dollar(*step(results))
                    results.append(await self._run(conn, query, args))
                if before_commit is not None:
                    await before_commit()
            except BaseException:
                await tx.rollback()
                raise
            with in_phase("commit"):
                await tx.commit()
        return results

    async def close(self) -> None:
        if getattr(self, "pool", None) is not None:
            self.pool.terminate()


class AsyncpgNoCacheClient(AsyncpgClient):
    name = "asyncpg-no-cache"
    description = "asyncpg.create_pool(statement_cache_size=0), the setting asyncpg's FAQ gives for PgBouncer"
    group = "driver"
    fixes = {
        "asyncpg-default": "",
        "asyncpg-unique-names": "",
        "rca-attempt-1": "and drop server_settings={'jit': 'off'} (a pooler refuses or drops that startup parameter)",
    }
    change = "statement_cache_size=0"
    snippet = "pool = await asyncpg.create_pool(DATABASE_URL, statement_cache_size=0)"
    docs = ("https://magicstack.github.io/asyncpg/current/faq.html#why-am-i-getting-prepared-statement-errors",)
    connect_kwargs = {"statement_cache_size": 0}


class AsyncpgUniqueNamesClient(AsyncpgClient):
    """What SQLAlchemy's prepared_statement_name_func does, without SQLAlchemy (and its NullPool): every statement
    prepared under a name of its own, so no two client connections can collide on a name."""

    names_each_statement = True  # the latency experiment's plain loop (lab.workloads.plain) prepares the same way

    name = "asyncpg-unique-names"
    group = "variant"
    description = (
        "asyncpg.create_pool, every query prepared as conn.prepare(sql, name=<uuid>) and then run, no SQLAlchemy"
    )

    async def _run(self, conn: Any, query: str, args: list[Any]) -> Rows:
        stmt = await conn.prepare(query, name=f"__lab_{uuid4().hex}__")
        return [tuple(r) for r in await stmt.fetch(*args)]
