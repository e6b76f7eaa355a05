"""The cells of a run, built once from the options and carried as objects to the tests and the rows.

A cell is one experiment's (subject, topology, scenario): who acts (a client
configuration, a REST client, a probe), where (a topology name), and what (the
scenario the row records), plus the experiment's own object for it (a `Scenario`,
a state kind, an RTT and TLS setting). Its id is the pytest id and the row's cell id,
so a test never writes it. `--clients`, `--topologies` and `--scenarios` narrow every
experiment the same way; names are checked against every cell the lab has.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from lab.clients.configuration import IN_PROCESS, Configuration
from lab.clients.registry import configurations
from lab.clients.rest import REST_CLIENTS
from lab.errors import LabError, UnknownName
from lab.options import LabOptions
from lab.proxies.tenant import OTHER_REGION, ROUTES, USER_KINDS
from lab.topology.compose import load
from lab.workloads import apps, burst, loop_lag, session_state
from lab.workloads.scenarios import SCENARIOS

if TYPE_CHECKING:
    from lab.topology.backends.target import TargetFile


C = TypeVar("C")


@dataclass(frozen=True)
class NetworkCase:
    rtt_ms: float
    tls: bool


@dataclass(frozen=True)
class BurstCase:
    connector: str  # who makes the burst's connections (lab.workloads.burst)
    fallback: bool | None = None  # the RCA's hybrid: with the REST fallback or without; None: a plain burst


@dataclass(frozen=True)
class Cell(Generic[C]):
    """One experiment's (subject, topology, scenario), with the experiment's own object for it (`case`: a Scenario,
    a state kind, a NetworkCase, ...; typed by the experiment that reads it)."""

    experiment: str
    client: Any = field(
        compare=False
    )  # a Configuration (drivers, probes) or a REST client class: name, description, versions()
    topology: str
    scenario: str  # what the row records as the scenario
    variant: str = ""  # the id's last part, where it is not the scenario
    case: C = field(default=None, compare=False)  # type: ignore[assignment]
    judged: bool = True  # held to the expectation table (benchmarks are not)
    #: other topologies the cell uses beside its own (the RCA's hybrid: the REST tier as its fallback), which a
    #: narrowed run starts too
    also: tuple[str, ...] = field(default=(), compare=False)

    @property
    def id(self) -> str:
        return f"{self.client.name}-{self.topology}-{self.variant or self.scenario}"

    def __str__(self) -> str:
        return self.id


@dataclass(frozen=True)
class ComposeCells:
    """The PostgreSQL topologies of compose/ (they exist before anything is started), and two labels that narrow which
    client configurations run through some of them, each a space-separated list of globs:
    - `lab.clients`: only these, ever (the pooler that ignores the RCA's startup parameters is there for the RCA's
      attempts, not for every cell);
    - `lab.sample`: only these in a run that does not name the topology (--topologies) or the clients (--clients):
      a pooler whose every cell costs a restart (pgagroal 1.6) is sampled by the default run and measured whole when
      asked for."""

    topologies: list[str]
    limits: dict[str, str]
    samples: dict[str, str]

    @classmethod
    def load(cls, profiles: tuple[str, ...] = ()) -> ComposeCells:
        from lab.topology.services import kind_of

        services = load(profiles=profiles).services.values()

        def label(name: str) -> dict[str, str]:
            return {t: s.labels[name] for s in services if s.labels.get(name) for t in kind_of(s).topologies(s)}

        return cls(
            [t for s in services if s.role in ("server", "pooler") for t in kind_of(s).topologies(s)],
            label("lab.clients"),
            label("lab.sample"),
        )

    def sampled(self, options: LabOptions) -> dict[str, str]:
        """The topologies this run samples, with their globs: those it names neither by topology nor by client, or
        what the run a part belongs to samples (options.sampled)."""
        if options.sampled is not None:
            return {t: g for t, g in self.samples.items() if t in options.sampled}
        if options.clients is not None:
            return {}
        return {t: g for t, g in self.samples.items() if t not in (options.topologies or ())}


def matches(name: str, globs: str) -> bool:
    """Does a client configuration's name match one of a label's space-separated globs?"""
    return any(fnmatchcase(name, g) for g in globs.split())


# -- each experiment's cells, before narrowing -----------------------------------------


def drivers(in_process: bool = False) -> list[Configuration]:
    """The driver configurations: every experiment that compares drivers runs each; those that time or fork the
    lab's own process (latency, network, cost, the application processes) only the in-process ones."""
    return [c for c in configurations().values() if c.group == "driver" and (c.runtime == IN_PROCESS or not in_process)]


