"""A kind of service: everything the lab knows about one kind of server, in one class.

Modelled on PgBouncer's own test harness (`Postgres`, `Bouncer`: one class owns the port, the config,
readiness, logs and stop) and on testcontainers (one module per service, a readiness strategy of its
own). A compose service names its kind with the `lab.kind` label; the kind then owns:

- natively: its binary (or how to build it), the argv from its rendered config, how to tell it is
  ready, how to read its version, and the endpoints and facts it offers;
- under Docker: how to read the same version and facts from the running container;
- for observing it: the line its log writes per login, and its WARNING/ERROR lines;
- how to stop it (and what the kernel sends it if the lab dies).

The backends are one generic loop over the services; nothing else names a kind.
"""

from __future__ import annotations

import http.client
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol

import psycopg

from lab.errors import MissingDependency, StartupError
from lab.machine.binaries import system_binary
from lab.topology.compose import ComposeTopology, Service
from lab.topology.model import Endpoint, EndpointFacts, Topology
from lab.topology.ports import HOST
from lab.topology.processes import RunAs, Server
from lab.topology.render import Credentials

if TYPE_CHECKING:
    from lab.machine.builds import Recipe
    from lab.topology.runstate import RunState

READY_TIMEOUT = 30.0
Progress = Callable[[str], None]


@dataclass(frozen=True)
class LogEvent:
    """A WARNING/ERROR/FATAL line a server wrote: its source service, level, SQLSTATE (where the log has one)."""

    source: str
    level: str
    sqlstate: str | None
    message: str

    def key(self) -> tuple[str, str, str | None, str]:
        return (self.source, self.level, self.sqlstate, self.message)


class Spawner(Protocol):
    def __call__(
        self, svc: Service, argv: list[str], kind: ServiceKind, extra_env: dict[str, str] | None = None
    ) -> Server: ...


@dataclass
class NativeSite:
    """Where a native run's services live: the run's directories, the ports picked, the run's secrets, who the
    servers run as, and how to start a process of the run (recorded, so it is stopped and reaped with it)."""

    topo: ComposeTopology
    state: RunState
    owner: RunAs
    creds: Credentials
    ports: dict[str, int]  # service -> port
    tls_ports: dict[str, int]  # service -> its second (TLS) port
    spawn: Spawner
    progress: Progress
    #: facts every endpoint of the run shares (backend; the server's version once the server is up)
    base: EndpointFacts = field(default_factory=EndpointFacts)

    @property
    def rundir(self) -> Path:
        return self.state.directory

    def config(self, svc: Service, name: str = "") -> Path:
        """A rendered config file of a service (or its directory)."""
        return self.rundir / "config" / svc.name / name if name else self.rundir / "config" / svc.name

    @property
    def logs(self) -> Path:
        return self.rundir / "logs"

    def state_dir(self, svc: Service) -> Path:
        return self.rundir / "state" / svc.name

    @property
    def ca_file(self) -> str:
        return str(self.rundir / "config" / "tls" / "ca.crt")  # the run's CA signs every server's certificate

    def pg_endpoint(self, svc: Service, facts: EndpointFacts) -> Endpoint:
        return Endpoint(
            svc.topology,
            HOST,
            self.ports[svc.name],
            "postgres",
            self.creds.app_user,
            self.creds.app_password,
            facts,
            ca_file=self.ca_file,
        )


@dataclass
class DockerSite:
    """What a Docker run knows of its containers: the published (or host-network) port of each port variable, the
    run's secrets, the image each service runs, whether containers share the host's network."""

    topo: ComposeTopology
    creds: Credentials
    ports: dict[str, int]  # port variable -> port on 127.0.0.1
    image: Callable[[str], str]  # service -> a description of its image
    host_network: bool
    ca_file: str
    progress: Progress
    base: EndpointFacts = field(default_factory=EndpointFacts)

    def service_ports(self, svc: Service) -> list[int]:
        return [self.ports[published] for published, _ in svc.port_variables]

    def pg_endpoint(self, name: str, port: int, facts: EndpointFacts) -> Endpoint:
        return Endpoint(
            name, HOST, port, "postgres", self.creds.app_user, self.creds.app_password, facts, ca_file=self.ca_file
        )


