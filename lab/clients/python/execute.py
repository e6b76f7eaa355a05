"""The in-process runner: a cell spec (lab.clients.contract) run by a Python configuration in the lab's own process.

One iteration opens the configuration's pool, runs every worker's operations concurrently,
checks every answer, and closes the pool; the first failure of any iteration is the cell's
outcome, with the phase it happened in. The same loop serves the lab's own Python workloads
that are code rather than data (the application processes' turns, the REST tier's calls):
`run_cell` takes per worker a list of operations as coroutines.

`python -m lab.clients.serve` runs this same runner in another Python process (another
environment, the system's libpq) behind the contract's JSON lines.
"""

from __future__ import annotations

import asyncio
import time
import warnings
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from lab.clients.contract import PER_WORKER, CellSpec, Operation, params_of, plain, rows_match
from lab.clients.python.base import Client, Rows
from lab.results.outcome import OK, CellResult, Outcome, PhaseError, WrongResult, classify

#: one operation of one worker, on the iteration's open client
OpFn = Callable[[Any], Awaitable[None]]


class Order:
    """The order a spec sets between the operations of different workers (the contract's `after`, `during` and
    `hold`), for one iteration at a time: each operation marks when it has run its statements (a held transaction,
    before it waits) and when it is done."""

    def __init__(self) -> None:
        self.ran: dict[tuple[int, int], asyncio.Event] = {}
        self.done: dict[tuple[int, int], asyncio.Event] = {}

    def reset(self) -> None:
        self.ran.clear()
        self.done.clear()

    def _event(self, table: dict[tuple[int, int], asyncio.Event], ref: tuple[int, int]) -> asyncio.Event:
        return table.setdefault(ref, asyncio.Event())

    async def until_ran(self, refs: Sequence[tuple[int, int]]) -> None:
        for ref in refs:
            await self._event(self.ran, ref).wait()

    async def until_done(self, refs: Sequence[tuple[int, int]]) -> None:
        for ref in refs:
            await self._event(self.done, ref).wait()

    def mark_ran(self, ref: tuple[int, int]) -> None:
        self._event(self.ran, ref).set()

    def mark_done(self, ref: tuple[int, int]) -> None:
        self.mark_ran(ref)
        self._event(self.done, ref).set()


async def perform(client: Client, op: Operation, order: Order | None = None, me: tuple[int, int] = (0, 0)) -> None:
    """An operation of a spec: one statement in its own transaction (fetch), several in one (transaction), or one
    SQL text's parameter sets as a batch; every answer held to what the statement must return. With an order, it
    starts after the operations it names have run, and a held transaction commits once they are done."""
    if order is not None:
        await order.until_done(op.after)
        await order.until_ran(op.during)
    if op.pause_s:
        await asyncio.sleep(op.pause_s)
    if op.call is not None:
        raise NotImplementedError(f"the in-process runner implements no named operation {op.call!r}")
    try:
        if op.batch:
            results = await client.batch(op.statements[0].sql, [params_of(s, []) for s in op.statements])
        elif op.transaction:

            async def before_commit() -> None:
                assert order is not None
                order.mark_ran(me)  # its statements have run: the server connection is pinned until the commit
                await order.until_done(op.hold)

            steps = [_step(s) for s in op.statements]
            results = await client.transaction(steps, before_commit if order is not None and op.hold else None)
        else:
            first = op.statements[0]
            results = [await client.fetch(first.sql, params_of(first, []))]
    finally:
        if order is not None:
            order.mark_done(me)
    check(op, results)


def check(op: Operation, results: Sequence[Any]) -> None:
    """Every answer of an operation held to what its statement must return: WrongResult with both, where one is not.
    Apart from perform for a benchmark, which checks after its timer stops (lab.workloads.bench)."""
    for statement, rows in zip(op.statements, results, strict=True):
        if statement.expect is not None and not rows_match(statement.expect, rows, results):
            raise WrongResult(statement.what or statement.sql, plain(rows), _shown_expect(statement.expect, results))


def _step(statement: Any) -> Callable[[list[Rows]], tuple[str, dict[str, Any]]]:
    return lambda results: (statement.sql, params_of(statement, results))


def _shown_expect(expect: list[list[Any]], results: Sequence[Any]) -> list[list[Any]]:
    """What was expected, with references resolved, as the row records it."""
    out = []
    for row in expect:
        shown = []
        for v in row:
            if isinstance(v, dict) and "ref" in v:
                step, r, c = v["ref"]
                shown.append(plain(results[step][r][c]))
            elif isinstance(v, dict) and v.get("type"):
                shown.append(f"<{v['type']}>")
            else:
                shown.append(v)
        out.append(shown)
    return out


async def _iteration(
    client: Any,
    workers: Sequence[Sequence[OpFn]],
    latencies: list[float],
    outstanding: dict[int, str],
    around_open: Callable[[], AbstractAsyncContextManager[None]] | None,
) -> None:
    try:
        if around_open is None:
            await client.open()
        else:
            async with around_open():
                await client.open()
    except Exception as exc:
        raise PhaseError("connect", exc) from exc

    async def worker(w: int, ops: Sequence[OpFn]) -> None:
        mine = client.of(w) if isinstance(client, OnePerWorker) else client
        for i, op in enumerate(ops):
            outstanding[w] = f"worker {w}'s operation {i + 1} of {len(ops)}"
            t0 = time.perf_counter()
            try:
                await op(mine)
            except PhaseError:
                raise
            except Exception as exc:
                raise PhaseError("first query" if i == 0 else "later query", exc) from exc
            latencies.append(time.perf_counter() - t0)
        outstanding.pop(w, None)

    try:
        async with asyncio.TaskGroup() as tg:
            for w, ops in enumerate(workers):
                tg.create_task(worker(w, ops))
    except ExceptionGroup as group:
        raise group.exceptions[0] from None


