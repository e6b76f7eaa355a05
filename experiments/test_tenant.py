"""Tenant routing (claim C1): every client through a Supavisor-style router in front of PgBouncer,
with the right user name (`lab_app.<ref>`), a wrong project ref, and no ref at all.

The router answers unknown tenants with Supavisor's own FATAL XX000 error (lab.tenant_proxy
cites the source). So the lab can show which error comes from the user name and which from
transaction mode, and at which phase each appears.
"""

from __future__ import annotations

import pytest

from lab.clients import CLIENTS
from lab.expectations import Expectation
from lab.judge import record_and_judge
from lab.runner import run_cell_sync
from lab.scenarios import SCENARIOS
from lab.tenant_proxy import TenantRouter
from lab.topology import Endpoint, Topology

TENANT = "labproject01"
USERS = {"tenant-right-user": f".{TENANT}", "tenant-wrong-ref": ".someoneelse", "tenant-no-ref": ""}
ROUTED = {"tenant-proxy-transaction": "pgbouncer-transaction", "tenant-proxy-session": "pgbouncer-session"}
CELLS = [(c, "tenant-proxy-transaction", u) for u in USERS for c in CLIENTS] + [
    (c, "tenant-proxy-session", "tenant-wrong-ref") for c in ("asyncpg-default", "psycopg-async-default")
]


@pytest.fixture(scope="session")
def tenant_endpoints(lab_topology: Topology):  # type: ignore[no-untyped-def]
    routers, endpoints = [], {}
    try:
        for name, pooler in ROUTED.items():
            target = lab_topology.endpoint(pooler)
            router = TenantRouter(target.host, target.port, TENANT).__enter__()
            routers.append(router)
            endpoints[name] = Endpoint(
                topology=name, host=target.host, port=router.port, database=target.database, user=target.user,
                password=target.password,
                facts={**target.facts, "tenant_router": "lab.tenant_proxy (stand-in for Supavisor's tenant routing)",
                       "routes_to": pooler, "tenant": TENANT, "refusal_delay_s": router.delay_s},
            )
        yield endpoints
    finally:
        for router in routers:
            router.__exit__(None, None, None)


@pytest.mark.parametrize("client, topology, user_kind", CELLS, ids=[f"{c}-{t}-{u}" for c, t, u in CELLS])
def test_tenant(client: str, topology: str, user_kind: str, tenant_endpoints: dict[str, Endpoint], expectations: list[Expectation],
                record_row, run_id: str, pytestconfig: pytest.Config) -> None:
    endpoint = tenant_endpoints[topology]
    user = endpoint.user + USERS[user_kind]
    cls = CLIENTS[client]
    # wrong tenants fail at connect; a short limit keeps psycopg_pool from waiting out its retries
    timeout = min(2.0, pytestconfig.getoption("--lab-cell-timeout"))
    # one repetition: what is measured here is where the tenant error appears, and the
    # matrix already repeats the same workload through the same pooler
    result = run_cell_sync(cls, endpoint.dsn(user=user), SCENARIOS["repeated-query"], repeats=1, timeout=timeout)
    record_and_judge(
        expectations, record_row, run_id=run_id, experiment="tenant", cell_id=f"{client}-{topology}-{user_kind}", client=client,
        client_cls=cls, topology=topology, facts=endpoint.facts, scenario=user_kind, outcome=result.outcome,
        latencies_s=result.latencies_s, params={"user": user, "workload": "repeated-query", "cell_timeout_s": timeout},
    )
