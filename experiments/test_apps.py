"""Two application processes on one topology (issue: what one Python process hides): at once, and
the same application restarted. Every client configuration that runs the workloads, every topology.

    pytest experiments/test_apps.py -k 'asyncpg-default and restart'
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lab.observe.server_view import end_server_connections
from lab.options import LabOptions
from lab.plan import Cell
from lab.results.measures import AppsMeasures
from lab.results.recorder import Recorder
from lab.topology.model import Topology
from lab.workloads import apps


@pytest.fixture(scope="module")
def leftovers(lab_topology: Topology) -> Iterator[list[str]]:
    """The users whose server connections the cells used; after the last cell they are ended, so the statements the
    processes left on purpose meet no later experiment (the matrix's outcomes assume none are there)."""
    users: list[str] = []
    yield users
    for user in dict.fromkeys(users):
        end_server_connections(lab_topology.admin_dsn(), user)


# Fresh server connections before each cell (the plugin's housekeeping), so its outcome is its own two processes'.
@pytest.mark.experiment("apps")
@pytest.mark.fresh_server_connections
def test_apps(
    cell: Cell, lab_topology: Topology, lab_options: LabOptions, record: Recorder, leftovers: list[str]
) -> None:
    endpoint = lab_topology.endpoint(cell.topology)
    if lab_topology.superuser and endpoint.facts.pooler:  # after the last cell `leftovers` ends them once more
        leftovers.append(endpoint.user)
    results = apps.run_apps(cell.client.name, endpoint.dsn(), cell.case, lab_options.cell_timeout)
    outcome, failed = apps.outcome_of(results)
    record(
        outcome,
        AppsMeasures(
            processes=len(results),
            mode=cell.case,
            failed_app=failed,
            apps=[r.to_dict() for r in results],
            workers_per_app=apps.WORKERS,
            ops_per_worker=apps.OPS_PER_WORKER,
            client_pool_size=apps.POOL_SIZE,
        ),
    )