def workload_runners(in_process: bool = False) -> list[Configuration]:
    """Every configuration that runs the matrix's workloads (not only the RCA's one)."""
    return [
        c
        for c in configurations().values()
        if c.group in ("driver", "variant") and c.workloads is None and (c.runtime == IN_PROCESS or not in_process)
    ]


def configuration(name: str) -> Configuration:
    return configurations()[name]


def _matrix(topologies: list[str], opts: LabOptions) -> list[Cell]:
    return [
        Cell("matrix", client, t, scenario.name, case=scenario)
        for scenario in SCENARIOS.values()
        for t in topologies
        for client in configurations().values()
        if client.group != "probe"
        and (client.workloads is None or scenario.name in client.workloads)
        and scenario.runs_for(client)
    ]


def _apps(topologies: list[str], opts: LabOptions) -> list[Cell]:
    """Every client configuration that runs the workloads, as two application processes: at once, and one after the other."""
    return [
        Cell("apps", client, t, name, case=mode)
        for name, mode in apps.MODES.items()
        for t in topologies
        for client in workload_runners(in_process=True)
    ]


PGBENCH = Configuration(
    "pgbench-S", "pgbench -S (built-in select-only script), simple protocol: the ceiling", group="probe"
)


def _cost(topologies: list[str], opts: LabOptions) -> list[Cell]:
    """--cost: every configuration that runs the workloads, at each concurrency, and pgbench -S, per local topology
    (never on a target: it is a load test). Configurations expected to fail through a topology are skipped there."""
    if not opts.cost or opts.target is not None:
        return []
    from lab.workloads.throughput import CONCURRENCY

    subjects = [PGBENCH, *workload_runners(in_process=True)]
    return [
        Cell("cost", c, t, "select-by-key", f"c{n}", n, judged=False)
        for t in topologies
        for c in subjects
        for n in CONCURRENCY
    ]


def _latency(topologies: list[str], opts: LabOptions) -> list[Cell]:
    """Every configuration that runs the workloads (the latency cells give each fix, and what it fixes, a price), in the lab's
    own process."""
    insert = SCENARIOS["insert-returning"]
    subjects = workload_runners(in_process=True)
    return [
        Cell("latency", c, t, "single-insert", insert.name, insert, judged=False) for t in topologies for c in subjects
    ]


#: where a fix and what it fixes both work, so both can be timed: the server, and a session pooler
PRICE_TOPOLOGIES = ("direct", "pgbouncer-session")


def _price(topologies: list[str], opts: LabOptions) -> list[Cell]:
    """Each fix against each configuration it fixes, timed alternately in the lab's own process (lab.workloads.price):
    the scenario names what it is priced against. Not on a target (its topologies are not the lab's)."""
    if opts.target is not None:
        return []
    runners = {c.name for c in workload_runners(in_process=True)}
    return [
        Cell("price", c, t, f"price-vs-{fixed}", case=fixed, judged=False)
        for t in PRICE_TOPOLOGIES
        if t in topologies
        for c in workload_runners(in_process=True)
        for fixed in c.fixes
        if fixed in runners
    ]