async def run_cell(
    make_client: Callable[[], Any],
    workers: Sequence[Sequence[OpFn]],
    repeats: int,
    timeout: float,
    after_iteration: Callable[[], None] | None = None,
    around_open: Callable[[], AbstractAsyncContextManager[None]] | None = None,
    keep_going: bool = False,
    before_iteration: Callable[[], None] | None = None,
) -> CellResult:
    """Each iteration gets a new client from make_client (what one pool learnt does not carry over) and closes it;
    `after_iteration` runs once it is closed (the prepared-statement census). The first failure ends the cell,
    unless `keep_going` (every iteration runs and counts). Nothing back within `timeout` is a hang, with what each
    worker still waited for."""
    result = CellResult(OK)
    started = time.perf_counter()
    client: Any = None
    outstanding: dict[int, str] = {}
    try:
        async with asyncio.timeout(timeout):
            for i in range(repeats):
                result.iterations = i + 1
                client = make_client()
                outstanding.clear()
                if before_iteration is not None:
                    before_iteration()
                try:
                    await _iteration(client, workers, result.latencies_s, outstanding, around_open)
                    result.outcomes.append(OK)
                except Exception as exc:
                    failed = classify(exc, iteration=i)
                    result.outcomes.append(failed)
                    if result.outcome.kind == "ok":
                        result.outcome = failed
                    if not keep_going:
                        break
                finally:
                    # the cell's limit cancelling this iteration: a hang, whose connections wait for answers that
                    # will not come (a graceful close would wait with them)
                    task = asyncio.current_task()
                    hung = task is not None and task.cancelling() > 0
                    await _close(client, HUNG_CLOSE_S if hung else CLOSE_S)
                    client = None
                    if after_iteration is not None:
                        after_iteration()
    except TimeoutError:
        waiting = "; ".join(outstanding.values()) or "opening the pool"
        hang = Outcome(
            "hang",
            iteration=result.iterations - 1,
            detail=f"no answer within the cell limit of {timeout:g}s; outstanding: {waiting}",
        )
        result.outcomes.append(hang)
        if result.outcome.kind == "ok":
            result.outcome = hang
        if client is not None:  # its connections still wait for answers that will not come: a graceful close would too
            await _close(client, HUNG_CLOSE_S)
    result.elapsed_s = time.perf_counter() - started
    return result


#: how long a client's close may take: a healthy pool gives its connections back at once; a hung one's connections
#: wait for answers that will not come, and what is left of them goes with the cell's event loop
CLOSE_S, HUNG_CLOSE_S = 5.0, 1.0


async def _close(client: Any, within: float = CLOSE_S) -> None:
    try:
        await asyncio.wait_for(client.close(), timeout=within)
    except Exception:
        pass


def run_sync(coroutine: Awaitable[CellResult]) -> CellResult:
    with warnings.catch_warnings():
        # psycopg_pool warns that the RCA's attempt 2 opens in the constructor; that is the point.
        warnings.simplefilter("ignore", DeprecationWarning)
        return asyncio.run(_awaited(coroutine))


async def _awaited(coroutine: Awaitable[CellResult]) -> CellResult:
    return await coroutine


def spec_workers(spec: CellSpec, order: Order | None = None) -> list[list[OpFn]]:
    return [[_bound(op, order, (w, i)) for i, op in enumerate(ops)] for w, ops in enumerate(spec.workers)]


def _bound(op: Operation, order: Order | None, me: tuple[int, int]) -> OpFn:
    async def run(client: Any) -> None:
        await perform(client, op, order, me)

    return run


class OnePerWorker:
    """The contract's per-worker connections: one client of one connection per worker, opened one after another
    (so the order they connect in is the same every run), closed together."""

    def __init__(self, make: Callable[[], Client], workers: int) -> None:
        self.clients = [make() for _ in range(workers)]

    def of(self, worker: int) -> Client:
        return self.clients[worker]

    async def open(self) -> None:
        for c in self.clients:
            await c.open()

    async def close(self) -> None:
        for c in self.clients:
            await _close(c)


class InProcessRunner:
    """Runs Python configurations (lab.clients.python) in this process."""

    name = "in-process"

    def __init__(self, classes: Callable[[str], type[Client]]) -> None:
        self.classes = classes

    def run(self, spec: CellSpec, after_iteration: Callable[[], None] | None = None) -> CellResult:
        cls = self.classes(spec.configuration)
        ordered = any(op.after or op.during or op.hold for ops in spec.workers for op in ops)
        order = Order() if ordered else None

        def make() -> Any:
            if spec.connections == PER_WORKER:
                return OnePerWorker(lambda: cls(spec.dsn, 1, timeout=spec.op_timeout_s), len(spec.workers))
            return cls(spec.dsn, spec.pool_size, timeout=spec.op_timeout_s)

        return run_sync(
            run_cell(
                make,
                spec_workers(spec, order),
                spec.repeats,
                spec.cell_timeout_s,
                after_iteration,
                keep_going=spec.keep_going,
                before_iteration=order.reset if order is not None else None,
            )
        )

    def close(self) -> None:
        pass
