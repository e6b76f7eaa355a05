"""Every client configuration x topology x scenario: observe the outcome, record it, hold it to the table.
Beside the outcome, what the server and the pooler saw (lab.observe.server_view): the errors they logged
that the client did not raise, and the prepared statements the cell left on a transaction pooler's server
connections, counted before the cell (on fresh server connections: 0) and after each repeat (a leak grows
with them; a runner in another process is counted once, after its cell).

    pytest experiments/test_matrix.py -k 'asyncpg-default and transaction'
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest

from lab.clients.configuration import Configuration
from lab.clients.contract import PER_WORKER
from lab.clients.runner import Runners
from lab.observe.server_view import LogWindow, PreparedCensus, end_server_connections, summarize
from lab.options import LabOptions
from lab.plan import Cell
from lab.pytest_plugin import LabRun
from lab.results.measures import MatrixMeasures
from lab.results.recorder import Recorder
from lab.topology.model import Topology
from lab.topology.services import kind
from lab.workloads.harness import POOL_SIZE, op_timeout, run_scenario
from lab.workloads.scenarios import Scenario


@pytest.fixture(scope="module")
def censuses(lab_topology: Topology) -> Iterator[dict[str, PreparedCensus]]:
    """One census per transaction pooler the lab started (never on a target: its pool is shared with others)."""
    found = {}
    if lab_topology.superuser:
        for name, e in lab_topology.endpoints.items():
            if (
                e.facts.pool_mode == "transaction"
                and e.facts.pool_size
                and e.facts.kind
                and kind(e.facts.kind).prepared_census
            ):
                found[name] = PreparedCensus(e.dsn(), e.facts.pool_size)
    yield found
    for census in found.values():
        census.close()


# Fresh server connections before each cell (the plugin's housekeeping): what an earlier cell prepared on them (a
# failing cell leaves its statements behind) must not decide this cell's outcome, which is then the same alone, in any
# order, or in a full run.
@pytest.mark.experiment("matrix")
@pytest.mark.fresh_server_connections
def test_matrix(
    cell: Cell[Scenario],
    lab_run: LabRun,
    lab_options: LabOptions,
    runners: Runners,
    record: Recorder,
    censuses: dict[str, PreparedCensus],
) -> None:
    topology, scenario = lab_run.topology, cell.case
    configuration: Configuration = cell.client
    endpoint = topology.endpoint(cell.topology)
    census = censuses.get(cell.topology)
    before = census.count() if census else None
    after: list[int | None] = []
    window = LogWindow.of(topology, endpoint).open()
    result = run_scenario(
        runners.for_(configuration),
        configuration,
        endpoint.dsn(),
        scenario,
        lab_run.table,
        repeats=lab_options.repeats,
        timeout=min(lab_options.cell_timeout, scenario.limit_s or lab_options.cell_timeout),
        # a scenario's shorter limit calls a hang sooner; a login or a pool's wait keeps the run's own bound
        op_timeout_s=op_timeout(lab_options.cell_timeout),
        after_iteration=(lambda: after.append(census.count())) if census else None,
    )
    log, unraised = summarize(window.events(), result.outcome.sqlstate, result.outcome.message)
    if configuration.login_role and topology.superuser:  # a role of its own: its server connections are the cell's
        end_server_connections(topology.admin_dsn(), configuration.login_role)
    record(
        result.outcome,
        MatrixMeasures(
            repeats=scenario.repeats or lab_options.repeats,
            iterations_run=result.iterations,
            cell_timeout_s=min(lab_options.cell_timeout, scenario.limit_s or lab_options.cell_timeout),
            workers=scenario.workers,
            ops_per_worker=scenario.ops_per_worker,
            client_pool_size=1 if scenario.connections == PER_WORKER else POOL_SIZE,
            elapsed_s=round(result.elapsed_s, 3),
            server_log=log,
            unraised_errors=unraised,
            prepared_before=before,
            prepared_after=after if census else None,
            connections=scenario.connections,
            outcome_counts=dict(Counter(o.label() for o in result.outcomes)) if scenario.keep_going else None,
        ),
        result.latencies_s,
        versions=result.versions,
    )
