"""Ways of starting the topology described in compose/: native processes, or Docker where an engine and Compose v2
answer; or none at all, for a target the lab did not start."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import httpx

from lab.errors import EnvironmentProblem, LabError
from lab.topology.model import Endpoint, Topology
from lab.topology.runstate import RunState, all_runs, reap_stale

if TYPE_CHECKING:
    from lab.options import LabOptions

Progress = Callable[[str], None]
#: the table the writing workloads use in the lab's own topology (compose/postgres/init.sql)
LOCAL_TABLE = "lab_items"


class Watched(Protocol):
    """What can tell that a server of the topology died while the run measures."""

    def dead_server(self) -> str | None: ...


@dataclass(frozen=True)
class Session:
    """What a test session runs against: the topology; the run state the session's own helpers (delay proxies) are
    recorded in; what watches the topology's servers (None where the lab cannot: a target); and the tables the
    writing workloads use (the run's own on a target; None with --read-only)."""

    topology: Topology
    state: RunState
    watched: Watched | None
    table: str | None = LOCAL_TABLE
    rest_table: str | None = LOCAL_TABLE


class Backend(ABC):
    """Starts and stops one run of the topology; a context manager that cleans up after a failed start too."""

    name: str
    state: RunState | None

    def __init__(self, progress: Progress | None = None) -> None:
        self.progress: Progress = progress or (lambda msg: None)

    def __enter__(self) -> Topology:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reap(self) -> None:
        """What runs killed before this one left behind goes first."""
        for line in reap_stale():
            self.progress(f"cleaned up after a killed run: {line}")

    @abstractmethod
    def start(self) -> Topology: ...

    @abstractmethod
    def stop(self) -> None: ...


def make_backend(
    chosen: str,
    progress: Progress,
    run_id: str | None = None,
    profiles: tuple[str, ...] = (),
    images: str = "auto",
    persistent: bool = False,
    fixed_ports: bool = False,
    topologies: tuple[str, ...] | None = None,
) -> Backend:
    """The backend of that name (the Docker one imports the Docker SDK, an optional extra, only when chosen)."""
    if chosen == "docker":
        from lab.topology.backends.docker import DockerBackend

        return DockerBackend(progress=progress, run_id=run_id, profiles=profiles, images=images, persistent=persistent)
    from lab.topology.backends.native import NativeBackend

    return NativeBackend(
        progress=progress,
        run_id=run_id,
        profiles=profiles,
        persistent=persistent,
        fixed_ports=fixed_ports,
        topologies=topologies,
    )


@contextmanager
def start_for_session(options: LabOptions, say: Progress) -> Iterator[Session]:
    """The session's topology: a target's endpoints, the topology `lab up` left running (`attach`, with a run state
    of the session's own), or one started here by the backend chosen and stopped at the end whatever happens."""
    from lab.topology.backends.choice import choose, explain

    if options.target is not None:
        yield from _target_session(options, say)
        return

    if options.backend == "attach":
        running = [r for r in all_runs() if r.persistent and r.topology]
        if not running:
            raise LabError("--lab-backend attach: no topology is up; start one with `./pooler-lab up`")
        topology = Topology.from_dict(running[-1].topology)  # type: ignore[arg-type]
        say(f"attached to run {topology.run_id}")
        own = RunState.create(persistent=False)
        try:
            yield Session(topology, own, running[-1])
        finally:
            own.stop()
        return
    chosen = choose(options.backend)
    say(explain(options.backend, chosen))
    backend = make_backend(chosen, say, options.run_id, options.profiles, options.images, topologies=options.topologies)
    try:
        topology = backend.start()
        assert backend.state is not None
        if options.sslmode != "disable":
            topology = topology.with_sslmode(options.sslmode)
        watched: Watched = backend.state if chosen == "native" else backend  # type: ignore[assignment]
        yield Session(topology, backend.state, watched)
    finally:
        backend.stop()
        say("topology stopped")


def _target_session(options: LabOptions, say: Progress) -> Iterator[Session]:
    """Endpoints the lab did not start: nothing to start or watch; the run's own schema on the target, dropped at the end."""
    from lab.topology.backends.target import TargetFile, check, rest_table, run_schema

    assert options.target is not None and options.run_id is not None
    target = TargetFile.load(options.target)
    checks = check(target)
    for c in checks:
        say(f"target {target.name}: {c.line}")
    failed = [c for c in checks if not c.ok]
    if failed:
        raise EnvironmentProblem(f"target {target.name}: " + "; ".join(c.line for c in failed))
    # rows carry what the lab observed at each endpoint beside what the file declares
    topology = target.topology(options.run_id, {c.endpoint: c.observed for c in checks})
    own = RunState.create(persistent=False, run_id=options.run_id)  # the session's own helpers: delay proxies
    try:
        with ExitStack() as stack:
            table = stack.enter_context(run_schema(target, options.run_id, options.read_only))
            say(
                f"target {target.name}: {', '.join(target.endpoints)}"
                + (f"; writing to {table}, dropped at the end" if table else "; read-only")
            )
            rest_name = None
            if target.rest is not None and not options.read_only:
                rest_name = stack.enter_context(rest_table(target, options.run_id))
                wait_for_rest_table(topology.endpoint("rest"), rest_name)
                say(f"target {target.name}: REST writes go to public.{rest_name}, dropped at the end")
            yield Session(topology, own, None, table, rest_name)
    finally:
        own.stop()


def wait_for_rest_table(rest: Endpoint, table: str, timeout: float = 20.0) -> None:
    """Until the REST tier serves the run's new table (PostgREST reloads its schema cache on NOTIFY, asynchronously)."""
    verify = rest.ca_file or True
    deadline, last = time.monotonic() + timeout, ""
    while time.monotonic() < deadline:
        try:
            r = httpx.get(
                f"{rest.url(tls=True)}/rest/v1/{table}",
                params={"limit": "0"},
                verify=verify,
                timeout=5,
                headers={"apikey": rest.keys["anon"], "Authorization": f"Bearer {rest.keys['anon']}"},
            )
            if r.status_code == 200:
                return
            last = f"HTTP {r.status_code}"
        except httpx.HTTPError as exc:
            last = type(exc).__name__
        time.sleep(0.3)
    raise EnvironmentProblem(
        f"the target's REST tier does not serve the run's table {table} after {timeout:g}s ({last}): "
        "its PostgREST did not reload the schema cache, or anon cannot read public"
    )
