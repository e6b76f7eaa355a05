"""Every client configuration x topology x scenario: observe the outcome, record it, hold it to the table.

    pytest experiments/test_matrix.py -k 'asyncpg-default and transaction'
"""

from __future__ import annotations

import pytest

from lab.cells import Cell
from lab.clients import client_class
from lab.expectations import Expectation
from lab.judge import record_and_judge
from lab.runner import POOL_SIZE, run_cell_sync
from lab.scenarios import scenario as get_scenario
from lab.topology import Topology


def test_matrix(cell: Cell, lab_topology: Topology, expectations: list[Expectation], record_row, run_id: str, pytestconfig: pytest.Config) -> None:
    endpoint = lab_topology.endpoint(cell.topology)
    scen = get_scenario(cell.scenario)
    cls = scen.verbatim.get(cell.client, client_class(cell.client))
    repeats = pytestconfig.getoption("--lab-repeats")
    timeout = pytestconfig.getoption("--lab-cell-timeout")
    result = run_cell_sync(cls, endpoint.dsn(), scen, repeats=repeats, timeout=timeout)
    record_and_judge(
        expectations, record_row, run_id=run_id, experiment="matrix", cell_id=cell.id, client=cell.client, client_cls=cls,
        topology=cell.topology, facts=endpoint.facts, scenario=cell.scenario, outcome=result.outcome, latencies_s=result.latencies_s,
        params={"repeats": repeats, "iterations_run": result.iterations, "cell_timeout_s": timeout, "workers": scen.workers,
                "ops_per_worker": scen.ops_per_worker, "client_pool_size": POOL_SIZE, "elapsed_s": round(result.elapsed_s, 3)},
    )
