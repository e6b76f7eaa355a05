"""Counting the wire (claims C3, C4): N queries on one pooled client connection, through the wire
tracer, per client configuration and topology. How many startups and authentication exchanges
cross the wire for N queries, and how many logins the pooler and the server log for them.
"""

from __future__ import annotations

import time

import pytest

from lab.clients.configuration import Configuration
from lab.clients.runner import Runners
from lab.observe.logins import Logins
from lab.plan import Cell
from lab.proxies.tracer import WireTracer
from lab.pytest_plugin import LabRun
from lab.results.measures import WireMeasures
from lab.results.recorder import Recorder
from lab.workloads.harness import run_scenario
from lab.workloads.scenarios import Scenario, repeated_query

QUERIES = 20
WIRE_SCENARIO = Scenario(
    "wire-count",
    f"{QUERIES} sequential queries on a pool of one connection",
    repeated_query,
    workers=1,
    ops_per_worker=QUERIES,
)


@pytest.mark.experiment("wire")
def test_wire(cell: Cell[None], lab_run: LabRun, runners: Runners, record: Recorder) -> None:
    configuration: Configuration = cell.client
    endpoint = lab_run.topology.endpoint(cell.topology)
    logins = Logins(lab_run.topology, endpoint)
    with logins.counted(), WireTracer(endpoint.host, endpoint.port) as tracer:
        result = run_scenario(
            runners.for_(configuration),
            configuration,
            endpoint.via(tracer.port, plain=True, wire_tracer=True).dsn(),
            WIRE_SCENARIO,
            lab_run.table,
            repeats=1,
            timeout=10.0,
            pool_size=1,
        )
        time.sleep(0.01)  # let the last Terminate cross (every count it reports was made before)
        traces = [t.summary() for t in tracer.snapshot()]
    total = lambda key: sum(t[key] for t in traces)  # noqa: E731
    record(
        result.outcome,
        WireMeasures(
            queries=QUERIES,
            client_connections=len(traces),
            startup_messages=total("startup_messages"),
            authentication_requests=total("authentication_requests"),
            password_messages=total("password_messages"),
            auth_requests_per_query=round(total("authentication_requests") / QUERIES, 3),
            simple_queries=total("simple_queries"),
            parse=total("parse"),
            bind=total("bind"),
            named_statements=total("named_statements"),
            server_logins=logins.server,
            pooler_logins=logins.pooler,
            per_connection=traces,
        ),
        result.latencies_s,
        versions=result.versions,
    )
