"""SQLAlchemy async engines (asyncpg and psycopg dialects) with SQLAlchemy's own pool."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from uuid import uuid4

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from lab.clients.python.base import BeforeCommit, Client, Rows, Step
from lab.results.outcome import in_phase


class SqlalchemyAsyncpgClient(Client):
    #: pool_size=5, max_overflow=10 (below): up to 15 connections, whatever the caller asked for
    @classmethod
    def most_connections(cls, size: int, concurrency: int) -> int:
        return 15

    name = "sqlalchemy-asyncpg-default"
    packages = ("sqlalchemy", "asyncpg")
    description = "create_async_engine('postgresql+asyncpg://...', pool_size=5, max_overflow=10), the RCA's solution 5"
    scheme = "postgresql+asyncpg"

    def engine(self) -> AsyncEngine:
        return create_async_engine(
            self._url(), pool_size=5, max_overflow=10, pool_timeout=self.timeout, connect_args=self._ssl_args()
        )

    def _url(self) -> str:
        url = self.dsn.replace("postgresql://", self.scheme + "://", 1)
        if self.scheme.endswith("+asyncpg"):
            # SQLAlchemy hands URL query options to asyncpg.connect() as keywords; asyncpg
            # calls libpq's sslmode `ssl` (SQLAlchemy's docs: "?ssl=require") and has no sslrootcert keyword:
            # a CA to verify against goes in as an SSL context (_ssl_args)
            parts = urlsplit(url)
            query = [(k, v) for k, v in parse_qsl(parts.query) if k != "sslrootcert"]
            query = [("ssl", v) for k, v in query if k == "sslmode"] + [(k, v) for k, v in query if k != "sslmode"]
            if self._ca_file() is not None:
                query = [(k, v) for k, v in query if k != "ssl"]
            url = urlunsplit(parts._replace(query=urlencode(query)))
        return url

    def _ca_file(self) -> str | None:
        return dict(parse_qsl(urlsplit(self.dsn).query)).get("sslrootcert")

    def _ssl_args(self) -> dict[str, Any]:
        ca = self._ca_file()
        if ca is None or not self.scheme.endswith("+asyncpg"):
            return {}
        return {"ssl": ssl.create_default_context(cafile=ca)}  # verify-full: the chain and the host name

    async def open(self) -> None:
        self.db = self.engine()
        # check out `size` connections at once, so the pool holds several
        conns = [await self.db.connect() for _ in range(self.size)]
        for conn in conns:
            await conn.close()

    async def fetch(self, sql: str, params: dict[str, Any]) -> Rows:
        return (await self.transaction([lambda _r: (sql, params)]))[0]

    async def transaction(self, steps: Sequence[Step], before_commit: BeforeCommit | None = None) -> list[Rows]:
        results: list[Rows] = []
        async with self.db.connect() as conn:
            for step in steps:
                sql, params = step(results)
                results.append([tuple(r) for r in (await conn.execute(text(sql), params)).all()])
            if before_commit is not None:
                await before_commit()
            with in_phase("commit"):
                await conn.commit()
        return results

    async def close(self) -> None:
        if getattr(self, "db", None) is not None:
            await asyncio.wait_for(self.db.dispose(), timeout=5)


class SqlalchemyAsyncpgPgbouncerClient(SqlalchemyAsyncpgClient):
    @classmethod
    def most_connections(cls, size: int, concurrency: int) -> int:
        return concurrency  # NullPool: one connection per checkout

    name = "sqlalchemy-asyncpg-pgbouncer"
    fixes = {"sqlalchemy-asyncpg-default": ""}
    change = "poolclass=NullPool and prepared_statement_name_func (unique statement names)"
    snippet = (
        "engine = create_async_engine(DATABASE_URL, poolclass=NullPool,\n"
        "    connect_args={'prepared_statement_name_func': lambda: f'__asyncpg_{uuid4()}__'})"
    )
    docs = ("https://docs.sqlalchemy.org/en/20/dialects/postgresql.html#prepared-statement-name-with-pgbouncer",)
    description = (
        "create_async_engine with poolclass=NullPool and prepared_statement_name_func=uuid names, "
        "as SQLAlchemy's asyncpg docs give for PgBouncer"
    )

    def engine(self) -> AsyncEngine:
        return create_async_engine(
            self._url(),
            poolclass=NullPool,
            connect_args={"prepared_statement_name_func": lambda: f"__asyncpg_{uuid4()}__", **self._ssl_args()},
        )


class SqlalchemyPsycopgClient(SqlalchemyAsyncpgClient):
    name = "sqlalchemy-psycopg"
    packages = ("sqlalchemy", "psycopg")
    description = "create_async_engine('postgresql+psycopg://...', pool_size=5, max_overflow=10)"
    scheme = "postgresql+psycopg"


class SqlalchemyPsycopgNoPrepareClient(SqlalchemyPsycopgClient):
    name = "sqlalchemy-psycopg-no-prepare"
    group = "variant"
    fixes = {"sqlalchemy-psycopg": ""}
    change = "connect_args={'prepare_threshold': None}"
    snippet = "engine = create_async_engine(DATABASE_URL, connect_args={'prepare_threshold': None})"
    docs = ("https://www.psycopg.org/psycopg3/docs/advanced/prepare.html#using-prepared-statements-with-pgbouncer",)
    description = (
        "create_async_engine('postgresql+psycopg://...', pool_size=5, connect_args={'prepare_threshold': None})"
    )

    def engine(self) -> AsyncEngine:
        return create_async_engine(
            self._url(),
            pool_size=5,
            max_overflow=10,
            pool_timeout=self.timeout,
            connect_args={"prepare_threshold": None},
        )


class SqlalchemyAsyncpgNoCacheClient(SqlalchemyAsyncpgClient):
    name = "sqlalchemy-asyncpg-no-cache"
    group = "variant"
    fixes = {"sqlalchemy-asyncpg-default": ""}
    change = "?prepared_statement_cache_size=0 and connect_args={'statement_cache_size': 0}"
    snippet = (
        "engine = create_async_engine(DATABASE_URL + '?prepared_statement_cache_size=0',\n"
        "    connect_args={'statement_cache_size': 0})"
    )
    docs = (
        "https://docs.sqlalchemy.org/en/20/dialects/postgresql.html#prepared-statement-cache",
        "https://magicstack.github.io/asyncpg/current/faq.html#why-am-i-getting-prepared-statement-errors",
    )
    description = (
        "create_async_engine('postgresql+asyncpg://...?prepared_statement_cache_size=0', pool_size=5, "
        "connect_args={'statement_cache_size': 0}): SQLAlchemy's own pool, both statement caches off"
    )

    def engine(self) -> AsyncEngine:
        sep = "&" if "?" in self._url() else "?"
        return create_async_engine(
            self._url() + f"{sep}prepared_statement_cache_size=0",
            pool_size=5,
            max_overflow=10,
            pool_timeout=self.timeout,
            connect_args={"statement_cache_size": 0, **self._ssl_args()},
        )
