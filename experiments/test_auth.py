"""Logins that fail (issue: what the application sees when authentication or routing is wrong): a wrong
password and an unknown user direct, through each PgBouncer and through the tenant router, and the right
user at a router of another region; an unknown database, and a wrong password with sslmode=prefer (libpq
tries once more without TLS: one more failed login a pooler's ban counts), direct and through each
PgBouncer. Each row keeps the SQLSTATE and the exact message the client raised, how long the application
waited, and the failed logins the server and the pooler logged.

    pytest experiments/test_auth.py -k 'wrong-password'
"""

from __future__ import annotations

import zlib
from dataclasses import replace

import pytest

from lab.clients.configuration import Configuration
from lab.clients.runner import Runners
from lab.observe.server_view import LogWindow
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
#: an unknown database of the cell's own: PgBouncer forwards an unknown name to the server through its `*` entry,
#: and after the server refused it, the next logins to that name wait out server_login_retry (15 s) instead of
#: failing; a name per cell makes every cell its name's first login, whatever ran before it
UNKNOWN_DATABASE = "lab_no_such_database_{tag}"
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
    wrong = cell.case.startswith("auth-wrong-password")
    tag = f"{zlib.crc32(f'{lab_run.topology.run_id}/{cell.id}'.encode()):08x}"
    database = UNKNOWN_DATABASE.format(tag=tag) if cell.case == "auth-unknown-database" else None
    sslmode = "prefer" if cell.case.endswith("-prefer") else None
    at = replace(endpoint, database=database or endpoint.database, sslmode=sslmode or endpoint.sslmode)
    dsn = at.dsn(user=user, password=WRONG_PASSWORD if wrong else None)
    window = LogWindow.of(topology, endpoint).open()
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
        AuthMeasures(
            user=user,
            password="wrong" if wrong else "right",
            pool_wait_s=POOL_WAIT_S,
            database=database,
            sslmode=sslmode,
            elapsed_s=round(result.elapsed_s, 3),
            failed_logins=failed_logins(window),
        ),
        facts=endpoint.facts,
        versions=result.versions,
    )


def failed_logins(window: LogWindow) -> int | None:
    """Failed logins in the logs the cell's window read: one line per attempt from whoever checked the password (the
    server, or a pooler that checks it itself)."""
    events = window.events()
    if events is None:
        return None
    return sum(1 for e in events if "password authentication failed" in (e.message or ""))
