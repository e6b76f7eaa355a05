"""Running one cell: a client configuration, a scenario, repeated, under a time limit, through the configuration's
runner (lab.clients.runner): the lab's own process for Python configurations, a runner process for any other."""

from __future__ import annotations

from collections.abc import Callable

from lab.clients.configuration import Configuration
from lab.clients.runner import Runner
from lab.results.outcome import CellResult
from lab.workloads.scenarios import Scenario

DEFAULT_REPEATS = 2
DEFAULT_CELL_TIMEOUT = 10.0
POOL_SIZE = 4


def op_timeout(cell_timeout: float) -> float:
    """The limit a client waits for one connection or operation: a tenth of the cell's (1 s by default), so a pool
    that can never connect (the RCA's attempt 2 through PgBouncer) ends as the pool's own PoolTimeout well inside
    the cell's limit. Every pool here is as large as its workers need, so a healthy cell never waits for one."""
    return max(0.5, cell_timeout / 10)


def run_scenario(
    runner: Runner,
    configuration: Configuration,
    dsn: str,
    scenario: Scenario,
    table: str,
    repeats: int = DEFAULT_REPEATS,
    timeout: float = DEFAULT_CELL_TIMEOUT,
    pool_size: int = POOL_SIZE,
    after_iteration: Callable[[], None] | None = None,
    op_timeout_s: float | None = None,
) -> CellResult:
    """A configuration's cell: a pool of `pool_size` connections to `dsn`, new for each iteration; a per-operation
    limit below the cell's (so a wait inside a driver ends as that driver's own error where it has one)."""
    spec = scenario.spec(
        configuration.name,
        dsn,
        table,
        pool_size,
        repeats,
        timeout,
        op_timeout(timeout) if op_timeout_s is None else op_timeout_s,
    )
    return runner.run(spec, after_iteration)
