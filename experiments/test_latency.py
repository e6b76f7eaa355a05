"""Latency of one single-row INSERT ... RETURNING per client configuration and topology (pytest-benchmark).

Only cells whose insert-returning workload is expected to succeed are measured: a
configuration that fails through a topology has no latency worth reporting, and
timing a lucky single connection would hide the failure. Those are skipped with the
rule that says why. Each benchmark also records a result row (experiment "latency"), with the same
INSERT written as a user would with the driver alone (lab.workloads.plain), timed interleaved with it on the same
driver pool: the lab's own overhead on the measurement.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from lab.clients.contract import Operation
from lab.clients.python.base import Rows
from lab.clients.python.execute import check
from lab.clients.registry import client_class
from lab.plan import Cell
from lab.pytest_plugin import LabRun
from lab.results.measures import LatencyMeasures
from lab.results.recorder import Recorder
from lab.workloads.bench import Measurement, label, measure
from lab.workloads.plain import Call, insert_call
from lab.workloads.scenarios import Scenario, insert_returning

#: rounds per cell: the overhead against the plain loop is a median of per-round ratios, and in a parallel run, where
#: a thread may wait for a core, too few rounds let a slow patch decide it
ROUNDS = 100
#: then more, until the overhead's 95% interval is within +-2.5% of it (so a 5% bar is decided by the lab, not by
#: the machine's noise), for at most this many seconds a cell: on a quiet machine 100 rounds are enough
OVERHEAD_PRECISION, OVERHEAD_BUDGET_S = 0.025, 2.0


def _numbered(call: Call | None, counter: itertools.count[int]) -> Callable[[], Awaitable[Any]] | None:
    """The plain call with a payload of its own each time (the table's rows are distinct), or None."""
    return (lambda: call(f"plain-{next(counter)}")) if call is not None else None


@pytest.mark.experiment("latency")
def test_insert_latency(cell: Cell[Scenario], lab_run: LabRun, record: Recorder, run_id: str, benchmark) -> None:  # type: ignore[no-untyped-def]
    reason = record.why_not_measured()
    if reason:
        pytest.skip(reason)
    client = client_class(cell.client.name)(lab_run.topology.endpoint(cell.topology).dsn(), 1, timeout=5.0)
    counter = itertools.count()
    m = Measurement(rounds=ROUNDS, warmup=3, precision=OVERHEAD_PRECISION, budget_s=OVERHEAD_BUDGET_S)
    label(benchmark, cell, run_id, f"insert latency, {cell.topology}", facts=record.facts)
    # each round's operation is built, and the last one's answer checked, while the timer is stopped (after the
    # round before it): the rounds time the configuration's own call, as an application makes it
    ops = (insert_returning(0, i, lab_run.table) for i in itertools.count())
    current: list[Operation] = [next(ops)]

    def insert() -> Awaitable[Rows]:
        statement = current[0].statements[0]
        return client.fetch(statement.sql, statement.params)

    def checked(rows: Rows) -> None:
        check(current[0], [rows])
        current[0] = next(ops)

    try:
        measure(
            benchmark,
            client,
            insert,
            m,
            plain=lambda: _numbered(insert_call(client, lab_run.table), counter),
            check=checked,
        )
    finally:
        plain = m.bare[m.warmup :]
        bare = statistics.median(plain) * 1000 if plain else None
        # each round against its own plain call: a slow moment of a busy machine (a thread that waits for a core)
        # hits one pair, not one side's median; the two orders of a pair balanced (Measurement.overhead)
        ratio, low, high = m.overhead() or (None, None, None)
        record(
            m.outcome,
            LatencyMeasures(
                rounds=len(m.timed),
                warmup_rounds=m.warmup,
                client_pool_size=1,
                rtt_ms=0,
                tls=False,
                bare_median_ms=round(bare, 4) if bare else None,
                harness_overhead_pct=_pct(ratio),
                harness_overhead_low_pct=_pct(low),
                harness_overhead_high_pct=_pct(high),
            ),
            m.timed,
        )


def _pct(ratio: float | None) -> float | None:
    return round((ratio - 1) * 100, 1) if ratio is not None else None
