"""The latency experiment's reference: the same INSERT ... RETURNING written as a user would write it with the driver
alone, on the driver object the configuration opened (its pool, engine or connection, with the configuration's own
settings), so the only difference from the measured call is the lab: its client class, its scenario, its checks.

Each call here is what the driver's documentation shows, and nothing else: no statement rewriting per call, no
result checking, no phase bookkeeping. The SQL text is written once per driver's parameter style, up front, as an
application would have it in its source. A configuration whose driver object is not one of these has no plain
loop, and its latency row says so (harness overhead: none).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import uuid4

Call = Callable[[str], Awaitable[Any]]  # one INSERT of the payload given; the row it returned


def insert_call(client: Any, table: str) -> Call | None:
    """The plain call for `client`'s opened driver object, or None where the lab knows no plain equivalent.

    Dispatches on the driver's own types (imported here, where a configuration needs them): the driver object is
    the configuration's, so the plain loop runs on the same connections with the same settings."""
    pool = getattr(client, "pool", None)
    engine = getattr(client, "db", None)
    dollar = f"INSERT INTO {table} (payload) VALUES ($1) RETURNING id, payload"
    pyformat = f"INSERT INTO {table} (payload) VALUES (%(payload)s) RETURNING id, payload"
    if engine is not None:
        from sqlalchemy import text
        from sqlalchemy.ext.asyncio import AsyncEngine

        if isinstance(engine, AsyncEngine):
            statement = text(f"INSERT INTO {table} (payload) VALUES (:payload) RETURNING id, payload")

            async def sqlalchemy_insert(payload: str) -> Any:
                async with engine.begin() as conn:
                    return (await conn.execute(statement, {"payload": payload})).one()

            return sqlalchemy_insert
    if pool is None:
        return None
    import asyncpg
    import pg8000.dbapi
    import pg8000.native
    import psycopg2.pool
    import psycopg_pool

    if isinstance(pool, asyncpg.Pool):
        if getattr(client, "names_each_statement", False):  # asyncpg-unique-names: a name of its own per statement

            async def asyncpg_named(payload: str) -> Any:
                async with pool.acquire() as conn:
                    statement = await conn.prepare(dollar, name=f"__plain_{uuid4().hex}__")
                    return await statement.fetchrow(payload)

            return asyncpg_named
        return lambda payload: pool.fetchrow(dollar, payload)
    if isinstance(pool, psycopg_pool.AsyncConnectionPool):

        async def psycopg_async(payload: str) -> Any:
            async with pool.connection() as conn:
                return await (await conn.execute(pyformat, {"payload": payload})).fetchone()

        return psycopg_async
    if isinstance(pool, psycopg_pool.ConnectionPool):

        def psycopg_sync(payload: str) -> Any:
            with pool.connection() as conn:
                return conn.execute(pyformat, {"payload": payload}).fetchone()

        return lambda payload: _threaded(client, psycopg_sync, payload)
    if isinstance(pool, psycopg2.pool.ThreadedConnectionPool):

        def psycopg2_insert(payload: str) -> Any:
            conn = pool.getconn()
            try:
                with conn.cursor() as cur:
                    cur.execute(pyformat, {"payload": payload})
                    row = cur.fetchone()
                conn.commit()
                return row
            finally:
                pool.putconn(conn)

        return lambda payload: _threaded(client, psycopg2_insert, payload)
    held = getattr(pool, "all", None) or [None]  # pg8000 has no pool: the configuration holds its connections
    if isinstance(held[0], pg8000.native.Connection):
        native, con = f"INSERT INTO {table} (payload) VALUES (:payload) RETURNING id, payload", held[0]
        return lambda payload: _threaded(client, lambda p: con.run(native, payload=p)[0], payload)
    if isinstance(held[0], pg8000.dbapi.Connection):
        dbapi = held[0]

        def pg8000_dbapi(payload: str) -> Any:
            cur = dbapi.cursor()
            cur.execute(pyformat, {"payload": payload})
            row = cur.fetchone()
            dbapi.commit()
            return row

        return lambda payload: _threaded(client, pg8000_dbapi, payload)
    return None


def _threaded(client: Any, fn: Callable[[str], Any], payload: str) -> Awaitable[Any]:
    """A blocking driver call from the event loop, on the thread pool the configuration runs its driver on (its
    executor is part of how the application is written), or asyncio's default one."""
    return asyncio.get_running_loop().run_in_executor(getattr(client, "executor", None), fn, payload)
