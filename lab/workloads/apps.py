"""Applications in separate OS processes sharing one topology: a second instance at once, or the
same application restarted (process 1 runs and exits, then process 2 starts).

In one process, whatever a driver keeps per process is shared by every client
connection: asyncpg names its prepared statements from one process-wide counter
(`_uid` in asyncpg/connection.py, `__asyncpg_stmt_N__`), so two connections of one
process never pick the same name. A second process starts that counter again, and
through a transaction pooler its statements meet the first process's on the same
server connections. Every process here starts from a fork server that has imported
the drivers but never used them, so its driver state is a fresh process's, and a cell
costs milliseconds of start-up instead of a Python start.

Each application runs `repeated-query` with SQL text of its own (its number is part of
the statement's constant), so a statement run under another process's name shows as a
wrong answer, not a plausible one. Each cell starts on fresh server connections (the
test ends the application user's server backends first, lab.observe.server_view): what a cell shows comes from
its own two processes, not from the cells before it.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from lab.clients.python.base import Client
from lab.clients.python.execute import run_cell
from lab.clients.registry import client_class, python_modules
from lab.results.outcome import Outcome, WrongResult
from lab.workloads import scenarios
from lab.workloads.harness import op_timeout

#: scenario name -> how the processes run: both alive, crossed then taking turns (`_crossed_first`), or one after the other
MODES: dict[str, str] = {"apps-at-once": "crossed", "app-restart": "one-after-another"}
APPS = 2
#: each application is a lone client: one connection, one worker. Through a transaction pooler a lone
#: client keeps getting the same server connection (PgBouncer reuses idle ones last-in, first-out), so
#: whatever fails here fails because of the other process, not because of its own pool.
WORKERS = 1
POOL_SIZE = 1
#: psycopg prepares a statement at its 5th execution: 6 operations reach it
OPS_PER_WORKER = 6
#: how long a process waits for its turn before it goes on alone (the other one is stuck or gone)
TURN_WAIT_S = 5.0


@dataclass(frozen=True)
class AppResult:
    app: int  # 1-based, in start order
    pid: int
    outcome: Outcome
    ops_done: int

    def to_dict(self) -> dict[str, Any]:
        return {"app": self.app, "pid": self.pid, "ops_done": self.ops_done, "outcome": self.outcome.summary()}


class Turns:
    """Processes that run at once take turns, one whole step each (opening the pool, then each operation):
    app 1's, app 2's, app 1's next... Their statements then meet on the same server connection in the same order on every run, on a
    quiet machine or a busy one; left to the scheduler, which process prepares a name first changes from run
    to run, and so does the outcome. A process that ends (passed or failed) stops taking part."""

    def __init__(self, ctx: multiprocessing.context.BaseContext, n: int) -> None:
        self.n = n
        self.mine = [ctx.Semaphore(1 if i == 0 else 0) for i in range(n)]
        self.done = ctx.Array("b", n)

    def _next(self, i: int) -> int:
        return (i + 1) % self.n

    def wait(self, i: int) -> None:
        if not self.done[self._next(i)]:
            self.mine[i].acquire(timeout=TURN_WAIT_S)

    def pass_on(self, i: int) -> None:
        self.mine[self._next(i)].release()

    def finish(self, i: int) -> None:
        self.done[i] = 1
        self.pass_on(i)


def own_statement(worker: int, op: int) -> tuple[str, dict[str, int], list[tuple[int]], str]:
    """The process's query of its own (lab.workloads.scenarios.own_statement: the worker's number is in the SQL and
    in the answer), so another process's statement under the same name shows as a wrong value. The crossed first
    query and every later one use it: a process's statements are one SQL text, cached and named once."""
    s = scenarios.own_statement(worker, op)
    assert s.expect is not None
    return s.sql, s.params, [tuple(row) for row in s.expect], s.what


def _check(what: str, got: object, want: object) -> None:
    if got != want:
        raise WrongResult(what, got, want)


async def own_query(client: Client, worker: int, op: int) -> None:
    sql, params, want, what = own_statement(worker, op)
    _check(what, await client.fetch(sql, params), want)