class ServiceKind:
    """One kind of service. Subclasses set the class attributes and override what differs."""

    #: the `lab.kind` label value
    name: ClassVar[str]
    #: the pooler family rows name ("pgbouncer", "pgpool", ...); None: not a pooler
    family: ClassVar[str | None] = None
    #: a clean, prompt shutdown, and what the kernel sends when the lab process that owns it dies
    stop_signal: ClassVar[int] = signal.SIGTERM
    death_signal: ClassVar[int] = signal.SIGTERM
    #: a line its log writes for every login (log_connections is on in compose/'s templates); None: none
    login_pattern: ClassVar[str | None] = None
    #: its WARNING/ERROR/FATAL log lines (groups: level, message, and state where the log has a SQLSTATE)
    log_events: ClassVar[re.Pattern[str] | None] = None
    #: natively it runs as the unprivileged user (initdb, PgBouncer and most poolers refuse root); False: as the lab
    as_owner: ClassVar[bool] = True
    #: the lab's own Python module it runs natively (a stand-in or a model), if any
    python_module: ClassVar[str | None] = None
    #: the lab can count the prepared statements left on its server connections through it, one transaction per
    #: server connection at once (lab.observe.server_view.PreparedCensus, opened once for all the matrix's cells).
    #: False where it is restarted between cells (`fresh`) or may keep a server connection for good (pgagroal 1.6)
    prepared_census: ClassVar[bool] = True

    def topologies(self, svc: Service) -> list[str]:
        """The topology names the service's endpoints take (known before it starts, so cells can be planned): its
        `lab.topology`, or several where one service offers several ports (a transaction and a session port)."""
        return [svc.topology]

    # -- facts ------------------------------------------------------------------------
    def prepared_statements(self, version: str | None, settings: str | None) -> str | None:
        """Whether this pooler keeps protocol-level named prepared statements per client ("tracked") or passes them
        to whichever server connection it assigns ("not tracked"); None where that cannot be known."""
        return None

    def facts(self, svc: Service, base: EndpointFacts, version: str | None, **more: object) -> EndpointFacts:
        """The facts every row through this service carries, the same under every backend."""
        facts = replace(base, service=svc.name, kind=self.name)
        if self.family is None:
            return replace(facts, **more)  # type: ignore[arg-type]
        settings = svc.labels.get("lab.settings") or None
        return replace(
            facts,
            pooler=self.family,
            pooler_version=version,
            pool_mode=svc.pool_mode,
            pool_size=svc.pool_size,
            pooler_settings=settings,
            prepared_statements=self.prepared_statements(version, settings),
            **more,  # type: ignore[arg-type]
        )

    def parse_log(self, source: str, line: str) -> LogEvent | None:
        if self.log_events is None:
            return None
        m = self.log_events.search(line)
        if m is None:
            return None
        groups = m.groupdict()
        return LogEvent(source, groups["level"], groups.get("state"), self.clean_message(groups["message"].strip()))

    def clean_message(self, message: str) -> str:
        """A log message without what differs from run to run (connection ids, pids)."""
        return message

    # -- native -------------------------------------------------------------------------
    #: how the lab builds this kind where Debian bookworm ships another version (or none): the `lab.build` label
    #: names the version, built from Debian's next release on first use (lab.machine.builds)
    recipe: ClassVar[Recipe | None] = None

    def binary(self, svc: Service, progress: Progress = print) -> Path:
        raise MissingDependency(f"service {svc.name} ({self.name}) cannot run natively here: use --backend docker")

    def built_binary(self, svc: Service, progress: Progress) -> Path | None:
        """The binary `lab.build` asks for, built on first use; None where the service asks for no build."""
        wanted = svc.labels.get("lab.build")
        if not wanted or self.recipe is None:
            return None
        from lab.machine.builds import ensure

        return ensure(self.recipe, wanted, progress)

    def native(self, svc: Service, site: NativeSite) -> dict[str, Endpoint]:
        """Start the service natively and return the endpoints it offers."""
        raise NotImplementedError

    def image_files(self, svc: Service, progress: Progress = print) -> tuple[tuple[Path, str], ...]:
        """The files its local image's build puts beside its compose/images/ folder, as (file, name in the build
        context): by default the build `lab.build` asks for (built now where missing, as natively), each file its
        recipe names; a kind whose image carries the lab's own code names that."""
        binary = self.built_binary(svc, progress)
        if binary is None or self.recipe is None:
            return ()
        prefix = binary.parents[len(Path(self.recipe.binary).parts) - 1]
        return tuple((prefix / path, name) for path, name in self.recipe.image_files)

    # -- docker -------------------------------------------------------------------------
    def docker(self, svc: Service, site: DockerSite) -> dict[str, Endpoint]:
        """The endpoints a running container of the service offers (none: the service serves the others)."""
        return {}

    # -- between cells ----------------------------------------------------------------------
    def fresh(self, topology: Topology, endpoint: Endpoint, ended: bool) -> bool:
        """Before a cell through this pooler (lab.observe.server_view.fresh_pooler): whatever it needs to start the
        cell clean beyond having its server connections ended on the server (`ended`: they just were). Default:
        nothing, which is all PgBouncer and pgpool-II need: they notice a backend the server ended and open another.
        A kind whose pooler cannot (pgagroal 1.6) restarts it here. True when it did something."""
        return False

    def park(self, topology: Topology, endpoint: Endpoint) -> bool:
        """While a cell runs through another topology: give back what the idle pooler holds on the server, where that
        would crowd out the cell's own server connections (pgagroal's prefill); `fresh` brings it back. Default:
        nothing. True when it did something."""
        return False