def _tenant(topologies: list[str], opts: LabOptions) -> list[Cell]:
    if opts.target is not None:
        # a target's Supavisor routes by the user name itself: every driver, the right ref, a wrong one, none
        from lab.topology.backends.target import TargetFile

        routers = [n for n, e in TargetFile.load(opts.target).endpoints.items() if e.pooler == "supavisor"]
        return [Cell("tenant", c, t, kind, case=kind) for t in routers for kind in USER_KINDS for c in drivers()] + [
            Cell("tenant", configuration(a), t, "tenant-right-user", case="tenant-right-user")
            for t in routers
            for a in RCA_ATTEMPTS
        ]
    transaction, session = ROUTES
    cells = [Cell("tenant", c, transaction, kind, case=kind) for kind in USER_KINDS for c in drivers()]
    # the RCA's attempts through a Supavisor-like router: their startup parameters are accepted and dropped there
    attempts = [
        Cell("tenant", configuration(a), t, "tenant-right-user", case="tenant-right-user")
        for t in ROUTES
        for a in RCA_ATTEMPTS
    ]
    return (
        cells
        + attempts
        + [
            Cell("tenant", configuration(c), session, "tenant-wrong-ref", case="tenant-wrong-ref")
            for c in ("asyncpg-default", "psycopg-async-default")
        ]
    )


#: one client configuration per way of connecting: the configurations left out (asyncpg-no-cache,
#: psycopg-async-no-prepare) connect exactly as the one of their family here does
AUTH_CLIENTS = (
    "asyncpg-default",
    "psycopg-async-default",
    "psycopg-sync",
    "psycopg2-executor",
    "sqlalchemy-asyncpg-default",
    "sqlalchemy-asyncpg-pgbouncer",
    "sqlalchemy-psycopg",
)
AUTH_KINDS = ("auth-wrong-password", "auth-unknown-user", "auth-wrong-region")
#: logins that fail at the server or pooler itself, not at a router: checked on the lab's own topologies only
DIRECT_AUTH_KINDS = ("auth-unknown-database", "auth-wrong-password-prefer")


def _auth(topologies: list[str], opts: LabOptions) -> list[Cell]:
    """Logins that must fail: a wrong password and an unknown user direct, through each PgBouncer and through the
    tenant router; an unknown database, and a wrong password with sslmode=prefer (libpq tries again without TLS),
    direct and through each PgBouncer; the right user at a router of another region, which does not host the lab's
    tenant."""
    if opts.target is not None:
        return []  # never on somebody's database: failed logins count towards a pooler's ban (Supavisor bans addresses)
    routers = [t for t in ROUTES if ROUTES[t] == "pgbouncer-transaction"]
    places = [*topologies, *routers]
    cells = [
        Cell("auth", configuration(c), t, kind, case=kind)
        for kind in AUTH_KINDS[:2]
        for t in places
        for c in AUTH_CLIENTS
    ]
    cells += [
        Cell("auth", configuration(c), t, kind, case=kind)
        for kind in DIRECT_AUTH_KINDS
        for t in topologies
        for c in AUTH_CLIENTS
    ]
    return cells + [
        Cell("auth", configuration(c), t, AUTH_KINDS[2], case=AUTH_KINDS[2]) for t in OTHER_REGION for c in AUTH_CLIENTS
    ]


def _wire(topologies: list[str], opts: LabOptions) -> list[Cell]:
    return [Cell("wire", c, t, "wire-count") for t in topologies for c in drivers()]


def _session_state(topologies: list[str], opts: LabOptions) -> list[Cell]:
    """What a client loses (state-*), what another client receives (leak-*), what another client takes away
    (discard-*, reset-*)."""
    probe = session_state.PROBE
    kept = [Cell("session-state", probe, t, f"state-{k}", k, case=k) for t in topologies for k in session_state.KINDS]
    leaks = [
        Cell("session-state", probe, t, f"leak-{k}", f"leak-{k}", case=f"leak-{k}")
        for t in topologies
        for k in session_state.LEAK_KINDS
    ]
    taken = [Cell("session-state", probe, t, k, k, case=k) for t in topologies for k in session_state.DISCARD_KINDS]
    return kept + leaks + taken


