"""Every client configuration x topology x scenario: observe the outcome, record it, hold it to the table.

    pytest experiments/test_matrix.py -k 'asyncpg-default and transaction'
"""

from __future__ import annotations

import pytest

from lab.cells import Cell
from lab.clients import client_class
from lab.expectations import Expectation, lookup
from lab.rows import cell_row
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

    try:
        rule: Expectation | None = lookup(expectations, cell.client, cell.topology, cell.scenario, endpoint.facts)
        missing = None
    except LookupError as exc:
        rule, missing = None, str(exc)
    record_row(
        cell_row(
            run_id=run_id,
            experiment="matrix",
            cell_id=cell.id,
            client=cell.client,
            client_versions=cls.versions(),
            client_description=cls.description,
            topology=cell.topology,
            facts=endpoint.facts,
            scenario=cell.scenario,
            outcome=result.outcome,
            expected=rule,
            latencies_s=result.latencies_s,
            params={"repeats": repeats, "iterations_run": result.iterations, "cell_timeout_s": timeout,
                    "workers": scen.workers, "ops_per_worker": scen.ops_per_worker, "client_pool_size": POOL_SIZE,
                    "elapsed_s": round(result.elapsed_s, 3)},
        )
    )
    assert rule is not None, f"observed {result.outcome.summary()}; {missing}"
    diffs = rule.mismatches(result.outcome)
    assert not diffs, (
        f"\n  observed: {result.outcome.summary()}"
        + (f"\n            cause: {result.outcome.detail}" if result.outcome.detail else "")
        + f"\n  expected: {rule.describe()}\n  differs:  {'; '.join(diffs)}"
    )