# -- helpers the kinds share ----------------------------------------------------------------


def debian_binary(name: str, package: str) -> Path:
    """A binary from a Debian package (on PATH or in /usr/sbin), or one line saying how to install it."""
    found = system_binary(name)
    if found is None:
        raise MissingDependency(
            f"{name} not found; install it with `sudo apt-get install {package}` (./pooler-lab does this for you)"
        )
    return found


def binary_version(binary: Path, flag: str = "--version") -> str:
    """The first version number a binary prints about itself ('PgBouncer 1.18.0' -> '1.18.0')."""
    done = subprocess.run([str(binary), flag], capture_output=True, text=True, timeout=10)
    first = (done.stdout or done.stderr).strip().splitlines()
    match = re.search(r"(\d+\.\d+(?:\.\d+)?)", first[0]) if first else None
    return match.group(1) if match else "unknown"


def wait_ready(server: Server, probe: Callable[[], object], what: str, timeout: float = READY_TIMEOUT) -> object:
    """Until a real request succeeds: an open port is not a ready server."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if not server.alive():
            raise StartupError(
                f"{what} exited during start-up (code {server.popen.returncode}); its log ends:\n{server.log_tail()}"
            )
        try:
            return probe()
        # HTTPException: something else answered on the port (another process won it);
        # keep polling, so that our server's own exit and log become the error.
        except (psycopg.Error, OSError, urllib.error.URLError, http.client.HTTPException) as exc:
            last = exc
            time.sleep(0.05)
    raise StartupError(
        f"{what} not ready after {timeout:.0f}s (last error: {last}); its log ends:\n{server.log_tail()}"
    )


def pg_probe(port: int, user: str, password: str, dbname: str = "postgres") -> Callable[[], psycopg.Connection]:
    def probe() -> psycopg.Connection:
        conn = psycopg.connect(
            host=HOST,
            port=port,
            user=user,
            password=password,
            dbname=dbname,
            connect_timeout=2,
            autocommit=True,
            prepare_threshold=None,
        )
        conn.execute("SELECT 1")
        return conn

    return probe


def http_probe(url: str, headers: dict[str, str] | None = None) -> Callable[[], int]:
    def probe() -> int:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=2) as resp:
            return int(resp.status)

    return probe
