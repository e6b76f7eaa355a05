"""psycopg2 in a thread pool executor, as the RCA runs it (ThreadPoolExecutor(max_workers=5)).

The RCA opens a new connection per call; this configuration keeps the executor and
uses psycopg2's own ThreadedConnectionPool, so it is compared with the other pooled
clients on equal terms.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg2
import psycopg2.pool

from lab.clients.python.base import BeforeCommit, Client, Rows, Step, to_pyformat
from lab.results.outcome import in_phase


class Psycopg2Client(Client):
    name = "psycopg2-executor"
    packages = ("psycopg2-binary",)
    description = (
        "psycopg2 ThreadedConnectionPool driven through loop.run_in_executor(ThreadPoolExecutor(max_workers=5))"
    )

    async def _call(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def open(self) -> None:
        self.executor = ThreadPoolExecutor(max_workers=5, thread_name_prefix=self.name)
        self.pool = await self._call(
            lambda: psycopg2.pool.ThreadedConnectionPool(
                self.size, self.size, self.dsn, connect_timeout=max(1, int(self.timeout))
            )
        )

    def _run(
        self,
        steps: Sequence[Step],
        before_commit: BeforeCommit | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> list[Rows]:
        conn = self.pool.getconn()
        results: list[Rows] = []
        try:
            with conn.cursor() as cur:
                for step in steps:
                    sql, params = step(results)
                    cur.execute(to_pyformat(sql), params)
                    results.append(cur.fetchall())
            if before_commit is not None and loop is not None:  # the wait is the event loop's; this thread holds on
                asyncio.run_coroutine_threadsafe(before_commit(), loop).result()
            with in_phase("commit"):
                conn.commit()
        except BaseException:
            if not conn.closed:
                conn.rollback()
            raise
        finally:
            self.pool.putconn(conn)
        return results

    async def fetch(self, sql: str, params: dict[str, Any]) -> Rows:
        return (await self._call(self._run, [lambda _r: (sql, params)]))[0]

    async def transaction(self, steps: Sequence[Step], before_commit: BeforeCommit | None = None) -> list[Rows]:
        return await self._call(self._run, steps, before_commit, asyncio.get_running_loop())

    async def close(self) -> None:
        if getattr(self, "pool", None) is not None:
            self.pool.closeall()
        if getattr(self, "executor", None) is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)
