"""Logins that fail (issue: what the application sees when authentication or routing is wrong): a wrong
password and an unknown user direct, through each PgBouncer and through the tenant router, and the right
user at a router of another region. Each row keeps the SQLSTATE and the exact message the client raised.

    pytest experiments/test_auth.py -k 'wrong-password'
"""

from __future__ import annotations

import pytest

from lab.clients.configuration import Configuration
from lab.clients.runner import Runners
from lab.plan import Cell
from lab.proxies.tenant import TenantRouter
from lab.pytest_plugin import LabRun
from lab.results.measures import AuthMeasures
from lab.results.recorder import Recorder
from lab.topology.model import Endpoint
from lab.topology.supavisor_api import TENANT
from lab.workloads.harness import run_scenario
from lab.workloads.scenarios import SCENARIOS

WORKLOAD = SCENARIOS["repeated-query"]
UNKNOWN_ROLE = "lab_nobody"
WRONG_PASSWORD = "not-the-password"  # a literal: the row says only that the password was wrong
#: a refused login fails at once; psycopg_pool only logs it and keeps retrying until this wait ends
POOL_WAIT_S = 0.15
POOL_SIZE = 2


@pytest.mark.experiment("auth")
def test_auth(
    cell: Cell[str],
    lab_run: LabRun,
    tenant_routers: dict[str, tuple[Endpoint, TenantRouter | None]],
    runners: Runners,
    record: Recorder,
) -> None:
    configuration: Configuration = cell.client
    topology = lab_run.topology
    endpoint = tenant_routers[cell.topology][0] if cell.topology in tenant_routers else topology.endpoint(cell.topology)
    role = UNKNOWN_ROLE if cell.case == "auth-unknown-user" else endpoint.user
    user = f"{role}.{TENANT}" if endpoint.facts.tenant else role  # through a router: the lab's project, always
    wrong = cell.case == "auth-wrong-password"
    dsn = endpoint.dsn(user=user, password=WRONG_PASSWORD if wrong else None)
    result = run_scenario(
        runners.for_(configuration),
        configuration,
        dsn,
        WORKLOAD,
        lab_run.table,
        repeats=1,
        timeout=5.0,
        pool_size=POOL_SIZE,
        op_timeout_s=POOL_WAIT_S,
    )
    record(
        result.outcome,
        AuthMeasures(user=user, password="wrong" if wrong else "right", pool_wait_s=POOL_WAIT_S),
        facts=endpoint.facts,
        versions=result.versions,
    )
