"""The same single-row insert through REST and through PostgreSQL clients, across an injected
network (claim C8): each round-trip time, TLS on and off. pytest-benchmark measures; every
benchmark also writes a row (experiment "network") that `python -m lab report` turns into
REST overhead per RTT beside the round-trip model (lab.report.rtt_model).

    pytest experiments/test_network.py --lab-rtts=0,20 --lab-network=all
"""

from __future__ import annotations

import itertools

import pytest

from lab.clients.python.execute import perform
from lab.clients.registry import client_class
from lab.plan import Cell, NetworkCase
from lab.proxies.network import Network
from lab.pytest_plugin import LabRun
from lab.results.measures import NetworkMeasures
from lab.results.recorder import Recorder
from lab.workloads.bench import Measurement, label, measure
from lab.workloads.scenarios import insert_returning


def rounds_for(rtt_ms: float, client: str) -> int:
    """Enough rounds for a stable median, fewer where each round costs more waiting. The per-call
    client spends 20-60 ms of CPU building a client and CA store every call; its median needs more."""
    rounds = 10 if rtt_ms < 10 else 5 if rtt_ms < 40 else 3
    return max(rounds, 7) if client == "httpx-per-call" else rounds


@pytest.mark.experiment("network")
def test_insert_over_network(
    cell: Cell[NetworkCase],
    lab_run: LabRun,
    lab_network: Network,
    record: Recorder,
    run_id: str,  # type: ignore[no-untyped-def]
    benchmark,
    request: pytest.FixtureRequest,
) -> None:
    rtt_ms, tls = cell.case.rtt_ms, cell.case.tls
    rest = cell.topology == "rest"
    if rest:
        endpoint = request.getfixturevalue("rest_trust")
    else:
        endpoint = lab_run.topology.endpoint(cell.topology)
        reason = record.why_not_measured()
        if reason:
            pytest.skip(reason)
    target = lab_network.delayed(endpoint, rtt_ms)
    client = (
        cell.client(target, tls, lab_run.rest_table)
        if rest
        else client_class(cell.client.name)(target.dsn(tls=tls), 1, timeout=10.0)
    )
    counter = itertools.count()

    async def one() -> None:
        if rest:
            reply = await client.insert({"payload": f"net-{next(counter)}"})
            assert reply.ok, f"{cell.client.name}: status {reply.status}, body {reply.body}"
        else:
            await perform(client, insert_returning(0, next(counter), lab_run.table))

    m = Measurement(
        rounds=rounds_for(rtt_ms, cell.client.name), warmup=1
    )  # one round opens what a kept-alive client keeps
    label(
        benchmark,
        cell,
        run_id,
        f"insert rtt={rtt_ms:g}ms {'tls' if tls else 'plain'}",
        rtt_ms=rtt_ms,
        tls=tls,
        facts=target.facts,
    )
    try:
        measure(benchmark, client, one, m)
    finally:
        record(
            m.outcome,
            NetworkMeasures(
                rtt_ms=rtt_ms, tls=tls, rounds=m.rounds, warmup_rounds=m.warmup, path="rest" if rest else "pg"
            ),
            m.timed,
            facts=target.facts.with_(tls=tls, rtt_ms=rtt_ms),
        )
