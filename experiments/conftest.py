"""Fixtures of the experiments: the topology for the session, the row writer, the expectations.

Options choose a subset of the matrix (names are checked, unknown ones are listed
with the valid ones), the backend, the per-cell time limit and repeats.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from lab import RESULTS_DIR
from lab.backends.native import NativeBackend
from lab.cells import Cell, matrix
from lab.errors import LabError
from lab.expectations import Expectation, load
from lab.rows import Row, RowWriter
from lab.runner import DEFAULT_CELL_TIMEOUT, DEFAULT_REPEATS
from lab.runstate import RunState, all_runs, new_run_id
from lab.topology import Topology

EXPECTATIONS = Path(__file__).with_name("expectations.toml")
CELLS = pytest.StashKey[list[Cell]]()


def _names(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pooler-lab")
    group.addoption("--lab-backend", default="native", choices=["native", "attach"],
                    help="native: start a fresh topology for this session; attach: use the one `python -m lab up` started")
    group.addoption("--lab-clients", help="comma-separated client configurations (default: all)")
    group.addoption("--lab-topologies", help="comma-separated topologies (default: all)")
    group.addoption("--lab-scenarios", help="comma-separated scenarios (default: all)")
    group.addoption("--lab-cell-timeout", type=float, default=DEFAULT_CELL_TIMEOUT, help="seconds before a cell is a timeout")
    group.addoption("--lab-repeats", type=int, default=DEFAULT_REPEATS, help="times each cell's workload is repeated")
    group.addoption("--lab-run-id", help="name of this run's result file (default: generated)")
    group.addoption("--lab-results", default=str(RESULTS_DIR), help="directory result rows are written to")


def pytest_configure(config: pytest.Config) -> None:
    # `kill <pid>` should clean up like Ctrl-C does: fixture teardown stops the servers.
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)
    if config.getoption("--lab-repeats") < 1 or config.getoption("--lab-cell-timeout") <= 0:
        raise pytest.UsageError("--lab-repeats must be at least 1 and --lab-cell-timeout positive")
    opt = config.getoption
    try:
        config.stash[CELLS] = matrix(_names(opt("--lab-clients")), _names(opt("--lab-topologies")), _names(opt("--lab-scenarios")))
    except LabError as exc:
        raise pytest.UsageError(str(exc)) from None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "cell" not in metafunc.fixturenames:
        return
    cells = metafunc.config.stash[CELLS]
    wanted = getattr(metafunc.function, "cells", None)
    if wanted is not None:
        cells = [c for c in cells if wanted(c)]
    metafunc.parametrize("cell", cells, ids=[c.id for c in cells])


@pytest.fixture(scope="session")
def run_id(pytestconfig: pytest.Config) -> str:
    return pytestconfig.getoption("--lab-run-id") or new_run_id()


@pytest.fixture(scope="session")
def lab_topology(pytestconfig: pytest.Config, run_id: str):  # type: ignore[no-untyped-def]
    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")

    def say(msg: str) -> None:
        if reporter is not None:
            reporter.write_line(f"[pooler-lab] {msg}")

    if pytestconfig.getoption("--lab-backend") == "attach":
        running = [r for r in all_runs() if r.persistent and r.topology]
        if not running:
            pytest.exit("--lab-backend attach: no topology is up; start one with `python -m lab up`", returncode=4)
        topo = Topology.from_dict(running[-1].topology)  # type: ignore[arg-type]
        say(f"attached to run {topo.run_id}")
        yield topo
        return
    backend = NativeBackend(progress=say, run_id=run_id)
    try:
        topo = backend.start()
    except LabError as exc:
        backend.stop()
        pytest.exit(f"the topology did not come up: {exc}", returncode=4)
    except BaseException:
        backend.stop()
        raise
    try:
        yield topo
    finally:
        backend.stop()
        say("topology stopped")


@pytest.fixture(scope="session")
def expectations() -> list[Expectation]:
    try:
        return load(EXPECTATIONS)
    except LabError as exc:
        pytest.exit(str(exc), returncode=4)


@pytest.fixture(scope="session")
def row_writer(pytestconfig: pytest.Config, run_id: str) -> RowWriter:
    return RowWriter(run_id, Path(pytestconfig.getoption("--lab-results")))


@pytest.fixture
def record_row(row_writer: RowWriter):  # type: ignore[no-untyped-def]
    def record(row: Row) -> Row:
        row_writer.write(row)
        return row

    return record


__all__ = ["Cell", "RunState"]
