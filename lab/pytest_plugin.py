"""The experiments' pytest plugin: options, the run's plan, the topology, and a recorder per cell.

experiments/conftest.py only wires this in. Every experiment test takes a `cell`
parameter; the plugin parametrizes it with the cells `lab.plan` built for the
experiment the test is marked with (`@pytest.mark.experiment("matrix")`), narrowed by
`--lab-clients`, `--lab-topologies` and `--lab-scenarios`. The `record` fixture is the
recorder of the test's own cell: a test passes only what it observed.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from lab import interrupts
from lab.clients.runner import Runners
from lab.errors import ENVIRONMENT, LabError, ServerDied
from lab.options import LabOptions, add_to_pytest
from lab.paths import EXPECTATIONS_FILE, EXPERIMENTS_DIR
from lab.plan import Cell, Plan
from lab.proxies.network import Network
from lab.proxies.tenant import OTHER_REGION, OTHER_TENANT, ROUTES, TenantRouter
from lab.results.expectations import Expectation, check_names, load
from lab.results.recorder import Recorder
from lab.results.rows import RowWriter
from lab.results.timings import CellTimes
from lab.topology.backends import Watched, start_for_session
from lab.topology.model import Endpoint, EndpointFacts, Topology
from lab.topology.runstate import RunState, new_run_id
from lab.topology.supavisor_api import TENANT

OPTIONS = pytest.StashKey[LabOptions]()
PLAN = pytest.StashKey[Plan]()
ROWS = pytest.StashKey[RowWriter]()
RULES = pytest.StashKey[list[Expectation]]()
DIED = pytest.StashKey[str]()
RUN = pytest.StashKey["LabRun"]()
SELECTED = pytest.StashKey[Counter[str]]()
#: where the session's seconds went: bring-up, each experiment's cells (their setup, call and teardown), teardown
PROFILE = pytest.StashKey["defaultdict[str, float]"]()
TIMES = pytest.StashKey[CellTimes]()


def pytest_addoption(parser: pytest.Parser) -> None:
    add_to_pytest(parser.getgroup("pooler-lab"))


def _runs_experiments(config: pytest.Config) -> bool:
    """Whether this session collects the lab's experiments: pytest is installed with the lab's entry point, so the
    plugin is loaded in every session of the environment (the lab's own tests too), and stays inert in those."""
    experiments = EXPERIMENTS_DIR.resolve()
    for arg in config.args or [str(config.invocation_params.dir)]:
        path = Path(config.invocation_params.dir, arg.split("::", 1)[0]).resolve()
        if path == experiments or experiments in path.parents or path in experiments.parents:
            return True
    return False


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "experiment(name): the lab experiment whose cells parametrize this test's `cell`"
    )
    config.addinivalue_line(
        "markers",
        "fresh_server_connections: each cell through a pooler starts with new server connections (the lab's own servers)",
    )
    config.addinivalue_line(
        "markers",
        "whole_server: each cell starts with no pooler's server connection on the server (connection-limit cells)",
    )
    if not _runs_experiments(config):
        return

    # `kill <pid>` cleans up as Ctrl-C does, once: fixture teardown stops the servers and no second signal cuts it short
    interrupts.install()
    opts = LabOptions.from_values(lambda o: config.getoption(f"lab_{o.dest}"))
    if opts.run_id is None:
        opts = replace(opts, run_id=new_run_id())
    config.stash[OPTIONS] = opts
    try:
        plan = config.stash[PLAN] = Plan.build(opts)
        # the table is read and checked before anything starts: a rule naming no real cell is an error, not a dead rule
        config.stash[RULES] = check_names(load(EXPECTATIONS_FILE), plan.known)
    except LabError as exc:
        raise pytest.UsageError(str(exc)) from None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "cell" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("experiment")
    if marker is None:
        raise pytest.UsageError(
            f"{metafunc.definition.nodeid} takes a cell but names no experiment (@pytest.mark.experiment)"
        )
    cells = metafunc.config.stash[PLAN].of(marker.args[0])
    metafunc.parametrize("cell", cells, ids=[c.id for c in cells])


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """--lab-experiments: the tests of the other experiments are deselected, not reported as skipped. Runs after
    pytest's own selection (-k, -m), so what it counts as selected is what will run."""
    opts = config.stash.get(OPTIONS, None)
    if opts is None:
        return
    if opts.experiments is None:
        config.stash[SELECTED] = _selected(items)
        return
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        marker = item.get_closest_marker("experiment")
        (keep if marker is None or marker.args[0] in opts.experiments else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
    config.stash[SELECTED] = _selected(items)


def _selected(items: list[pytest.Item]) -> Counter[str]:
    """The cells that will run, per experiment: the summary counts rows against these, not the whole plan."""
    out: Counter[str] = Counter()
    for item in items:
        marker = item.get_closest_marker("experiment")
        callspec = getattr(item, "callspec", None)  # an experiment with no cells here has one item, a skip, no cell
        if marker is not None and callspec is not None and isinstance(callspec.params.get("cell"), Cell):
            out[marker.args[0]] += 1
    return out


def pytest_benchmark_update_json(
    config: pytest.Config, benchmarks: list[dict[str, Any]], output_json: dict[str, Any]
) -> None:
    """Benchmark JSON names each benchmark's cell by its id (client-topology-scenario), not an unserializable object."""
    for bench in output_json.get("benchmarks", []):
        params = bench.get("params") or {}
        if "cell" in params:
            params["cell"] = bench.get("param") or str(params["cell"])


@pytest.fixture(scope="session")
def lab_options(pytestconfig: pytest.Config) -> LabOptions:
    return pytestconfig.stash[OPTIONS]


@pytest.fixture(scope="session")
def run_id(lab_options: LabOptions) -> str:
    assert lab_options.run_id is not None
    return lab_options.run_id


@dataclass(frozen=True)
class LabRun:
    topology: Topology
    state: RunState  # where this session's own processes (delay proxies) are recorded
    servers: Watched | None = None  # what watches the topology's servers (None: the lab cannot, a target)
    table: str = "lab_items"  # the table the writing workloads use (on a target, the run's own)
    rest_table: str = "lab_items"  # the table the REST clients write (on a target, the run's own in public)

    def health(self) -> str | None:
        return self.servers.dead_server() if self.servers is not None else None


@pytest.fixture(scope="session")
def lab_run(pytestconfig: pytest.Config, lab_options: LabOptions) -> Iterator[LabRun]:
    """The topology for the whole session: started here and stopped at the end, or attached to. The writing
    workloads use the session's tables (on a target, the run's own)."""
    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")

    def say(msg: str) -> None:
        if reporter is not None:
            reporter.write_line(f"[pooler-lab] {msg}")

    profile = pytestconfig.stash.setdefault(PROFILE, defaultdict(float))
    started = time.monotonic()
    starting = lab_options
    if lab_options.topologies is not None:  # narrowed: also what its cells use beside their own topology
        starting = replace(lab_options, topologies=pytestconfig.stash[PLAN].needed_topologies())
    try:
        with start_for_session(starting, say) as session:
            profile["bring-up"] += time.monotonic() - started
            run = LabRun(
                session.topology,
                session.state,
                session.watched,
                session.table or "lab_items",
                session.rest_table or "lab_items",
            )
            pytestconfig.stash[RUN] = run  # for the health check after a failing cell (pytest_runtest_makereport)
            yield run
            ended = time.monotonic()
        profile["teardown"] += time.monotonic() - ended
    except LabError as exc:
        pytest.exit(f"the topology did not come up: {exc}", returncode=3 if exc.exit_status == ENVIRONMENT else 4)
    except Exception as exc:  # a fault of the lab's own: its traceback once, not once per cell
        import traceback

        if reporter is not None:
            reporter.write_line("".join(traceback.format_exception(exc)))
        pytest.exit(f"the topology did not come up: {type(exc).__name__}: {exc}", returncode=3)


@pytest.fixture(scope="session")
def lab_topology(lab_run: LabRun) -> Topology:
    return lab_run.topology


@pytest.fixture(scope="session")
def runners(pytestconfig: pytest.Config) -> Iterator[Runners]:
    """The session's runners: Python configurations in this process, any other runtime in a runner process of its
    own, started when its first cell runs and stopped at the end."""
    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")

    def say(message: str) -> None:
        if reporter is not None:
            reporter.write_line(f"[pooler-lab] {message}")

    found = Runners(say)
    try:
        yield found
    finally:
        found.close()


@pytest.fixture(scope="session")
def lab_network(lab_run: LabRun) -> Iterator[Network]:
    network = Network(lab_run.state)
    try:
        yield network
    finally:
        network.stop()


@pytest.fixture(scope="session")
def rest_trust(lab_run: LabRun):
    """The REST endpoint, trusted through SSL_CERT_FILE for the session: how unmodified REST clients
    come to trust the run's CA. Its facts carry the negotiated TLS version (lab.report.rtt_model)."""
    from lab.clients.rest import trust_bundle, use_trust_bundle
    from lab.topology.tls import negotiated_tls

    rest = lab_run.topology.endpoints.get("rest")
    if rest is None or rest.tls_port is None:
        pytest.skip("this topology has no REST tier")
    before = os.environ.get("SSL_CERT_FILE")
    if rest.ca_file is not None:  # a target's public certificate needs no bundle of ours
        use_trust_bundle(trust_bundle(rest.ca_file, lab_run.state.directory))
    rest = replace(rest, facts=rest.facts.with_(tls_version=negotiated_tls(rest.host, rest.tls_port, rest.ca_file)))
    try:
        yield rest
    finally:
        if before is None:
            os.environ.pop("SSL_CERT_FILE", None)
        else:
            os.environ["SSL_CERT_FILE"] = before


#: with the "supavisor" profile: the router topology -> Supavisor's endpoint (lab.topology.backends.docker)
SUPAVISOR_ROUTES = {"tenant-proxy-transaction": "supavisor", "tenant-proxy-session": "supavisor-session"}


@pytest.fixture(scope="session")
def tenant_routers(
    lab_topology: Topology, lab_options: LabOptions
) -> Iterator[dict[str, tuple[Endpoint, TenantRouter | None]]]:
    """Locally, the lab's Supavisor-style routers, each an endpoint of its own (the pooler's, on the router's port),
    with the router for what it saw: one per pooler for the lab's tenant, and one of another region. With the
    compose profile "supavisor" (Docker), the real Supavisor takes the lab's tenant's routes. On a target, its own
    Supavisor endpoints are the routers."""
    if lab_options.target is not None:
        yield {name: (e, None) for name, e in lab_topology.endpoints.items()}
        return
    real = {name: e for name, e in lab_topology.endpoints.items() if e.facts.router == "supavisor"}
    if real:  # the compose profile "supavisor": Supabase's own pooler takes the lab's router's routes (rows say which)
        routed = {route: (replace(real[name], topology=route), None) for route, name in SUPAVISOR_ROUTES.items()}
        with TenantRouter.in_front_of(lab_topology, OTHER_REGION, OTHER_TENANT) as elsewhere:
            yield {**routed, **elsewhere}
        return
    with (
        TenantRouter.in_front_of(lab_topology, ROUTES, TENANT) as routed_here,
        TenantRouter.in_front_of(lab_topology, OTHER_REGION, OTHER_TENANT) as elsewhere,
    ):
        yield {**routed_here, **elsewhere}


@pytest.fixture(scope="session")
def expectations(pytestconfig: pytest.Config) -> list[Expectation]:
    return pytestconfig.stash[RULES]


@pytest.fixture(scope="session")
def row_writer(pytestconfig: pytest.Config, lab_options: LabOptions, run_id: str) -> RowWriter:
    writer = RowWriter(run_id, Path(lab_options.results))
    pytestconfig.stash[ROWS] = writer  # for the baseline diff and the summary at the end
    return writer


@pytest.fixture(autouse=True)
def _fresh_pooler(request: pytest.FixtureRequest) -> None:
    """Before every cell, one housekeeping whatever the pooler (lab.observe.server_view.fresh_pooler): the other
    poolers parked where idle they would hold server connections the cell may need, the cell's server connections
    ended where its experiment is marked `fresh_server_connections` (every pooler's where `whole_server`), and what
    the kind of its pooler needs to start the cell clean (pgagroal 1.6 is restarted), so no cell inherits another's
    statements, damage or crowding."""
    if "cell" not in request.fixturenames:
        return
    from lab.observe.server_view import fresh_pooler

    cell: Cell = request.getfixturevalue("cell")
    run: LabRun = request.getfixturevalue("lab_run")
    end = request.node.get_closest_marker("fresh_server_connections") is not None
    whole = request.node.get_closest_marker("whole_server") is not None
    fresh_pooler(run.topology, run.topology.endpoints.get(cell.topology), end_connections=end, whole_server=whole)


@pytest.fixture
def record(
    request: pytest.FixtureRequest,
    cell: Cell,
    run_id: str,
    expectations: list[Expectation],
    row_writer: RowWriter,
    lab_options: LabOptions,
) -> Recorder:
    """The recorder of this test's own cell; facts default to its topology's endpoint's."""
    run: LabRun = request.getfixturevalue("lab_run")
    endpoint = run.topology.endpoints.get(cell.topology)
    selection = lab_options.selection()
    not_run = request.config.stash[PLAN].not_run()
    if not_run:  # the row file says what the run left out, and why
        selection = {**(selection or {}), "not_run": not_run}
    return Recorder(
        cell,
        run_id,
        expectations,
        row_writer.write,
        endpoint.facts if endpoint else EndpointFacts(),
        selection,
        run.health,
    )


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    interrupts.raise_if_swallowed()  # a signal lost in a finalizer still ends the run before the next cell


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    """Each cell's seconds, to its experiment; the session's bring-up and teardown, which run inside the first and
    the last cell's protocol, are counted apart (the lab_run fixture measures them)."""
    marker = item.get_closest_marker("experiment")
    profile = item.config.stash.setdefault(PROFILE, defaultdict(float))
    before = profile["bring-up"] + profile["teardown"]
    started = time.monotonic()
    yield
    if marker is not None:
        elapsed = max(0.0, time.monotonic() - started - (profile["bring-up"] + profile["teardown"] - before))
        profile[f"experiment {marker.args[0]}"] += elapsed
        cell = getattr(getattr(item, "callspec", None), "params", {}).get("cell")
        if isinstance(cell, Cell):  # kept for the next run's split into parts (lab.parallel)
            item.config.stash.setdefault(TIMES, CellTimes()).add(marker.args[0], cell.topology, elapsed)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """What ran, counted from the rows written, beside what the plan held."""
    writer = config.stash.get(ROWS, None)
    plan = config.stash.get(PLAN, None)
    if plan is None:
        return
    from lab.results.rows import read_rows

    written: Counter[str] = Counter()
    if writer is not None and writer.path.exists():
        written.update(r.experiment for r in read_rows(writer.path))
    selected = config.stash.get(SELECTED, Counter())
    parts = [f"{name} {written[name]}/{selected[name]}" for name, cells in plan.cells.items() if selected[name]]
    terminalreporter.write_line(f"[pooler-lab] rows recorded per experiment (recorded/selected): {', '.join(parts)}")
    profile = config.stash.get(PROFILE, defaultdict(float))
    if profile:
        spent = [("bring-up", profile["bring-up"])]
        spent += sorted(
            ((k.removeprefix("experiment "), v) for k, v in profile.items() if k.startswith("experiment ")),
            key=lambda kv: -kv[1],
        )
        spent.append(("teardown", profile["teardown"]))
        terminalreporter.write_line(
            "[pooler-lab] where the time went: " + ", ".join(f"{name} {seconds:.1f}s" for name, seconds in spent)
        )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A dead server makes the session's status 3 (the environment); with --lab-baseline, every cell whose outcome
    changed against the baseline, and a failing exit status."""
    opts = session.config.stash.get(OPTIONS, None)
    times = session.config.stash.get(TIMES, None)
    run = session.config.stash.get(RUN, None)
    # what the native parts are split by (lab.parallel): a target's or a container's times are not theirs
    if opts is not None and times is not None and run is not None and run.topology.backend == "native":
        with contextlib.suppress(OSError):
            times.write(Path(opts.results))
    if session.config.stash.get(DIED, ""):
        session.exitstatus = ENVIRONMENT
        return
    writer = session.config.stash.get(ROWS, None)
    if opts is None or not opts.baseline or writer is None:
        return
    from lab.results.diff import diff_files, render

    d = diff_files(Path(opts.baseline), writer.path)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    for line in render(d):
        if reporter is not None:
            reporter.write_line(f"[pooler-lab diff] {line}")
    if d.failed:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    """A server that died (or stopped answering) ends the session at once: one line naming it, exit status 3, no
    more cells. Any failure of a cell, its housekeeping included, is first held against the topology's health, so a
    dead server is never reported as the cell's own failure."""
    outcome = yield
    excinfo = call.excinfo
    if excinfo is None or excinfo.errisinstance((pytest.skip.Exception, KeyboardInterrupt)):
        return
    died = str(excinfo.value) if isinstance(excinfo.value, ServerDied) else None
    run = item.config.stash.get(RUN, None)
    if died is None and run is not None:
        dead = run.health()
        if dead:
            died = f"{dead}; cell {item.callspec.id if hasattr(item, 'callspec') else item.name} and the cells after it were not measured"
    if died:
        item.session.shouldstop = f"pooler-lab: {died}"
        item.config.stash[DIED] = died
        report = outcome.get_result()
        report.longrepr = f"pooler-lab: {died}"
        report.sections = []  # the drivers' logged connection errors are the symptom, not news: the one line says it


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[DIED] = ""
