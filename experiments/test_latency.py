"""Latency of one single-row INSERT ... RETURNING per client configuration and topology (pytest-benchmark).

Only cells whose insert-returning workload is expected to succeed are measured: a
configuration that fails through a topology has no latency worth reporting, and
timing a lucky single connection would hide the failure. Those are skipped with the
rule that says why. Each benchmark also records a result row (experiment "latency").
"""

from __future__ import annotations

import pytest

from lab.cells import Cell
from lab.clients import client_class
from lab.expectations import Expectation
from lab.judge import why_not_measured
from lab.benchmarking import Measurement, measure
from lab.rows import cell_row
from lab.scenarios import insert_returning
from lab.topology import Topology

ROUNDS = 20


def _insert_cells(cell: Cell) -> bool:
    return cell.scenario == "insert-returning"


def test_insert_latency(cell: Cell, lab_topology: Topology, expectations: list[Expectation], record_row, run_id: str, benchmark) -> None:
    endpoint = lab_topology.endpoint(cell.topology)
    cls = client_class(cell.client)
    reason = why_not_measured(expectations, cell.client, cls, cell.topology, endpoint.facts)
    if reason:
        pytest.skip(reason)
    client = cls(endpoint.dsn(), 1, timeout=5.0)
    counter = iter(range(10**9))
    m = Measurement(rounds=ROUNDS, warmup=3)
    benchmark.extra_info.update(client=cell.client, topology=cell.topology, facts=endpoint.facts)
    try:
        measure(benchmark, client, lambda: insert_returning(client, 0, next(counter)), m)
    finally:
        record_row(
            cell_row(
                run_id=run_id, experiment="latency", cell_id=cell.id, client=cell.client,
                client_versions=cls.versions(), client_description=cls.description, topology=cell.topology,
                facts=endpoint.facts, scenario="single-insert", outcome=m.outcome, expected=None, latencies_s=m.timed,
                params={"rounds": ROUNDS, "warmup_rounds": m.warmup, "client_pool_size": 1, "rtt_ms": 0, "tls": False},
            )
        )


test_insert_latency.cells = _insert_cells  # type: ignore[attr-defined]