def _limits(topologies: list[str], opts: LabOptions) -> list[Cell]:
    bursts = [
        Cell("limits", burst.SUBJECTS[c], t, f"burst-{burst.BURST}", "burst", case=BurstCase(c))
        for t in topologies
        for c in burst.CONNECTORS
    ]
    hybrids = [
        Cell(
            "limits",
            burst.SUBJECTS[c],
            "direct",
            f"hybrid-burst-{burst.BURST}",
            "burst",
            case=BurstCase(c, fallback=c == "rca-hybrid"),
            also=("rest",),
        )
        for c in ("rca-hybrid", "pool-only")
    ]
    return bursts + hybrids


def _loop_lag(topologies: list[str], opts: LabOptions) -> list[Cell]:
    return [
        Cell("loop-lag", m, t, "loop-lag")
        for t in loop_lag.TOPOLOGIES
        if t in topologies
        for m in loop_lag.MODES.values()
    ]


def _rest(topologies: list[str], opts: LabOptions) -> list[Cell]:
    return [
        Cell("rest", c, "rest", "rca-attempt-3", f"{'https' if tls else 'http'}-rca-attempt-3", tls)
        for c in REST_CLIENTS.values()
        for tls in (False, True)
    ]


RCA_ATTEMPTS = ("rca-attempt-1", "rca-attempt-2")


#: The PostgreSQL paths the network benchmarks measure by default: the RCA's driver straight to
#: the server (the reference of the REST overhead), and asyncpg's working configuration through the
#: transaction pooler. --network all measures every driver configuration on every topology.
REFERENCE_PG_PATHS = (("asyncpg-default", "direct"), ("asyncpg-no-cache", "pgbouncer-transaction"))


def _network(topologies: list[str], opts: LabOptions) -> list[Cell]:
    if opts.network == "none":
        return []
    paths: list[tuple[Any, str]] = [(c, "rest") for c in REST_CLIENTS.values()]
    if opts.network == "all":
        paths += [(c, t) for t in topologies for c in drivers(in_process=True)]
    else:
        paths += [(configuration(c), t) for c, t in REFERENCE_PG_PATHS if t in topologies]
    return [
        Cell(
            "network",
            c,
            t,
            "single-insert",
            f"rtt{rtt:g}ms-{'tls' if tls else 'plain'}",
            NetworkCase(rtt, tls),
            judged=False,
        )
        for c, t in paths
        for rtt in opts.rtts
        for tls in (False, True)
    ]


EXPERIMENTS: dict[str, Callable[[list[str], LabOptions], list[Cell]]] = {
    "matrix": _matrix,
    "apps": _apps,
    "latency": _latency,
    "price": _price,
    "tenant": _tenant,
    "auth": _auth,
    "wire": _wire,
    "session-state": _session_state,
    "limits": _limits,
    "loop-lag": _loop_lag,
    "rest": _rest,
    "network": _network,
    "cost": _cost,
}


#: Scenarios that write nothing that outlives them (--read-only keeps only these).
READ_ONLY_SCENARIOS = (
    "repeated-query",
    "crossover",
    "many-statements",
    "server-side-cursor",
    *apps.MODES,
    "wire-count",
    "loop-lag",
    *(f"state-{k}" for k in session_state.KINDS),
    *(f"leak-{k}" for k in session_state.LEAK_KINDS),
    *session_state.DISCARD_KINDS,
    *USER_KINDS,
)
#: Connections a cell may hold at once on its endpoint; a target endpoint that allows fewer does not run it.
CONNECTIONS = {"matrix": 5, "apps": apps.APPS * apps.POOL_SIZE, "tenant": 4, "session-state": 5, "limits": burst.BURST}


