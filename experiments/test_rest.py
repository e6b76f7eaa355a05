"""The REST tier (claim C7): the RCA's attempt 3 exactly as written, and the same insert through
Supabase's own client and a shared httpx client, over http and https, held to the expectation table.

The REST server is whatever the topology runs: real PostgREST (Docker backend) or the
lab's stand-in (native backend); rows name it.
"""

from __future__ import annotations

import asyncio

import pytest

from lab.expectations import Expectation
from lab.judge import record_and_judge
from lab.rest_clients import REST_CLIENTS
from lab.rest_scenarios import CALLS, WORKERS, rca_attempt_3
from lab.topology import Endpoint

CELLS = [(name, tls) for name in REST_CLIENTS for tls in (False, True)]


@pytest.mark.parametrize("client_name, tls", CELLS, ids=[f"{n}-rest-{'https' if t else 'http'}-rca-attempt-3" for n, t in CELLS])
def test_rest(client_name: str, tls: bool, rest_trust: Endpoint, expectations: list[Expectation], record_row, run_id: str, pytestconfig: pytest.Config) -> None:
    endpoint = rest_trust
    cls = REST_CLIENTS[client_name]
    timeout = pytestconfig.getoption("--lab-cell-timeout")
    result = asyncio.run(rca_attempt_3(cls(endpoint, tls), timeout))
    record_and_judge(
        expectations, record_row, run_id=run_id, experiment="rest", cell_id=f"{client_name}-rest-{'https' if tls else 'http'}-rca-attempt-3",
        client=client_name, client_cls=cls, topology="rest", facts={**endpoint.facts, "tls": tls}, scenario="rca-attempt-3",
        outcome=result.outcome, latencies_s=result.latencies_s,
        params={"tls": tls, "workers": WORKERS, "calls_per_worker": CALLS, "last_status": result.last_status,
                "last_body": result.last_body if isinstance(result.last_body, (list, dict)) else str(result.last_body)[:200]},
    )
