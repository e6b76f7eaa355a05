"""Bursts larger than the server's max_connections (claim C9) and the RCA's hybrid under one (C13)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from lab.clients.configuration import Configuration
from lab.clients.rest import HttpxShared
from lab.results.measures import BurstMeasures
from lab.results.outcome import OK, Outcome, PhaseError, classify
from lab.topology.model import Endpoint

BURST = 40
HOLD_S = 0.05  # each burst client's query keeps its server connection this long
# the hybrid's inserts hold a pooled connection this long: 40 of them on 10 connections need
# 0.8 s, longer than the pool's 0.5 s acquire timeout, so the pool is exhausted for sure
HYBRID_HOLD_S = 0.2


@dataclass
class BurstResult:
    outcome: Outcome
    completed: int = 0
    failed: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    latencies_s: list[float] = field(default_factory=list)
    by_path: Counter[str] = field(default_factory=Counter)
    elapsed_s: float = 0.0

    def measures(self) -> BurstMeasures:
        return BurstMeasures(
            clients=BURST,
            hold_s=HOLD_S,
            hybrid_hold_s=HYBRID_HOLD_S,
            completed=self.completed,
            failed=self.failed,
            errors=dict(self.errors),
            by_path=dict(self.by_path),
            elapsed_s=round(self.elapsed_s, 3),
        )


async def _one_asyncpg(dsn: str) -> None:
    try:
        conn = await asyncpg.connect(dsn, timeout=10, statement_cache_size=0)
    except Exception as exc:
        raise PhaseError("connect", exc) from exc
    try:
        await conn.execute(f"SELECT pg_sleep({HOLD_S})")
    finally:
        await conn.close()


async def _one_psycopg(dsn: str) -> None:
    try:
        conn = await psycopg.AsyncConnection.connect(dsn, connect_timeout=10, prepare_threshold=None, autocommit=True)
    except Exception as exc:
        raise PhaseError("connect", exc) from exc
    async with conn:
        await conn.execute(f"SELECT pg_sleep({HOLD_S})")


CONNECTORS = {"burst-asyncpg": _one_asyncpg, "burst-psycopg": _one_psycopg}

#: The limits experiment's subjects (claims C9, C13).
SUBJECTS = {
    c.name: c
    for c in (
        Configuration(
            "burst-asyncpg",
            f"{BURST} concurrent asyncpg.connect() + one query each, no pool",
            ("asyncpg",),
            group="probe",
        ),
        Configuration(
            "burst-psycopg",
            f"{BURST} concurrent psycopg AsyncConnection.connect() + one query each, no pool",
            ("psycopg",),
            group="probe",
        ),
        Configuration(
            "rca-hybrid",
            "psycopg AsyncConnectionPool(min 2, max 10) direct, httpx REST insert on PoolTimeout",
            ("psycopg", "psycopg-pool", "httpx"),
            group="probe",
        ),
        Configuration(
            "pool-only",
            "the same psycopg AsyncConnectionPool(min 2, max 10) without the REST fallback",
            ("psycopg", "psycopg-pool"),
            group="probe",
        ),
    )
}


async def _gather(tasks: list[Any], result: BurstResult) -> None:
    t0 = time.perf_counter()

    async def timed(coro: Any) -> None:
        start = time.perf_counter()
        try:
            await coro
        except Exception as exc:
            result.failed += 1
            outcome = classify(exc)
            result.errors[f"{outcome.sqlstate or outcome.error_class}"] += 1
            if result.outcome.kind == "ok":
                result.outcome = outcome
            return
        result.completed += 1
        result.latencies_s.append(time.perf_counter() - start)

    await asyncio.gather(*(timed(t) for t in tasks))
    result.elapsed_s = time.perf_counter() - t0


def burst(connector: str, dsn: str) -> BurstResult:
    """BURST clients connect at once, each holding a server connection for HOLD_S."""
    result = BurstResult(OK)
    one = CONNECTORS[connector]
    asyncio.run(_gather([one(dsn) for _ in range(BURST)], result))
    return result


async def _hybrid(direct_dsn: str, rest: Endpoint, result: BurstResult, fallback: bool) -> None:
    """The RCA's recommendation: psycopg pool straight to the server (2-10), REST when it is exhausted."""
    pool = AsyncConnectionPool(
        direct_dsn, min_size=2, max_size=10, open=False, timeout=0.5, kwargs={"prepare_threshold": None}
    )
    await pool.open(wait=True, timeout=10)
    http = HttpxShared(rest, tls=False)
    await http.open()

    async def insert(i: int) -> None:
        try:
            async with pool.connection() as conn:
                await conn.execute("INSERT INTO lab_items (payload) VALUES (%s)", [f"hybrid-{i}"])
                await conn.execute(f"SELECT pg_sleep({HYBRID_HOLD_S})")
            result.by_path["pool"] += 1
        except PoolTimeout:
            if not fallback:
                raise
            reply = await http.insert({"payload": f"hybrid-rest-{i}"})
            if not reply.ok:
                raise RuntimeError(f"REST fallback answered {reply.status}: {reply.body}") from None
            result.by_path["rest"] += 1

    try:
        await _gather([insert(i) for i in range(BURST)], result)
    finally:
        await http.close()
        await pool.close()


def hybrid(direct_dsn: str, rest: Endpoint, fallback: bool = True) -> BurstResult:
    result = BurstResult(OK)
    asyncio.run(_hybrid(direct_dsn, rest, result, fallback))
    return result
