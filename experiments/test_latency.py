"""Latency of one single-row INSERT ... RETURNING per client configuration and topology (pytest-benchmark).

Only cells whose insert-returning workload is expected to succeed are measured: a
configuration that fails through a topology has no latency worth reporting, and
timing a lucky single connection would hide the failure. Those are skipped with the
rule that says why. Each benchmark also records a result row (experiment "latency").
"""

from __future__ import annotations

import itertools

import pytest

from lab.plan import Cell
from lab.results.measures import LatencyMeasures
from lab.results.recorder import Recorder
from lab.topology.model import Topology
from lab.workloads.bench import Measurement, label, measure
from lab.workloads.scenarios import insert_returning

ROUNDS = 20


@pytest.mark.experiment("latency")
def test_insert_latency(cell: Cell, lab_topology: Topology, record: Recorder, run_id: str, benchmark) -> None:  # type: ignore[no-untyped-def]
    reason = record.why_not_measured()
    if reason:
        pytest.skip(reason)
    client = cell.client(lab_topology.endpoint(cell.topology).dsn(), 1, timeout=5.0)
    counter = itertools.count()
    m = Measurement(rounds=ROUNDS, warmup=3)
    label(benchmark, cell, run_id, f"insert latency, {cell.topology}", facts=record.facts)
    try:
        measure(benchmark, client, lambda: insert_returning(client, 0, next(counter)), m)
    finally:
        record(m.outcome, LatencyMeasures(rounds=ROUNDS, warmup_rounds=m.warmup, client_pool_size=1, rtt_ms=0, tls=False), m.timed)
