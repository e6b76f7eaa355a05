"""The price of each fix (`--cost`, `--lab-cost`): queries per second and latency, with confidence intervals,
at client concurrency 1, 8 and 32, for every configuration that works through a topology, beside pgbench -S on
the same topology as the ceiling. The report puts each fix's cost next to it.

    pytest experiments/test_cost.py --lab-cost -k 'pgbouncer-transaction'
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Iterator

import pytest

from lab.clients.registry import client_class
from lab.plan import Cell
from lab.results.measures import CostMeasures
from lab.results.outcome import OK, classify
from lab.results.recorder import Recorder
from lab.topology.model import Topology
from lab.workloads import throughput
from lab.workloads.harness import op_timeout


@pytest.fixture(scope="module")
def pgbench_tables(lab_topology: Topology) -> Iterator[None]:
    throughput.pgbench_init(lab_topology.endpoint("direct").dsn())
    yield


@pytest.mark.experiment("cost")
def test_cost(cell: Cell[int], lab_topology: Topology, record: Recorder, pgbench_tables: None) -> None:
    endpoint = lab_topology.endpoint(cell.topology)
    concurrency = cell.case
    facts = record.facts
    ceiling = cell.client.name == "pgbench-S"  # the lab's own tool, not a configuration under test
    if ceiling:
        facts = facts.with_(pgbench=throughput.pgbench_version())
    else:
        reason = record.why_not_measured()
        if reason:
            pytest.skip(reason)
        opens = client_class(cell.client.name).most_connections(throughput.connections(concurrency), concurrency)
        held = endpoint.facts.pool_size if endpoint.facts.pool_mode == "session" else None
        if held and opens > int(held):
            # the connections past the session pool's wait for a server connection until PgBouncer's query_wait_timeout;
            # cancelling them then can crash PgBouncer 1.18 (pgbouncer/pgbouncer#801), so the lab does not try
            pytest.skip(
                f"{cell.client.name} may open {opens} connections at concurrency {concurrency}; the session pooler "
                f"holds {held} server connections, one per client connection: the rest would wait, not be measured"
            )
    outcome, result = OK, None
    try:
        if ceiling:
            result = throughput.pgbench(endpoint.dsn(), concurrency)
        else:
            client = client_class(cell.client.name)(
                endpoint.dsn(), throughput.connections(concurrency), timeout=op_timeout(10.0)
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                result = asyncio.run(throughput.run(client, concurrency))
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
            ),
            facts=facts,
        )
