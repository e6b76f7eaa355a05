"""The cell runner against the real server: a hang becomes `timeout` within the limit, a wrong answer
becomes `wrong-result`, a pooler's refusal becomes an error at the right phase."""

from __future__ import annotations

import time

from lab.clients import CLIENTS
from lab.clients.base import Client
from lab.clients.rca import RcaAttempt1
from lab.results.outcome import WrongResult
from lab.workloads.harness import run_cell_sync
from lab.workloads.scenarios import SCENARIOS, Scenario


async def _hang(client: Client, worker: int, op: int) -> None:
    await client.fetch("SELECT pg_sleep(30)", {})


async def _wrong(client: Client, worker: int, op: int) -> None:
    rows = await client.fetch("SELECT 41", {})
    if rows != [(42,)]:
        raise WrongResult(f"SELECT 41: got {rows!r}, expected [(42,)]")


def test_a_hang_is_a_timeout_within_the_limit(topology) -> None:  # type: ignore[no-untyped-def]
    hang = Scenario("hang", "pg_sleep(30)", _hang, workers=1, ops_per_worker=1)
    t0 = time.monotonic()
    result = run_cell_sync(CLIENTS["asyncpg-default"], topology.endpoint("direct").dsn(), hang, repeats=1, timeout=1.5)
    assert result.outcome.kind == "timeout" and result.outcome.iteration == 0
    assert time.monotonic() - t0 < 8  # the limit, plus closing the pool


def test_a_wrong_answer_is_a_wrong_result(topology) -> None:  # type: ignore[no-untyped-def]
    wrong = Scenario("wrong", "SELECT 41, expecting 42", _wrong, workers=2, ops_per_worker=2)
    result = run_cell_sync(
        CLIENTS["psycopg-async-no-prepare"], topology.endpoint("pgbouncer-session").dsn(), wrong, repeats=1, timeout=5
    )
    assert result.outcome.kind == "wrong-result" and result.outcome.phase == "first query"
    assert "expected [(42,)]" in result.outcome.detail


def test_a_refused_startup_is_an_error_at_connect(topology) -> None:  # type: ignore[no-untyped-def]
    result = run_cell_sync(
        RcaAttempt1, topology.endpoint("pgbouncer-transaction").dsn(), SCENARIOS["repeated-query"], repeats=1, timeout=5
    )
    assert (result.outcome.kind, result.outcome.phase, result.outcome.sqlstate) == ("error", "connect", "08P01")
    assert result.outcome.message == "unsupported startup parameter: jit"
