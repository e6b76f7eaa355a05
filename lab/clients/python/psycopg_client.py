"""psycopg 3 through psycopg_pool, async and sync.

psycopg_pool connects in the background and only *logs* why a connection failed;
the application sees a PoolTimeout. `capture_pool_errors` keeps the logged error
so the outcome names what the server or pooler really answered.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

from lab.clients.python.base import BeforeCommit, Client, Rows, Step, to_pyformat
from lab.results.outcome import PhaseError, in_phase


class _Keep(logging.Handler):
    """psycopg_pool's logged connection errors, numbered as they come (the last few kept): installed once, so a
    statement pays for reading a counter, not for adding and removing a handler on a global logger."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen = 0
        self.last: deque[tuple[int, BaseException]] = deque(maxlen=16)

    def emit(self, record: logging.LogRecord) -> None:
        for arg in record.args if isinstance(record.args, tuple) else ():
            if isinstance(arg, BaseException):
                self.seen += 1
                self.last.append((self.seen, arg))


_KEEP = _Keep()
logging.getLogger("psycopg.pool").addHandler(_KEEP)


@contextmanager
def capture_pool_errors() -> Iterator[None]:
    """While open: a PoolTimeout is re-raised from the last connection error psycopg_pool logged meanwhile."""
    start = _KEEP.seen
    try:
        yield
    except PoolTimeout as exc:
        logged = [error for n, error in _KEEP.last if n > start]
        if logged:
            # the pool never got a connection: the failure was at connect, whatever
            # the application was doing when it gave up waiting
            exc.__cause__ = logged[-1]
            raise PhaseError("connect", exc) from exc
        raise


def with_libpq(versions: dict[str, str]) -> dict[str, str]:
    """psycopg's versions and the libpq it runs on: the binary wheel brings its own (newer) one, the pure-Python
    implementation loads the system's, and how a prepared statement is deallocated depends on it."""
    v = psycopg.pq.version()
    return {**versions, "libpq": f"{v // 10000}.{v % 100}", "psycopg-impl": psycopg.pq.__impl__}


class PsycopgAsyncClient(Client):
    name = "psycopg-async-default"
    packages = ("psycopg", "psycopg-pool", "psycopg-binary")
    description = "psycopg 3 AsyncConnectionPool, default settings (prepares a query after 5 executions)"

    @classmethod
    def versions(cls) -> dict[str, str]:
        return with_libpq(super().versions())

    connect_kwargs: dict[str, Any] = {}

    async def open(self) -> None:
        self.pool = AsyncConnectionPool(
            self.dsn,
            min_size=self.size,
            max_size=self.size,
            open=False,
            timeout=self.timeout,
            kwargs={"connect_timeout": max(1, int(self.timeout)), **self.connect_kwargs},
        )
        with capture_pool_errors():
            await self.pool.open(wait=True, timeout=self.timeout)

    async def fetch(self, sql: str, params: dict[str, Any]) -> Rows:
        with capture_pool_errors():
            async with self.pool.connection(timeout=self.timeout) as conn:
                cur = await conn.execute(to_pyformat(sql), params)
                return await cur.fetchall()

    batch_api = "cursor.executemany(query, params, returning=True): psycopg sends it in pipeline mode"

    async def batch(self, sql: str, params: Sequence[dict[str, Any]]) -> list[Rows]:
        with capture_pool_errors():
            async with self.pool.connection(timeout=self.timeout) as conn:
                cur = conn.cursor()
                await cur.executemany(to_pyformat(sql), params, returning=True)
                results = [await cur.fetchall()]
                while cur.nextset():
                    results.append(await cur.fetchall())
                with in_phase("commit"):
                    await conn.commit()
        return results

    async def transaction(self, steps: Sequence[Step], before_commit: BeforeCommit | None = None) -> list[Rows]:
        results: list[Rows] = []
        with capture_pool_errors():
            async with self.pool.connection(timeout=self.timeout) as conn:
                for step in steps:
                    sql, params = step(results)
                    cur = await conn.execute(to_pyformat(sql), params)
                    results.append(await cur.fetchall())
                if before_commit is not None:
                    await before_commit()
                with in_phase("commit"):
                    await conn.commit()
        return results

    async def close(self) -> None:
        if getattr(self, "pool", None) is not None:
            await self.pool.close(timeout=2)


class PsycopgAsyncNoPrepareClient(PsycopgAsyncClient):
    name = "psycopg-async-no-prepare"
    description = (
        "psycopg 3 AsyncConnectionPool with prepare_threshold=None (never prepares), per psycopg's docs for PgBouncer"
    )
    connect_kwargs = {"prepare_threshold": None}
    fixes = {
        "psycopg-async-default": "",
        "psycopg-async-prepare-0": "",
        "rca-attempt-2": "and drop kwargs={'options': '-c jit=off'} (a pooler refuses or drops that startup parameter)",
    }
    change = "prepare_threshold=None"
    snippet = "pool = AsyncConnectionPool(DATABASE_URL, kwargs={'prepare_threshold': None})"
    docs = ("https://www.psycopg.org/psycopg3/docs/advanced/prepare.html#using-prepared-statements-with-pgbouncer",)


