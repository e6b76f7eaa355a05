"""Connection limits (claims C9, C13): a burst of clients larger than the server's max_connections,
straight to the server and through each pooler; and the RCA's recommended hybrid (psycopg pool of
2-10 straight to the server, REST when the pool is exhausted) under a burst larger than its pool."""

from __future__ import annotations

import psycopg
import pytest

from lab.plan import BurstCase, Cell
from lab.results.recorder import Recorder
from lab.topology.model import Endpoint, Topology
from lab.workloads.burst import burst, hybrid


@pytest.mark.experiment("limits")
@pytest.mark.whole_server  # the server's slots are the burst's own, whatever ran before
def test_burst(cell: Cell[BurstCase], lab_topology: Topology, record: Recorder, request: pytest.FixtureRequest) -> None:
    if cell.case.fallback is not None:
        # the RCA's hybrid: psycopg pool straight to the server, REST (with the fallback or without) when it is exhausted
        rest: Endpoint = request.getfixturevalue("rest_trust")
        result = hybrid(lab_topology.endpoint("direct").dsn(), rest, fallback=cell.case.fallback)
        facts = record.facts.with_(rest=rest.facts.rest_server)
    else:
        result = burst(cell.case.connector, lab_topology.endpoint(cell.topology).dsn())
        facts = record.facts.with_(max_connections=_max_connections(lab_topology))
    record(result.outcome, result.measures(), result.latencies_s, facts=facts)


def _max_connections(topo: Topology) -> int:
    with psycopg.connect(topo.endpoint("direct").dsn()) as conn:
        return int(conn.execute("SHOW max_connections").fetchone()[0])  # type: ignore[index]