#: experiments a target does not run, and why (every row of a target run carries these reasons in its selection)
NOT_ON_TARGETS = {
    "apps": "the two-application cells assume fresh server connections at their start, and the lab never ends a "
    "target's server connections (they may be somebody's application's)",
}
#: why the ordered matrix scenarios (Scenario.ordered) are not run on a target
ORDERED_NOT_ON_TARGETS = (
    "the ordered scenarios ({names}) assume fresh server connections and the pool of two the lab configures, whose "
    "reuse order decides the crossing; a target's pool is neither"
)
#: the sslmodes with which a target endpoint is declared to speak TLS: only those get the network's TLS cells
TLS_SSLMODES = ("require", "verify-ca", "verify-full")


def _on_target(cells: dict[str, list[Cell]], target: TargetFile, opts: LabOptions) -> dict[str, list[Cell]]:
    """A target runs what is safe on somebody's database, and only what its preconditions hold for: its REST tier
    only if the file names one (https only), tenant cells only through its own Supavisor endpoints, bursts only if
    the file opts in, never more connections than an endpoint allows, TLS cells only where the file declares TLS,
    nothing that needs the lab to reset a server connection (NOT_ON_TARGETS)."""

    def fits(c: Cell) -> bool:
        if getattr(c.client, "local_only", False):  # needs a role only the lab's own topology has
            return False
        ep = target.endpoints.get(c.topology)
        return ep is not None and CONNECTIONS.get(c.experiment, 1) <= ep.max_connections

    def rest_fits(c: Cell) -> bool:  # a target's REST tier: https only, and only with a table of the run's own to write
        return target.rest is not None and not opts.read_only and bool(c.case if c.experiment == "rest" else c.case.tls)

    def real_network(c: Cell) -> bool:
        """On a target the network is real: no delay proxy goes in between (a proxy's address would also fail
        the certificate's host-name check); the round-trip model takes the measured round trip instead. A TLS cell
        runs only against an endpoint whose file says it speaks TLS (sslmode require or verify-*)."""
        if c.experiment != "network":
            return True
        ep = target.endpoints.get(c.topology)
        declared_tls = c.topology == "rest" or (ep is not None and ep.sslmode in TLS_SSLMODES)
        return c.case.rtt_ms == 0 and (declared_tls or not c.case.tls)

    skipped = {*NOT_ON_TARGETS, *(() if target.allow_bursts else ("limits",))}
    return {
        name: []
        if name in skipped
        else [
            c
            for c in cs
            if real_network(c)
            and (rest_fits(c) if c.topology == "rest" else fits(c))
            and not getattr(c.case, "ordered", False)
        ]
        for name, cs in cells.items()
    }


