"""Running one cell: a client, a scenario, repeated, under a time limit. The one cell harness,
for the drivers' adapters and the REST clients alike: both open, work, and close."""

from __future__ import annotations

import asyncio
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lab.clients.base import Client
from lab.results.outcome import OK, Outcome, PhaseError, classify
from lab.workloads.scenarios import Scenario

DEFAULT_REPEATS = 2
DEFAULT_CELL_TIMEOUT = 10.0
POOL_SIZE = 4
STAGGER_S = (0.0, 0.002, 0.0005, 0.003, 0.001)


@dataclass
class CellResult:
    outcome: Outcome
    latencies_s: list[float] = field(default_factory=list)
    iterations: int = 0
    elapsed_s: float = 0.0


async def _iteration(client: Any, scenario: Scenario, latencies: list[float]) -> None:
    try:
        await client.open()
    except Exception as exc:
        raise PhaseError("connect", exc) from exc

    async def worker(w: int) -> None:
        for op in range(scenario.ops_per_worker):
            # A fixed, uneven pause between operations: without it the workers fall
            # into a steady cycle in which each client connection happens to get the
            # same server connection every time, and a transaction-mode failure
            # appears or not depending on that start-up accident.
            if scenario.stagger:
                await asyncio.sleep(STAGGER_S[(w * 7 + op * 3) % len(STAGGER_S)])
            t0 = time.perf_counter()
            try:
                await scenario.operation(client, w, op)
            except PhaseError:
                raise
            except Exception as exc:
                raise PhaseError("first query" if op == 0 else "later query", exc) from exc
            latencies.append(time.perf_counter() - t0)

    try:
        async with asyncio.TaskGroup() as tg:
            for w in range(scenario.workers):
                tg.create_task(worker(w))
    except ExceptionGroup as group:
        raise group.exceptions[0] from None


async def run_cell(
    make_client: Callable[[], Any],
    scenario: Scenario,
    repeats: int = DEFAULT_REPEATS,
    timeout: float = DEFAULT_CELL_TIMEOUT,
    after_iteration: Callable[[], None] | None = None,
) -> CellResult:
    """The first failure of any iteration is the cell's outcome; ok only if every iteration was.
    Each iteration gets a new client from make_client: what one pool learnt does not carry over.
    `after_iteration` runs once each iteration's client is closed (the prepared-statement census)."""
    result = CellResult(OK)
    started = time.perf_counter()
    client: Client | None = None
    try:
        async with asyncio.timeout(timeout):
            for i in range(repeats):
                result.iterations = i + 1
                client = make_client()
                try:
                    await _iteration(client, scenario, result.latencies_s)
                except Exception as exc:
                    result.outcome = classify(exc, iteration=i)
                    break
                finally:
                    await _close(client)
                    client = None
                    if after_iteration is not None:
                        after_iteration()
    except TimeoutError:
        result.outcome = Outcome(
            "timeout", iteration=result.iterations - 1, detail=f"no outcome within the cell limit of {timeout:g}s"
        )
        if client is not None:
            await _close(client)
    result.elapsed_s = time.perf_counter() - started
    return result


async def _close(client: Any) -> None:
    try:
        await asyncio.wait_for(client.close(), timeout=5)
    except Exception:
        pass


def run_cell_sync(
    client_cls: type[Client],
    dsn: str,
    scenario: Scenario,
    repeats: int = DEFAULT_REPEATS,
    timeout: float = DEFAULT_CELL_TIMEOUT,
    pool_size: int = POOL_SIZE,
    after_iteration: Callable[[], None] | None = None,
) -> CellResult:
    """A driver configuration's cell: a pool of `pool_size` connections to `dsn`, new for each iteration."""
    # per-operation limit below the cell's, so a wait inside a driver ends as that driver's own error where it has one
    return run_sync(
        lambda: client_cls(dsn, pool_size, timeout=op_timeout(timeout)), scenario, repeats, timeout, after_iteration
    )


def op_timeout(cell_timeout: float) -> float:
    """The limit a client waits for one connection or operation: a tenth of the cell's (1 s by default), so a pool
    that can never connect (the RCA's attempt 2 through PgBouncer) ends as the pool's own PoolTimeout well inside
    the cell's limit. Every pool here is as large as its workers need, so a healthy cell never waits for one."""
    return max(0.5, cell_timeout / 10)


def run_sync(
    make_client: Callable[[], Any],
    scenario: Scenario,
    repeats: int = DEFAULT_REPEATS,
    timeout: float = DEFAULT_CELL_TIMEOUT,
    after_iteration: Callable[[], None] | None = None,
) -> CellResult:
    with warnings.catch_warnings():
        # psycopg_pool warns that the RCA's attempt 2 opens in the constructor; that is the point.
        warnings.simplefilter("ignore", DeprecationWarning)
        return asyncio.run(run_cell(make_client, scenario, repeats, timeout, after_iteration))
