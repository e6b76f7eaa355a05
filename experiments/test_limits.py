"""Connection limits (claims C9, C13): a burst of clients larger than the server's max_connections,
straight to the server and through each pooler; and the RCA's recommended hybrid (psycopg pool of
2-10 straight to the server, REST when the pool is exhausted) under a burst larger than its pool."""

from __future__ import annotations

import pytest

from lab.burst import BURST, CONNECTORS, burst, hybrid
from lab.cells import topology_names
from lab.clients.base import package_versions
from lab.expectations import Expectation
from lab.judge import record_and_judge
from lab.topology import Endpoint, Topology

CELLS = [(c, t) for t in topology_names() for c in CONNECTORS]


class _Client:
    def __init__(self, description: str, dists: tuple[str, ...]) -> None:
        self.description, self.dists = description, dists

    def versions(self) -> dict[str, str]:
        return package_versions(self.dists)


BURST_CLIENTS = {
    "burst-asyncpg": _Client(f"{BURST} concurrent asyncpg.connect() + one query each, no pool", ("asyncpg",)),
    "burst-psycopg": _Client(f"{BURST} concurrent psycopg AsyncConnection.connect() + one query each, no pool", ("psycopg",)),
    "rca-hybrid": _Client("psycopg AsyncConnectionPool(min 2, max 10) direct, httpx REST insert on PoolTimeout", ("psycopg", "psycopg-pool", "httpx")),
    "pool-only": _Client("the same psycopg AsyncConnectionPool(min 2, max 10) without the REST fallback", ("psycopg", "psycopg-pool")),
}


@pytest.mark.parametrize("client, topology", CELLS, ids=[f"{c}-{t}-burst" for c, t in CELLS])
def test_burst(client: str, topology: str, lab_topology: Topology, expectations: list[Expectation], record_row, run_id: str) -> None:
    endpoint = lab_topology.endpoint(topology)
    result = burst(client, endpoint.dsn())
    facts = {**endpoint.facts, "max_connections": _max_connections(lab_topology)}
    record_and_judge(
        expectations, record_row, run_id=run_id, experiment="limits", cell_id=f"{client}-{topology}-burst", client=client,
        client_cls=BURST_CLIENTS[client], topology=topology, facts=facts, scenario=f"burst-{BURST}", outcome=result.outcome,
        latencies_s=result.latencies_s, params=result.params(),
    )


@pytest.mark.parametrize("fallback", [True, False], ids=["rca-hybrid-direct-burst", "pool-only-direct-burst"])
def test_hybrid(fallback: bool, lab_topology: Topology, rest_trust: Endpoint, expectations: list[Expectation], record_row, run_id: str) -> None:
    client = "rca-hybrid" if fallback else "pool-only"
    direct = lab_topology.endpoint("direct")
    result = hybrid(direct.dsn(), rest_trust, fallback=fallback)
    record_and_judge(
        expectations, record_row, run_id=run_id, experiment="limits", cell_id=f"{client}-direct-burst", client=client,
        client_cls=BURST_CLIENTS[client], topology="direct", facts={**direct.facts, "rest": rest_trust.facts.get("rest_server")},
        scenario=f"hybrid-burst-{BURST}", outcome=result.outcome, latencies_s=result.latencies_s, params=result.params(),
    )


def _max_connections(topo: Topology) -> int:
    import psycopg

    ep = topo.endpoint("direct")
    with psycopg.connect(ep.dsn()) as conn:
        return int(conn.execute("SHOW max_connections").fetchone()[0])