@dataclass(frozen=True)
class Plan:
    """Every cell of a run, by experiment, narrowed by the options; built once per session."""

    options: LabOptions
    cells: dict[str, list[Cell]]
    known: dict[str, tuple[str, ...]]  # "client" / "topology" / "scenario" -> every name the lab has
    target: TargetFile | None = None
    sampled: dict[str, str] = field(default_factory=dict)  # topology -> the globs of the clients this run sends it

    @classmethod
    def build(cls, options: LabOptions) -> Plan:
        described = ComposeCells.load(options.profiles)
        local, limits, sampled = described.topologies, described.limits, described.sampled(options)
        target = None
        topologies = local
        if options.target is not None:
            from lab.topology.backends.target import TargetFile

            target = TargetFile.load(options.target)
            topologies = list(target.endpoints)
            limits, sampled = {}, {}  # a target's endpoints carry no lab.clients or lab.sample label
        for name in options.experiments or ():
            if name not in EXPERIMENTS:
                raise UnknownName("experiment", name, EXPERIMENTS)
        every = {name: make(topologies, options) for name, make in EXPERIMENTS.items()}
        every = {
            name: [c for c in cs if c.topology not in limits or matches(c.client.name, limits[c.topology])]
            for name, cs in every.items()
        }
        # the lab's vocabulary: every name of the local topology's cells and of this run's, whatever narrows the run
        flat = [c for cells in every.values() for c in cells]
        if options.experiments is not None:
            every = {name: cs if name in options.experiments else [] for name, cs in every.items()}
        if target is not None:
            flat += [c for make in EXPERIMENTS.values() for c in make(local, replace(options, target=None))]
            every = _on_target(every, target, options)
        if options.read_only:
            every = {name: [c for c in cs if c.scenario in READ_ONLY_SCENARIOS] for name, cs in every.items()}
        known = {
            "client": tuple(dict.fromkeys(c.client.name for c in flat)),
            "topology": tuple(dict.fromkeys([*local, *topologies, *(c.topology for c in flat)])),
            "scenario": tuple(dict.fromkeys(c.scenario for c in flat)),
        }
        wanted = {"client": options.clients, "topology": options.topologies, "scenario": options.scenarios}
        for kind, names in wanted.items():
            for name in names or ():
                if name not in known[kind]:
                    raise UnknownName(kind, name, known[kind])

        def keep(c: Cell[Any]) -> bool:
            chosen = (
                (options.clients, c.client.name),
                (options.topologies, c.topology),
                (options.scenarios, c.scenario),
            )
            if options.shard is not None:  # each cell in exactly one shard, by its id: the same on every machine
                i, n = options.shard
                if zlib.crc32(f"{c.experiment}/{c.id}".encode()) % n != i - 1:
                    return False
            if c.topology in sampled and not matches(c.client.name, sampled[c.topology]):
                return False
            return all(w is None or n in w for w, n in chosen)

        cells = {name: [c for c in cells if keep(c)] for name, cells in every.items()}
        used = {c.topology for cs in cells.values() for c in cs}
        plan = cls(options, cells, known, target, {t: g for t, g in sampled.items() if t in used})
        if plan.count() == 0:
            raise LabError(
                "the options select no cell: "
                + ", ".join(f"{k} {','.join(v)}" for k, v in wanted.items() if v)
                + (" on this target" if target else "")
                + (" with --read-only" if options.read_only else "")
            )
        return plan

    def of(self, experiment: str) -> list[Cell]:
        return self.cells[experiment]

    def not_run(self) -> list[str]:
        """What this run leaves out on purpose, and why: the clients a sampled topology does not get; on a target,
        what its preconditions do not hold for."""
        sampled = [
            f"{t}: only the clients {' '.join(g.split())} (its lab.sample: --topologies {t} runs every one)"
            for t, g in self.sampled.items()
        ]
        if self.target is None:
            return sampled
        reasons = [f"{name}: {why}" for name, why in NOT_ON_TARGETS.items()]
        ordered = ", ".join(s.name for s in SCENARIOS.values() if s.ordered)
        reasons.append("matrix: " + ORDERED_NOT_ON_TARGETS.format(names=ordered))
        reasons.append(
            "network TLS cells: only on endpoints the target file declares with sslmode " + "/".join(TLS_SSLMODES)
        )
        if not self.target.allow_bursts:
            reasons.append("limits: the target file does not set allow_bursts = true")
        return reasons

    def needed_topologies(self) -> tuple[str, ...]:
        """What a narrowed run starts: the topologies chosen, and those the planned cells use beside their own."""
        cells = list(self.all())
        return tuple(
            dict.fromkeys([*(self.options.topologies or ()), *(t for c in cells for t in (c.topology, *c.also))])
        )

    def all(self) -> Iterable[Cell]:
        return (c for cells in self.cells.values() for c in cells)

    def count(self) -> int:
        return sum(len(cells) for cells in self.cells.values())

    def describe(self) -> str:
        parts = [f"{name} {len(cells)}" for name, cells in self.cells.items() if cells]
        return f"{self.count()} cells ({', '.join(parts) or 'none'})"
