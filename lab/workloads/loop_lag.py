"""Event-loop lag while a query runs (claim C11): how long the loop cannot run anything else.

A ticker task asks to wake every millisecond and records how late it wakes; the
worst lateness while a query runs is how long the loop was blocked. psycopg2 called
from a coroutine blocks the loop for the whole query; through run_in_executor it
does not; asyncpg never does.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import asyncpg
import psycopg2

from lab.clients.configuration import Configuration

QUERY_S = 0.2
TICK_S = 0.001


@dataclass(frozen=True)
class LagResult:
    max_lag_ms: float
    query_ms: float


def _psycopg2_query(dsn: str) -> None:
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT pg_sleep({QUERY_S})")
        conn.commit()
    finally:
        conn.close()


async def _measure(run_query) -> LagResult:
    worst = 0.0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal worst
        while not done.is_set():
            t0 = time.perf_counter()
            await asyncio.sleep(TICK_S)
            worst = max(worst, time.perf_counter() - t0 - TICK_S)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)
    t0 = time.perf_counter()
    await run_query()
    elapsed = time.perf_counter() - t0
    done.set()
    await task
    return LagResult(round(worst * 1000, 2), round(elapsed * 1000, 2))


def measure(mode: str, dsn: str) -> LagResult:
    async def blocking() -> None:
        _psycopg2_query(dsn)  # as an async handler would call it without an executor

    async def executor() -> None:
        with ThreadPoolExecutor(max_workers=5) as pool:  # the RCA's executor
            await asyncio.get_running_loop().run_in_executor(pool, _psycopg2_query, dsn)

    async def native() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(f"SELECT pg_sleep({QUERY_S})")
        finally:
            await conn.close()

    runs = {"psycopg2-in-loop": blocking, "psycopg2-executor": executor, "asyncpg": native}
    return asyncio.run(_measure(runs[mode]))


#: The loop-lag experiment's subjects: how the query is called from the event loop.
MODES = {
    m.name: m
    for m in (
        Configuration(
            "psycopg2-in-loop",
            "psycopg2.connect + execute called directly inside a coroutine",
            ("psycopg2-binary",),
            group="probe",
        ),
        Configuration(
            "psycopg2-executor",
            "the RCA's execute_query: loop.run_in_executor(ThreadPoolExecutor(max_workers=5), ...)",
            ("psycopg2-binary",),
            group="probe",
        ),
        Configuration("asyncpg", "asyncpg.connect + execute, for comparison", ("asyncpg",), group="probe"),
    )
}
#: where loop lag is measured: straight to the server and through the pooler the RCA used
TOPOLOGIES = ("direct", "pgbouncer-transaction")
