"""What each experiment measures beside the outcome, as typed records: one class per experiment.

A row carries its experiment's measures; the report reads them as attributes, so a
misspelt or missing measure is an error where it is written, not a silent None where
it is read. In the row file they are a JSON object under "measures".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar


@dataclass(frozen=True)
class Measures:
    experiment: ClassVar[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Measures:
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"{cls.experiment} measures have no field(s) {', '.join(sorted(unknown))}")
        return cls(**data)


@dataclass(frozen=True)
class MatrixMeasures(Measures):
    experiment = "matrix"
    repeats: int
    iterations_run: int
    cell_timeout_s: float
    workers: int
    ops_per_worker: int
    client_pool_size: int
    elapsed_s: float
    #: what the server and the pooler logged during the cell (lab.observe.server_view): distinct WARNING/ERROR/FATAL
    #: lines with counts, and how many errors among them the client did not raise; None where no log can be read
    server_log: list[dict[str, Any]] | None = None
    unraised_errors: int | None = None
    #: prepared statements on the transaction pooler's server connections before the cell and after each iteration
    #: (None elsewhere: a direct backend ends with its client, the session pooler runs DISCARD ALL)
    prepared_before: int | None = None
    prepared_after: list[int | None] | None = None
    connections: str = "pool"  # "pool": the workers share one; "per-worker": a client connection each
    #: a free-running cell (it runs every repeat): how often each outcome occurred, by Outcome.label()
    outcome_counts: dict[str, int] | None = None


@dataclass(frozen=True)
class TenantMeasures(Measures):
    experiment = "tenant"
    user: str
    workload: str
    cell_timeout_s: float
    #: the RCA's attempts: the server's jit setting as their pool sees it (they ask for off); None where not asked
    server_jit: str | None = None
    #: the startup parameters the router did not forward, per routed client connection of the cell
    dropped_startup_parameters: list[str] | None = None


@dataclass(frozen=True)
class AuthMeasures(Measures):
    experiment = "auth"
    user: str  # the user name sent (a role, or role.tenant through a router)
    password: str  # "right" | "wrong": never the password itself
    pool_wait_s: float  # how long the client's pool waited for a connection before giving up
    database: str | None = None  # the database asked for, where it is not the endpoint's (an unknown one)
    sslmode: str | None = None  # where the cell sets its own (prefer)
    elapsed_s: float | None = None  # how long the application waited for its answer
    #: failed logins the server and the pooler logged during the cell (a retry without TLS is one more); None
    #: where no log can be read
    failed_logins: int | None = None


@dataclass(frozen=True)
class WireMeasures(Measures):
    experiment = "wire"
    queries: int
    client_connections: int
    startup_messages: int
    authentication_requests: int
    password_messages: int
    auth_requests_per_query: float
    simple_queries: int
    parse: int
    bind: int
    named_statements: int
    server_logins: int | None  # None where the lab cannot read the server's log
    pooler_logins: int | None  # None direct, or where the pooler's log cannot be read
    per_connection: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class StateMeasures(Measures):
    experiment = "session-state"
    state: str  # "kept" | "lost"; leak-* cells: "leaked" | "not leaked"
    seen: str
    backend_pids: list[int]
    same_backend: bool
    attempts_to_move: int


@dataclass(frozen=True)
class BurstMeasures(Measures):
    experiment = "limits"
    clients: int
    hold_s: float
    hybrid_hold_s: float
    completed: int
    failed: int
    errors: dict[str, int]
    by_path: dict[str, int]
    elapsed_s: float


@dataclass(frozen=True)
class LoopLagMeasures(Measures):
    experiment = "loop-lag"
    max_lag_ms: float
    query_ms: float
    query_sleep_ms: float


@dataclass(frozen=True)
class RestMeasures(Measures):
    experiment = "rest"
    tls: bool
    workers: int
    calls_per_worker: int
    last_status: int | None
    last_body: Any


@dataclass(frozen=True)
class LatencyMeasures(Measures):
    experiment = "latency"
    rounds: int
    warmup_rounds: int
    client_pool_size: int
    rtt_ms: float
    tls: bool
    #: the same INSERT as a user would write it with the driver alone (lab.workloads.plain), on the driver object the
    #: configuration opened, one call beside each measured round (its median here); and the lab's overhead against
    #: it, less 1, in percent: each round's time over its plain call's, the two orders (plain first, plain second)
    #: balanced (lab.workloads.bench.Measurement.overhead). None where the driver has no plain loop.
    bare_median_ms: float | None = None
    harness_overhead_pct: float | None = None
    #: its 95% interval, in percent: the rounds go on past 100 until it is within the latency experiment's precision
    #: of the overhead or its budget is spent (`rounds` counts them all)
    harness_overhead_low_pct: float | None = None
    harness_overhead_high_pct: float | None = None


def price_verdict(ratio: float, low: float, high: float, measurable: bool) -> str:
    """A price ratio (fix / fixed) and its 95% interval as a reader wants it: a change in percent, or no difference
    measurable where the interval holds 1."""
    interval = f"({low:.3f}–{high:.3f})"
    return f"{(ratio - 1) * 100:+.1f}% {interval}" if measurable else f"no difference measurable {interval}"


@dataclass(frozen=True)
class PriceMeasures(Measures):
    """A fix's price against the configuration it fixes (lab.workloads.price): both timed alternately on one
    topology where both work, fix / fixed as a geometric mean with its 95% interval."""

    experiment = "price"
    fixed: str  # the configuration the cell's client fixes
    query: str
    pairs: int
    ratio: float
    low: float
    high: float
    measurable: bool  # False: the interval holds 1
    stopped: str  # "width": the interval became narrower than target_width; "budget": the time allowed ran out
    target_width: float
    budget_s: float
    fix_median_ms: float
    fixed_median_ms: float

    def verdict(self) -> str:
        return price_verdict(self.ratio, self.low, self.high, self.measurable)


@dataclass(frozen=True)
class NetworkMeasures(Measures):
    experiment = "network"
    rtt_ms: float
    tls: bool
    rounds: int
    warmup_rounds: int
    path: str  # "rest" | "pg"


@dataclass(frozen=True)
class AppsMeasures(Measures):
    experiment = "apps"
    processes: int
    mode: str  # crossed: both alive, first queries in overlapping transactions, then one step each in turn; one-after-another
    failed_app: int | None  # 1-based, in start order; None when every process passed
    apps: list[dict[str, Any]]  # per process: app, pid, ops_done, outcome
    workers_per_app: int
    ops_per_worker: int
    client_pool_size: int


@dataclass(frozen=True)
class CostMeasures(Measures):
    experiment = "cost"
    concurrency: int
    connections: int
    duration_s: float
    ops: int
    ops_per_s: float
    ops_per_s_ci: list[float]  # 95% confidence interval
    p50_ms: float
    p50_ci_ms: list[float]
    p99_ms: float
    p99_ci_ms: list[float]
    #: a fix's price under this concurrency against each configuration it fixes that works here (lab.plan's
    #: PRICE_TOPOLOGIES: the server and a session pooler): windows of each timed alternately (throughput.against),
    #: the ratio of times per query (fix / fixed) with its 95% interval; None for a configuration that fixes nothing
    #: or a topology where what it fixes fails
    versus: list[dict[str, Any]] | None = None


BY_EXPERIMENT: dict[str, type[Measures]] = {
    cls.experiment: cls
    for cls in (
        MatrixMeasures,
        TenantMeasures,
        WireMeasures,
        StateMeasures,
        BurstMeasures,
        LoopLagMeasures,
        RestMeasures,
        LatencyMeasures,
        NetworkMeasures,
        AppsMeasures,
        AuthMeasures,
        CostMeasures,
        PriceMeasures,
    )
}


def read(experiment: str, data: dict[str, Any] | None) -> Measures | None:
    if data is None:
        return None
    try:
        cls = BY_EXPERIMENT[experiment]
    except KeyError:
        raise ValueError(f"unknown experiment {experiment!r}") from None
    return cls.from_dict(data)
