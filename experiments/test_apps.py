"""Two application processes on one topology (issue: what one Python process hides): at once, and
the same application restarted. Every client configuration that runs the workloads, every topology.

    pytest experiments/test_apps.py -k 'asyncpg-default and restart'
"""

from __future__ import annotations

import pytest

from lab.options import LabOptions
from lab.plan import Cell
from lab.results.measures import AppsMeasures
from lab.results.recorder import Recorder
from lab.topology.model import Topology
from lab.workloads import apps


@pytest.mark.experiment("apps")
def test_apps(cell: Cell, lab_topology: Topology, lab_options: LabOptions, record: Recorder) -> None:
    endpoint = lab_topology.endpoint(cell.topology)
    # Fresh server connections before the cell, so its outcome is its own two processes', and after it, so the
    # statements it leaves on purpose meet no later cell (the matrix's outcomes assume none are there). Through a
    # pooler only (direct, each process has its own server connection), and never on a target: its user's other
    # sessions may be somebody's application.
    clean = bool(lab_topology.superuser and endpoint.facts.get("pooler"))
    if clean:
        apps.fresh_server_connections(lab_topology.admin_dsn(), endpoint.user)
    try:
        results = apps.run_apps(cell.client.name, endpoint.dsn(), cell.case, lab_options.cell_timeout)
    finally:
        if clean:
            apps.fresh_server_connections(lab_topology.admin_dsn(), endpoint.user)
    outcome, failed = apps.outcome_of(results)
    record(outcome, AppsMeasures(processes=len(results), mode=cell.case, failed_app=failed, apps=[r.to_dict() for r in results],
                                 workers_per_app=apps.WORKERS, ops_per_worker=apps.OPS_PER_WORKER, client_pool_size=apps.POOL_SIZE))
