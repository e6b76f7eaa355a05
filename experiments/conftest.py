"""Fixtures of the experiments: the topology for the session, the row writer, the expectations.

Options choose a subset of the matrix (names are checked, unknown ones are listed
with the valid ones), the backend, the per-cell time limit and repeats.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from lab import RESULTS_DIR
from lab.backends.docker import DockerBackend, choose, engine_status
from lab.backends.native import NativeBackend
from lab.cells import Cell, matrix
from lab.errors import LabError
from lab.expectations import Expectation, load
from lab.network import Network
from lab.rest_clients import trust_bundle, use_trust_bundle
from lab.rtt_model import negotiated_tls
from lab.rows import Row, RowWriter
from lab.runner import DEFAULT_CELL_TIMEOUT, DEFAULT_REPEATS
from lab.runstate import RunState, all_runs, new_run_id
from lab.topology import Topology

EXPECTATIONS = Path(__file__).with_name("expectations.toml")
CELLS = pytest.StashKey[list[Cell]]()


def _names(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def _rtts(value: str) -> list[float]:
    try:
        rtts = [float(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise pytest.UsageError(f"--lab-rtts {value!r}: give round-trip times in ms, like 0,5,20,50") from None
    if not rtts or any(r < 0 for r in rtts):
        raise pytest.UsageError(f"--lab-rtts {value!r}: round-trip times must be 0 or more")
    return rtts


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pooler-lab")
    group.addoption("--lab-backend", default="auto", choices=["auto", "native", "docker", "attach"],
                    help="auto (default): Docker when an engine answers, else native processes; attach: the topology `python -m lab up` started")
    group.addoption("--lab-clients", help="comma-separated client configurations (default: all)")
    group.addoption("--lab-topologies", help="comma-separated topologies (default: all)")
    group.addoption("--lab-scenarios", help="comma-separated scenarios (default: all)")
    group.addoption("--lab-cell-timeout", type=float, default=DEFAULT_CELL_TIMEOUT, help="seconds before a cell is a timeout")
    group.addoption("--lab-repeats", type=int, default=DEFAULT_REPEATS, help="times each cell's workload is repeated")
    group.addoption("--lab-rtts", type=_rtts, default=[0.0, 5.0, 20.0, 50.0],
                    help="comma-separated injected round-trip times in ms for the network benchmarks (default: 0,5,20,50)")
    group.addoption("--lab-network", default="reference", choices=["reference", "all", "none"],
                    help="network benchmarks: REST clients plus reference PostgreSQL paths (default), every client, or none")
    group.addoption("--lab-profiles", help="compose profiles to start too, e.g. prepared (PgBouncer 1.21+ with max_prepared_statements)")
    group.addoption("--lab-baseline", help="result file to diff this run against at the end; a changed cell fails the session")
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
        config.stash[CELLS] = matrix(_names(opt("--lab-clients")), _names(opt("--lab-topologies")), _names(opt("--lab-scenarios")),
                                     profiles=tuple(_names(opt("--lab-profiles")) or ()))
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


@dataclass
class LabRun:
    topology: Topology
    state: RunState  # where this session's own processes (delay proxies) are recorded


@pytest.fixture(scope="session")
def lab_run(pytestconfig: pytest.Config, run_id: str):  # type: ignore[no-untyped-def]
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
        own = RunState.create(persistent=False)
        try:
            yield LabRun(topo, own)
        finally:
            own.stop()
        return
    profiles = tuple(_names(pytestconfig.getoption("--lab-profiles")) or ())
    try:
        chosen = choose(pytestconfig.getoption("--lab-backend"))
    except LabError as exc:
        pytest.exit(str(exc), returncode=4)
    ok, why = engine_status() if chosen == "native" else (True, "")
    say(f"backend: {chosen}" + ("" if chosen == "docker" or ok else f" ({why})"))
    backend = (DockerBackend if chosen == "docker" else NativeBackend)(progress=say, run_id=run_id, profiles=profiles)
    try:
        topo = backend.start()
    except LabError as exc:
        backend.stop()
        pytest.exit(f"the topology did not come up: {exc}", returncode=4)
    except BaseException:
        backend.stop()
        raise
    try:
        assert backend.state is not None
        yield LabRun(topo, backend.state)
    finally:
        backend.stop()
        say("topology stopped")


@pytest.fixture(scope="session")
def lab_topology(lab_run: LabRun) -> Topology:
    return lab_run.topology


@pytest.fixture(scope="session")
def lab_network(lab_run: LabRun):  # type: ignore[no-untyped-def]
    network = Network(lab_run.state)
    try:
        yield network
    finally:
        network.stop()


@pytest.fixture(scope="session")
def rest_trust(lab_run: LabRun):  # type: ignore[no-untyped-def]
    """SSL_CERT_FILE for the session: how unmodified REST clients come to trust the run's CA."""
    rest = lab_run.topology.endpoints.get("rest")
    if rest is None or rest.ca_file is None:
        pytest.skip("this topology has no REST tier")
    before = os.environ.get("SSL_CERT_FILE")
    use_trust_bundle(trust_bundle(rest.ca_file, lab_run.state.directory))
    assert rest.tls_port is not None
    # the negotiated TLS version decides how many round trips a handshake costs (lab.rtt_model)
    rest = replace(rest, facts={**rest.facts, "tls_version": negotiated_tls(rest.host, rest.tls_port, rest.ca_file)})
    try:
        yield rest
    finally:
        if before is None:
            os.environ.pop("SSL_CERT_FILE", None)
        else:
            os.environ["SSL_CERT_FILE"] = before


@pytest.fixture(scope="session")
def expectations() -> list[Expectation]:
    try:
        return load(EXPECTATIONS)
    except LabError as exc:
        pytest.exit(str(exc), returncode=4)


@pytest.fixture(scope="session")
def row_writer(pytestconfig: pytest.Config, run_id: str) -> RowWriter:
    writer = RowWriter(run_id, Path(pytestconfig.getoption("--lab-results")))
    pytestconfig._lab_rows_path = writer.path  # type: ignore[attr-defined]  # for the baseline diff at the end
    return writer


@pytest.fixture
def record_row(row_writer: RowWriter):  # type: ignore[no-untyped-def]
    def record(row: Row) -> Row:
        row_writer.write(row)
        return row

    return record


__all__ = ["Cell", "RunState"]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """With --lab-baseline: every cell whose outcome changed against the baseline, and a failing exit status."""
    baseline = session.config.getoption("--lab-baseline")
    if not baseline or not hasattr(session.config, "_lab_rows_path"):
        return
    from lab.diff import diff_files, render

    d = diff_files(Path(baseline), session.config._lab_rows_path)  # type: ignore[attr-defined]
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    for line in render(d):
        if reporter is not None:
            reporter.write_line(f"[pooler-lab diff] {line}")
    if d.changes:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