def _app_main(
    client_cls: type[Client], dsn: str, app: int, turns: Turns | None, crossed: bool, timeout: float, out: Connection
) -> None:
    """The child: one application process, its own pool, its own SQL, one outcome sent back. The configuration's
    class travels by reference (its module is preloaded in the fork server)."""
    me = app - 1
    own = app  # app 1 asks worker 1's query, app 2 worker 2's

    def operation(op: int) -> Any:
        async def run(client: Client) -> None:
            worker = own  # one worker per application
            if crossed and op == 0:
                await _crossed_first(client, worker)
                return
            if turns is not None:
                await asyncio.to_thread(turns.wait, me)
            try:
                await own_query(client, worker, op)
            finally:
                if turns is not None:
                    turns.pass_on(me)

        return run

    async def _crossed_first(client: Client, worker: int) -> None:
        """Both processes run their first query inside a transaction that stays open until the other one has run
        its own: each statement is then prepared on a server connection of its own (the other is pinned). App 1
        commits first, app 2 last, so the server connection app 2 used is the one PgBouncer hands out next
        (last in, first out): app 1's second query runs there, under the name app 2 gave its own statement."""
        assert turns is not None
        sql, params, want, what = own_statement(worker, 0)

        def first(_: list[Any]) -> tuple[str, dict[str, Any]]:
            turns.wait(me)
            return sql, params

        def hold(_: list[Any]) -> tuple[str, dict[str, Any]]:
            turns.pass_on(me)  # my statement is prepared; the other process's turn
            turns.wait(me)
            return "SELECT 1", {}

        try:
            results = await client.transaction([first, hold])
        finally:
            turns.pass_on(me)  # committed (or failed): the other process's turn
        _check(what, results[0], want)

    @asynccontextmanager
    async def in_turn() -> AsyncIterator[None]:
        """Opening takes a turn too: drivers run statements of their own at connect (SQLAlchemy's dialects do)."""
        if turns is not None:
            await asyncio.to_thread(turns.wait, me)
        try:
            yield
        finally:
            if turns is not None:
                turns.pass_on(me)

    workers = [[operation(op) for op in range(OPS_PER_WORKER)] for _ in range(WORKERS)]
    try:
        result = asyncio.run(
            run_cell(
                lambda: client_cls(dsn, POOL_SIZE, timeout=op_timeout(timeout)),
                workers,
                1,
                timeout,
                around_open=in_turn if turns is not None else None,
            )
        )
    finally:
        if turns is not None:
            turns.finish(me)
    out.send((result.outcome.to_dict(), len(result.latencies_s)))
    out.close()


_context: multiprocessing.context.ForkServerContext | None = None


def _ctx() -> multiprocessing.context.ForkServerContext:
    global _context
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        # the client configurations' modules (and the drivers they import), and SQLAlchemy's dialects, which load on
        # first use: each child would import them again (tens of ms each) without these
        _context.set_forkserver_preload(
            [
                "lab.workloads.apps",
                *python_modules(),
                "sqlalchemy.dialects.postgresql.asyncpg",
                "sqlalchemy.dialects.postgresql.psycopg",
            ]
        )
    return _context


class _App:
    """One application process, started from the fork server."""

    def __init__(
        self, client: str, dsn: str, app: int, turns: Turns | None, timeout: float, crossed: bool = False
    ) -> None:
        ctx = _ctx()
        self.app, self.timeout = app, timeout
        self.receive, send = ctx.Pipe(duplex=False)
        # the DSN travels through the fork server's socket, never through argv (which `ps` shows)
        self.process = ctx.Process(
            target=_app_main,
            args=(client_class(client), dsn, app, turns, crossed, timeout, send),
            name=f"pooler-lab-app-{app}",
            daemon=True,
        )
        self.process.start()
        send.close()

    def result(self) -> AppResult:
        pid = self.process.pid or 0
        try:
            if self.receive.poll(self.timeout + TURN_WAIT_S + 5):
                outcome, ops = self.receive.recv()
                return AppResult(self.app, pid, Outcome.from_dict(outcome), ops)
            return AppResult(self.app, pid, Outcome("hang", detail=f"process {self.app} sent no outcome"), 0)
        except EOFError:
            self.process.join(5)
            return AppResult(
                self.app,
                pid,
                Outcome(
                    "error",
                    error_class="ProcessExit",
                    message=f"process {self.app} exited with code {self.process.exitcode} before it sent an outcome",
                ),
                0,
            )
        finally:
            self.stop()

    def stop(self) -> None:
        self.process.join(2)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(2)
        self.receive.close()


def run_apps(client: str, dsn: str, mode: str, timeout: float) -> list[AppResult]:
    """APPS processes of one client configuration against `dsn`, run as MODES says. One result per process,
    in start order."""
    if mode == "one-after-another":
        return [_App(client, dsn, i + 1, None, timeout).result() for i in range(APPS)]
    turns = Turns(_ctx(), APPS)
    apps = [_App(client, dsn, i + 1, turns, timeout, crossed=mode == "crossed") for i in range(APPS)]
    try:
        return [a.result() for a in apps]
    finally:
        for a in apps:
            a.stop()


def outcome_of(results: list[AppResult]) -> tuple[Outcome, int | None]:
    """The cell's outcome: the first process (in start order) that failed, and which one; ok if none did."""
    for r in results:
        if r.outcome.kind != "ok":
            return r.outcome, r.app
    return results[0].outcome, None
