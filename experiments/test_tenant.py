"""Tenant routing (claim C1): every client through a Supavisor-style router in front of PgBouncer (the
`tenant_routers` fixture of lab.pytest_plugin),
with the right user name (`lab_app.<ref>`), a wrong project ref, and no ref at all.

The router answers unknown tenants with Supavisor's own FATAL XX000 error (lab.proxies.tenant
cites the source). So the lab can show which error comes from the user name and which from
transaction mode, and at which phase each appears.
"""

from __future__ import annotations

import asyncio
import warnings

import pytest

from lab.clients.configuration import Configuration
from lab.clients.registry import client_class
from lab.clients.runner import Runners
from lab.options import LabOptions
from lab.plan import Cell
from lab.proxies.tenant import TenantRouter, tenant_user
from lab.pytest_plugin import LabRun
from lab.results.measures import TenantMeasures
from lab.results.recorder import Recorder
from lab.topology.model import Endpoint
from lab.workloads.harness import POOL_SIZE, run_scenario
from lab.workloads.scenarios import SCENARIOS

WORKLOAD = SCENARIOS["repeated-query"]
REFUSED_WAIT_S = 0.15


@pytest.mark.experiment("tenant")
def test_tenant(
    cell: Cell[str],
    tenant_routers: dict[str, tuple[Endpoint, TenantRouter | None]],
    lab_run: LabRun,
    lab_options: LabOptions,
    runners: Runners,
    record: Recorder,
) -> None:
    configuration: Configuration = cell.client
    router, proxy = tenant_routers[cell.topology]
    user = tenant_user(router.user, router.facts.tenant, cell.case)
    # wrong tenants fail at connect; a short limit keeps psycopg_pool from waiting out its retries. The right
    # user gets the matrix's limit (NullPool logs in through the router for every operation, slow on a busy
    # machine), and held cells repeat like the matrix's, so no outcome hangs on one lucky assignment.
    right = cell.case == "tenant-right-user"
    timeout = lab_options.cell_timeout if right else min(2.0, lab_options.cell_timeout)
    seen = len(proxy.dropped) if proxy else 0
    result = run_scenario(
        runners.for_(configuration),
        configuration,
        router.dsn(user=user),
        WORKLOAD,
        lab_run.table,
        repeats=lab_options.repeats if right else 1,
        timeout=timeout,
        pool_size=POOL_SIZE,
        # a refused login fails at once; psycopg_pool only logs it and waits this long before its PoolTimeout
        op_timeout_s=None if right else REFUSED_WAIT_S,
    )
    dropped = sorted({p for d in proxy.dropped[seen:] for p in d}) if proxy else None
    jit = (
        _server_setting(configuration.name, router.dsn(user=user), "jit") if configuration.group == "attempt" else None
    )
    record(
        result.outcome,
        TenantMeasures(
            user=user,
            workload=WORKLOAD.name,
            cell_timeout_s=timeout,
            server_jit=jit,
            dropped_startup_parameters=dropped,
        ),
        result.latencies_s,
        facts=router.facts,
        versions=result.versions,
    )


def _server_setting(name: str, dsn: str, setting: str) -> str | None:
    """What the server says a setting is, asked through a pool built as the configuration builds it (the RCA's
    attempts ask for jit=off); None if that pool cannot connect or answer."""

    async def ask() -> str | None:
        client = client_class(name)(dsn, 1, timeout=2.0)
        try:
            await client.open()
            return str((await client.fetch(f"SHOW {setting}", {}))[0][0])
        except Exception:
            return None
        finally:
            await client.close()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return asyncio.run(ask())
