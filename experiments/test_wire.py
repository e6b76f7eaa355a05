"""Counting the wire (claims C3, C4): N queries on one pooled client connection, through the wire
tracer, per client configuration and topology. How many startups and authentication exchanges
cross the wire for N queries, and how many logins the pooler and the server log for them.
"""

from __future__ import annotations

import time

import pytest

from lab.cells import topology_names
from lab.clients import CLIENTS
from lab.expectations import Expectation
from lab.judge import record_and_judge
from lab.logins import count
from lab.runner import run_cell_sync
from lab.scenarios import Scenario, repeated_query
from lab.topology import Topology
from lab.tracer import WireTracer

QUERIES = 20
WIRE_SCENARIO = Scenario("wire-count", f"{QUERIES} sequential queries on a pool of one connection", repeated_query, workers=1, ops_per_worker=QUERIES)
CELLS = [(c, t) for t in topology_names() for c in CLIENTS]


@pytest.mark.parametrize("client, topology", CELLS, ids=[f"{c}-{t}-wire-count" for c, t in CELLS])
def test_wire(client: str, topology: str, lab_topology: Topology, expectations: list[Expectation], record_row, run_id: str) -> None:
    endpoint = lab_topology.endpoint(topology)
    service = endpoint.facts.get("service", "postgres")
    cls = CLIENTS[client]
    before = {"server": count(lab_topology.run_id, "postgres", endpoint.user), "pooler": count(lab_topology.run_id, service)}
    with WireTracer(endpoint.host, endpoint.port) as tracer:
        dsn = endpoint.dsn().replace(f"@{endpoint.host}:{endpoint.port}/", f"@{endpoint.host}:{tracer.port}/")
        result = run_cell_sync(cls, dsn, WIRE_SCENARIO, repeats=1, timeout=10.0, pool_size=1)
        time.sleep(0.05)  # let the last Terminate cross
        traces = tracer.snapshot()
    time.sleep(0.05)  # log lines are written after the login completes
    after = {"server": count(lab_topology.run_id, "postgres", endpoint.user), "pooler": count(lab_topology.run_id, service)}
    summaries = [t.summary() for t in traces]
    total = lambda key: sum(s[key] for s in summaries)  # noqa: E731
    params = {
        "queries": QUERIES,
        "client_connections": len(traces),
        "startup_messages": total("startup_messages"),
        "authentication_requests": total("authentication_requests"),
        "password_messages": total("password_messages"),
        "auth_requests_per_query": round(total("authentication_requests") / QUERIES, 3),
        "simple_queries": total("simple_queries"),
        "parse": total("parse"),
        "bind": total("bind"),
        "named_statements": total("named_statements"),
        "server_logins": _delta(before["server"], after["server"]),
        "pooler_logins": _delta(before["pooler"], after["pooler"]) if topology != "direct" else None,
        "per_connection": summaries,
    }
    record_and_judge(
        expectations, record_row, run_id=run_id, experiment="wire", cell_id=f"{client}-{topology}-wire-count", client=client,
        client_cls=cls, topology=topology, facts=endpoint.facts, scenario="wire-count", outcome=result.outcome,
        latencies_s=result.latencies_s, params=params,
    )


def _delta(before: int | None, after: int | None) -> int | None:
    return None if before is None or after is None else after - before
