"""Every client configuration x topology x scenario: observe the outcome, record it, hold it to the table.

    pytest experiments/test_matrix.py -k 'asyncpg-default and transaction'
"""

from __future__ import annotations

import pytest

from lab.options import LabOptions
from lab.plan import Cell
from lab.results.measures import MatrixMeasures
from lab.results.recorder import Recorder
from lab.topology.model import Topology
from lab.workloads.harness import POOL_SIZE, run_cell_sync


@pytest.mark.experiment("matrix")
def test_matrix(cell: Cell, lab_topology: Topology, lab_options: LabOptions, record: Recorder) -> None:
    scenario = cell.case
    result = run_cell_sync(cell.client, lab_topology.endpoint(cell.topology).dsn(), scenario,
                           repeats=lab_options.repeats, timeout=lab_options.cell_timeout)
    record(result.outcome, MatrixMeasures(
        repeats=lab_options.repeats, iterations_run=result.iterations, cell_timeout_s=lab_options.cell_timeout,
        workers=scenario.workers, ops_per_worker=scenario.ops_per_worker, client_pool_size=POOL_SIZE,
        elapsed_s=round(result.elapsed_s, 3)), result.latencies_s)
