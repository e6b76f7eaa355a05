"""pg8000, the pure-Python driver: its native interface and its DB-API interface.

pg8000 keeps no pool of its own, so each configuration holds `size` connections in a queue (as an
application's own small pool would) and runs the blocking calls in a thread pool, the way an async
application uses a sync driver. Both interfaces send every statement through the extended protocol on
the unnamed statement unless asked to prepare (pg8000's docs, "Prepared statements"), but in three
round trips, each ending in a Sync (pg8000/core.py, execute_unnamed: Parse; Describe; Bind and Execute).
Outside an explicit transaction each Sync ends a transaction, and a transaction pooler may hand the
next step another server connection, where the unnamed statement is not.
"""

from __future__ import annotations

import asyncio
import queue
import ssl
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

import pg8000.dbapi
import pg8000.native

from lab.clients.python.base import BeforeCommit, Client, Rows, Step, to_pyformat
from lab.results.outcome import in_phase

T = TypeVar("T")


def connect_args(dsn: str, timeout: float) -> dict[str, Any]:
    """A libpq URL as pg8000's keywords (it takes no URL): sslmode as its `ssl_context`. pg8000 reads None as
    libpq's prefer (it asks for TLS and takes it where offered), so disable is False; require: encrypted, not
    verified; verify-ca / verify-full: against the URL's sslrootcert."""
    parts = urlsplit(dsn)
    query = dict(parse_qsl(parts.query))
    mode = query.get("sslmode", "prefer")
    context: ssl.SSLContext | bool | None = False if mode == "disable" else None
    if mode in ("require", "verify-ca", "verify-full"):
        context = ssl.create_default_context(cafile=query.get("sslrootcert"))
        if mode == "require":
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        elif mode == "verify-ca":
            context.check_hostname = False
    return {
        "user": unquote(parts.username or ""),
        "password": unquote(parts.password or ""),
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 5432,
        "database": unquote(parts.path.lstrip("/")) or None,
        "ssl_context": context,
        "timeout": max(1.0, timeout),
    }


class _Queue:
    """`size` open connections handed out one at a time; a caller waits at most `timeout` for one."""

    def __init__(self, make: Callable[[], Any], size: int, timeout: float) -> None:
        self.timeout = timeout
        self.all = [make() for _ in range(size)]
        self.free: queue.Queue[Any] = queue.Queue()
        for conn in self.all:
            self.free.put(conn)

    @contextmanager
    def connection(self) -> Iterator[Any]:
        try:
            conn = self.free.get(timeout=self.timeout)
        except queue.Empty:
            raise TimeoutError(f"no free connection within {self.timeout:g}s") from None
        try:
            yield conn
        finally:
            self.free.put(conn)

    def close(self) -> None:
        for conn in self.all:
            try:
                conn.close()
            except Exception:  # a connection the server already closed
                pass


class Pg8000NativeClient(Client):
    name = "pg8000-native"
    packages = ("pg8000",)
    description = "pg8000.native.Connection, con.run(sql, **params) (the unnamed statement), a queue of connections"

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def _connect(self) -> Any:
        return pg8000.native.Connection(**connect_args(self.dsn, self.timeout))

    async def open(self) -> None:
        self.executor = ThreadPoolExecutor(max_workers=max(1, self.size), thread_name_prefix=self.name)
        self.pool = await self._call(_Queue, self._connect, self.size, self.timeout)

    def _run(
        self, steps: Sequence[Step], transaction: bool, before_commit: BeforeCommit | None, loop: Any
    ) -> list[Rows]:
        results: list[Rows] = []
        with self.pool.connection() as con:
            if transaction:
                con.run("BEGIN")
            try:
                for step in steps:
                    sql, params = step(results)
                    results.append([tuple(r) for r in con.run(sql, **params) or []])
                if before_commit is not None:  # the wait is the event loop's; this thread holds the connection
                    asyncio.run_coroutine_threadsafe(before_commit(), loop).result()
            except BaseException:
                if transaction:
                    con.run("ROLLBACK")
                raise
            if transaction:
                with in_phase("commit"):
                    con.run("COMMIT")
        return results

    async def fetch(self, sql: str, params: dict[str, Any]) -> Rows:
        return (await self._call(self._run, [lambda _r: (sql, params)], False, None, None))[0]

    async def transaction(self, steps: Sequence[Step], before_commit: BeforeCommit | None = None) -> list[Rows]:
        return await self._call(self._run, steps, True, before_commit, asyncio.get_running_loop())

    async def close(self) -> None:
        if getattr(self, "pool", None) is not None:
            await self._call(self.pool.close)
        if getattr(self, "executor", None) is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)


class Pg8000DbapiClient(Pg8000NativeClient):
    name = "pg8000-dbapi"
    description = (
        "pg8000.dbapi.connect(), cursor.execute(sql, params) with the pyformat paramstyle, a queue of connections"
    )

    def _connect(self) -> Any:
        pg8000.dbapi.paramstyle = "pyformat"  # the module's one setting (DB-API), read by every execute()
        return pg8000.dbapi.connect(**connect_args(self.dsn, self.timeout))

    def _run(
        self, steps: Sequence[Step], transaction: bool, before_commit: BeforeCommit | None, loop: Any
    ) -> list[Rows]:
        results: list[Rows] = []
        with self.pool.connection() as conn:
            cur = conn.cursor()
            try:  # DB-API: a transaction is open from the first statement until commit
                for step in steps:
                    sql, params = step(results)
                    cur.execute(to_pyformat(sql), params)
                    results.append([tuple(r) for r in cur.fetchall()])
                if before_commit is not None:
                    asyncio.run_coroutine_threadsafe(before_commit(), loop).result()
            except BaseException:
                conn.rollback()
                raise
            with in_phase("commit"):
                conn.commit()
        return results
