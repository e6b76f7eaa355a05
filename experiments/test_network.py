"""The same single-row insert through REST and through PostgreSQL clients, across an injected
network (claim C8): each round-trip time, TLS on and off. pytest-benchmark measures; every
benchmark also writes a row (experiment "network") that `python -m lab report` turns into
REST overhead per RTT beside the round-trip model (lab.rtt_model).

    pytest experiments/test_network.py --lab-rtts=0,20 --lab-network=all
"""

from __future__ import annotations

from typing import Any

import pytest

from lab.clients import client_class
from lab.expectations import Expectation
from lab.judge import why_not_measured
from lab.network import Network
from lab.benchmarking import Measurement, measure
from lab.rest_clients import REST_CLIENTS
from lab.rows import cell_row
from lab.scenarios import insert_returning
from lab.topology import Endpoint, Topology

# The PostgreSQL paths measured by default: the RCA's driver straight to the server (the
# reference "direct" of the REST overhead), and asyncpg's working configuration through the
# transaction pooler. --lab-network=all measures every client configuration on every topology.
REFERENCE_PG_PATHS = (
    ("asyncpg-default", "direct"),
    ("asyncpg-no-cache", "pgbouncer-transaction"),
)


def rounds_for(rtt_ms: float, client: str) -> int:
    """Enough rounds for a stable median, fewer where each round costs more waiting. The per-call
    client spends 20-60 ms of CPU building a client and CA store every call; its median needs more."""
    rounds = 10 if rtt_ms < 10 else 5 if rtt_ms < 40 else 3
    return max(rounds, 7) if client == "httpx-per-call" else rounds


def paths(config: pytest.Config) -> list[tuple[str, str, str]]:
    mode = config.getoption("--lab-network")
    if mode == "none":
        return []
    rest = [("rest", name, "rest") for name in REST_CLIENTS]
    if mode == "all":
        from lab.cells import topology_names
        from lab.clients import CLIENTS

        pg = [("pg", c, t) for t in topology_names() for c in CLIENTS]
    else:
        pg = [("pg", c, t) for c, t in REFERENCE_PG_PATHS]
    return rest + pg


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:  # noqa: D103 - collected by pytest
    if "net_path" not in metafunc.fixturenames:
        return
    rtts = metafunc.config.getoption("--lab-rtts")
    cases = [(p, rtt, tls) for p in paths(metafunc.config) for rtt in rtts for tls in (False, True)]
    metafunc.parametrize(
        "net_path, rtt_ms, tls", cases, ids=[f"{p[1]}-{p[2]}-rtt{rtt:g}ms-{'tls' if tls else 'plain'}" for p, rtt, tls in cases]
    )


def test_insert_over_network(
    net_path: tuple[str, str, str], rtt_ms: float, tls: bool, lab_topology: Topology, lab_network: Network,
    expectations: list[Expectation], record_row, run_id: str, benchmark, request: pytest.FixtureRequest,
) -> None:
    kind, client_name, topology = net_path
    endpoint: Endpoint = lab_topology.endpoint(topology)
    if kind == "pg":
        cls: Any = client_class(client_name)
        reason = why_not_measured(expectations, client_name, cls, topology, endpoint.facts)
        if reason:
            pytest.skip(reason)
    else:
        endpoint = request.getfixturevalue("rest_trust")
        cls = REST_CLIENTS[client_name]
    target = lab_network.delayed(endpoint, rtt_ms)
    client = cls(target.dsn(tls=tls), 1, timeout=10.0) if kind == "pg" else cls(target, tls)
    counter = iter(range(10**9))

    async def one() -> None:
        if kind == "pg":
            await insert_returning(client, 0, next(counter))
        else:
            reply = await client.insert({"payload": f"net-{next(counter)}"})
            assert reply.ok, f"{client_name}: status {reply.status}, body {reply.body}"

    m = Measurement(rounds=rounds_for(rtt_ms, client_name), warmup=2)
    benchmark.group = f"insert rtt={rtt_ms:g}ms {'tls' if tls else 'plain'}"
    benchmark.extra_info.update(client=client_name, topology=topology, rtt_ms=rtt_ms, tls=tls, facts=target.facts)
    try:
        measure(benchmark, client, one, m)
    finally:
        record_row(
            cell_row(
                run_id=run_id, experiment="network", cell_id=f"{client_name}-{topology}-rtt{rtt_ms:g}ms-{'tls' if tls else 'plain'}",
                client=client_name, client_versions=cls.versions(), client_description=cls.description, topology=topology,
                facts={**target.facts, "tls": tls, "rtt_ms": rtt_ms}, scenario="single-insert", outcome=m.outcome, expected=None,
                latencies_s=m.timed, params={"rtt_ms": rtt_ms, "tls": tls, "rounds": m.rounds, "warmup_rounds": m.warmup, "path": kind},
            )
        )