class PsycopgSyncClient(Client):
    """The sync pool driven from threads, the way an async application would have to use it."""

    name = "psycopg-sync"
    packages = ("psycopg", "psycopg-pool", "psycopg-binary")
    description = "psycopg 3 sync ConnectionPool, default settings, called through a thread pool"

    @classmethod
    def versions(cls) -> dict[str, str]:
        return with_libpq(super().versions())

    connect_kwargs: dict[str, Any] = {}

    async def _call(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def open(self) -> None:
        self.executor = ThreadPoolExecutor(max_workers=self.size, thread_name_prefix=self.name)
        self.pool = ConnectionPool(
            self.dsn,
            min_size=self.size,
            max_size=self.size,
            open=False,
            timeout=self.timeout,
            kwargs={"connect_timeout": max(1, int(self.timeout)), **self.connect_kwargs},
        )

        def _open() -> None:
            with capture_pool_errors():
                self.pool.open(wait=True, timeout=self.timeout)

        await self._call(_open)

    def _fetch(self, sql: str, params: dict[str, Any]) -> Rows:
        with capture_pool_errors(), self.pool.connection(timeout=self.timeout) as conn:
            return conn.execute(to_pyformat(sql), params).fetchall()

    async def fetch(self, sql: str, params: dict[str, Any]) -> Rows:
        return await self._call(self._fetch, sql, params)

    def _transaction(
        self, steps: Sequence[Step], before_commit: BeforeCommit | None, loop: asyncio.AbstractEventLoop
    ) -> list[Rows]:
        results: list[Rows] = []
        with capture_pool_errors(), self.pool.connection(timeout=self.timeout) as conn:
            for step in steps:
                sql, params = step(results)
                results.append(conn.execute(to_pyformat(sql), params).fetchall())
            if before_commit is not None:  # the wait is the event loop's; this thread holds the connection meanwhile
                asyncio.run_coroutine_threadsafe(before_commit(), loop).result()
            with in_phase("commit"):
                conn.commit()
        return results

    async def transaction(self, steps: Sequence[Step], before_commit: BeforeCommit | None = None) -> list[Rows]:
        return await self._call(self._transaction, steps, before_commit, asyncio.get_running_loop())

    batch_api = "cursor.executemany(query, params, returning=True): psycopg sends it in pipeline mode"

    def _batch(self, sql: str, params: Sequence[dict[str, Any]]) -> list[Rows]:
        with capture_pool_errors(), self.pool.connection(timeout=self.timeout) as conn:
            cur = conn.cursor()
            cur.executemany(to_pyformat(sql), params, returning=True)
            results = [cur.fetchall()]
            while cur.nextset():
                results.append(cur.fetchall())
            with in_phase("commit"):
                conn.commit()
        return results

    async def batch(self, sql: str, params: Sequence[dict[str, Any]]) -> list[Rows]:
        return await self._call(self._batch, sql, params)

    async def close(self) -> None:
        if getattr(self, "pool", None) is not None:
            await asyncio.get_running_loop().run_in_executor(None, lambda: self.pool.close(timeout=2))
        if getattr(self, "executor", None) is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)


class PsycopgSyncNoPrepareClient(PsycopgSyncClient):
    name = "psycopg-sync-no-prepare"
    description = (
        "psycopg 3 sync ConnectionPool with prepare_threshold=None (never prepares): the fix psycopg's docs give, sync"
    )
    connect_kwargs = {"prepare_threshold": None}
    group = "variant"
    fixes = {"psycopg-sync": "", "psycopg-sync-prepare-0": ""}
    change = "prepare_threshold=None"
    snippet = "pool = ConnectionPool(DATABASE_URL, kwargs={'prepare_threshold': None})"
    docs = ("https://www.psycopg.org/psycopg3/docs/advanced/prepare.html#using-prepared-statements-with-pgbouncer",)


class PsycopgAsyncPrepareFirstClient(PsycopgAsyncClient):
    name = "psycopg-async-prepare-0"
    group = "variant"
    description = "psycopg 3 AsyncConnectionPool with prepare_threshold=0: prepares every query at its first execution"
    connect_kwargs = {"prepare_threshold": 0}


class PsycopgSyncPrepareFirstClient(PsycopgSyncClient):
    name = "psycopg-sync-prepare-0"
    group = "variant"
    description = "psycopg 3 sync ConnectionPool with prepare_threshold=0: prepares every query at its first execution"
    connect_kwargs = {"prepare_threshold": 0}


__all__ = ["PsycopgAsyncClient", "PsycopgAsyncNoPrepareClient", "PsycopgSyncClient", "capture_pool_errors", "psycopg"]
