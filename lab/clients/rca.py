"""The RCA's attempts 1 and 2, as written in the RCA (docs/incident.md): client configurations of their own.

Only the pool construction is the RCA's; the workload that follows is the lab's
repeated-query scenario, so a pool that does connect is also checked for the
prepared-statement failures that come after the connection.
"""

from __future__ import annotations

import asyncpg
from psycopg_pool import AsyncConnectionPool

from lab.clients.asyncpg_client import AsyncpgClient
from lab.clients.psycopg_client import PsycopgAsyncClient, capture_pool_errors


class RcaAttempt1(AsyncpgClient):
    name = "rca-attempt-1"
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
