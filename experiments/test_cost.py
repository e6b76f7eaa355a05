"""The price of each fix (`--cost`, `--lab-cost`): queries per second and latency, with confidence intervals,
at client concurrency 1, 8 and 32, for every configuration that works through a topology, beside pgbench -S on
the same topology as the ceiling. Where a fix and what it fixes both work (the server, a session pooler), the fix's
row also carries its ratio against each (throughput.against: windows of each alternately, until the 95% interval
is narrow enough or the budget is spent). The report puts each fix's cost next to it.

    pytest experiments/test_cost.py --lab-cost -k 'pgbouncer-transaction'
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from lab.clients.python.base import Client
from lab.clients.registry import client_class, configuration
from lab.plan import PRICE_TOPOLOGIES, Cell, workload_runners
from lab.results.measures import CostMeasures
from lab.results.outcome import OK, classify
from lab.results.recorder import Recorder
from lab.topology.model import Topology
from lab.workloads import throughput
from lab.workloads.harness import op_timeout


def _fixed_here(cell: Cell[int], record: Recorder, pool_size: int | None) -> list[str]:
    """What the cell's configuration fixes and can be timed against here: both must work, which only the server and
    a session pooler promise (PRICE_TOPOLOGIES), both pools must fit at once, and the fixed one must be a workload
    configuration of the lab's own process that is expected to work (the RCA's attempts are priced through the
    configurations they are variants of)."""
    if cell.topology not in PRICE_TOPOLOGIES or not throughput.fits(pool_size, cell.case):
        return []
    runners = {c.name for c in workload_runners(in_process=True)}
    return [
        fixed
        for fixed in cell.client.fixes
        if fixed in runners
        and record.why_not_measured(subject=configuration(fixed), scenario="repeated-query", what="cost") is None
    ]


def _versus(cell: Cell[int], fixed: str, make: Callable[[str], Client], concurrency: int) -> dict[str, Any]:
    """The fix against one configuration it fixes, as the row keeps it; where the fixed one fails under this
    concurrency (a price the fix's own row must not take on), its error instead of a ratio."""
    try:
        v = asyncio.run(throughput.against(make(cell.client.name), make(fixed), fixed, concurrency))
    except Exception as exc:
        failed = classify(exc)
        return {"fixed": fixed, "error": f"{failed.kind}: {failed.error_class or ''} {failed.message or ''}".strip()}
    return v.as_row()


@pytest.fixture(scope="module")
def pgbench_tables(lab_topology: Topology) -> Iterator[None]:
    throughput.pgbench_init(lab_topology.endpoint("direct").dsn())
    yield


@pytest.mark.experiment("cost")
def test_cost(cell: Cell[int], lab_topology: Topology, record: Recorder, pgbench_tables: None) -> None:
    endpoint = lab_topology.endpoint(cell.topology)
    concurrency = cell.case
    facts = record.facts
    held = (
        endpoint.facts.pool_size if endpoint.facts.pool_mode == "session" else None
    )  # server connections a session pooler has
    ceiling = cell.client.name == "pgbench-S"  # the lab's own tool, not a configuration under test
    if ceiling:
        facts = facts.with_(pgbench=throughput.pgbench_version())
    else:
        reason = record.why_not_measured()
        if reason:
            pytest.skip(reason)
        opens = client_class(cell.client.name).most_connections(throughput.connections(concurrency), concurrency)
        if held and opens > int(held):
            # the connections past the session pool's wait for a server connection until PgBouncer's query_wait_timeout;
            # cancelling them then can crash PgBouncer 1.18 (pgbouncer/pgbouncer#801), so the lab does not try
            pytest.skip(
                f"{cell.client.name} may open {opens} connections at concurrency {concurrency}; the session pooler "
                f"holds {held} server connections, one per client connection: the rest would wait, not be measured"
            )
    outcome, result, versus = OK, None, None
    try:
        if ceiling:
            result = throughput.pgbench(endpoint.dsn(), concurrency)
        else:

            def make(name: str) -> Client:
                return client_class(name)(endpoint.dsn(), throughput.connections(concurrency), timeout=op_timeout(10.0))

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                result = asyncio.run(throughput.run(make(cell.client.name), concurrency))
                here = _fixed_here(cell, record, int(held) if held else None)
                versus = [_versus(cell, f, make, concurrency) for f in here] or None
    except Exception as exc:
        # A configuration that fails under concurrency (workers still waiting for a session pooler's server
        # connection, psycopg2's pool raising PoolError when more threads than connections ask) is a price the
        # row records, not a failure of the lab; pgbench failing is.
        outcome = classify(exc)
        if ceiling:
            raise
    finally:
        r = result
        record(
            outcome,
            CostMeasures(
                concurrency=concurrency,
                connections=throughput.connections(concurrency),
                duration_s=float(throughput.PGBENCH_SECONDS) if ceiling else throughput.DURATION_S,
                ops=r.ops if r else 0,
                ops_per_s=r.ops_per_s if r else 0.0,
                ops_per_s_ci=list(r.ops_per_s_ci) if r else [],
                p50_ms=r.p50_ms if r else 0.0,
                p50_ci_ms=list(r.p50_ci_ms) if r else [],
                p99_ms=r.p99_ms if r else 0.0,
                p99_ci_ms=list(r.p99_ci_ms) if r else [],
                versus=versus,
            ),
            facts=facts,
        )
