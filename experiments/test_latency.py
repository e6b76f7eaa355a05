"""Latency of one single-row INSERT ... RETURNING per client configuration and topology (pytest-benchmark).

Only cells whose insert-returning workload is expected to succeed are measured: a
configuration that fails through a topology has no latency worth reporting, and
timing a lucky single connection would hide the failure. Those are skipped with the
rule that says why. Each benchmark also records a result row (experiment "latency"), with the same
INSERT timed in a plain loop beside it: the lab's own overhead on the measurement.
"""

from __future__ import annotations

import itertools
import statistics

import pytest

from lab.clients.python.execute import perform
from lab.clients.registry import client_class
from lab.plan import Cell
from lab.pytest_plugin import LabRun
from lab.results.measures import LatencyMeasures
from lab.results.recorder import Recorder
from lab.workloads.bench import Measurement, label, measure
from lab.workloads.scenarios import Scenario, insert_returning

ROUNDS = 60  # with 20, 3-5 of 22 cells came out beyond 5% (up to +13.5%): the median needs the samples


@pytest.mark.experiment("latency")
def test_insert_latency(cell: Cell[Scenario], lab_run: LabRun, record: Recorder, run_id: str, benchmark) -> None:  # type: ignore[no-untyped-def]
    reason = record.why_not_measured()
    if reason:
        pytest.skip(reason)
    client = client_class(cell.client.name)(lab_run.topology.endpoint(cell.topology).dsn(), 1, timeout=5.0)
    counter = itertools.count()
    m = Measurement(rounds=ROUNDS, warmup=3)
    label(benchmark, cell, run_id, f"insert latency, {cell.topology}", facts=record.facts)
    sql = f"INSERT INTO {lab_run.table} (payload) VALUES (:payload) RETURNING id, payload"
    try:
        measure(
            benchmark,
            client,
            lambda: perform(client, insert_returning(0, next(counter), lab_run.table)),
            m,
            bare=lambda: client.fetch(sql, {"payload": f"bare-{next(counter)}"}),
        )
    finally:
        plain = m.bare[m.warmup :]
        bare = statistics.median(plain) * 1000 if plain else None
        overhead = round((statistics.median(m.timed) * 1000 / bare - 1) * 100, 1) if bare and m.timed else None
        record(
            m.outcome,
            LatencyMeasures(
                rounds=ROUNDS,
                warmup_rounds=m.warmup,
                client_pool_size=1,
                rtt_ms=0,
                tls=False,
                bare_median_ms=round(bare, 4) if bare else None,
                harness_overhead_pct=overhead,
            ),
            m.timed,
        )
