"""What experiments see of a running topology: named endpoints and the facts about them.

Backends (native processes, Docker, a target) produce a `Topology`; clients only ever get an
`Endpoint`'s DSN; result rows copy an endpoint's `EndpointFacts` (which pooler, which mode,
which versions, which backend, which stand-in or model), so a row always says what produced it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any
from urllib.parse import quote

from lab.names import pick


@dataclass(frozen=True)
class EndpointFacts:
    """What every row through an endpoint says about it: one typed record, written once by the service kind that
    started the endpoint (or the target file that declares it), added to by what the lab puts in between (a delay
    proxy, the wire tracer, a tenant router), and serialized into the row's `topology` object by `to_row`.
    Nothing here is secret."""

    backend: str = ""  # native | docker | target
    service: str | None = None  # the compose service (or the target file's endpoint name)
    kind: str | None = None  # the service kind that started it (lab.topology.services)
    server_version: str | None = None
    #: the pooler's family (pgbouncer, pgpool, pgagroal, supavisor, ...): None for the server itself
    pooler: str | None = None
    pooler_version: str | None = None
    pool_mode: str | None = None  # session | transaction (a pooler's); None for the server itself
    pool_size: int | None = None
    pooler_settings: str | None = None  # settings the service adds to its kind's template (lab.settings)
    #: tracked | not tracked: whether the pooler keeps protocol-level prepared statements per client (the kind says)
    prepared_statements: str | None = None
    pooler_binary: str | None = None
    #: a model or stand-in of a system that cannot run here, named as such ("model of Supavisor 2.10 ...")
    model: str | None = None
    # -- Docker --
    images: str | None = None  # official | local
    image: str | None = None
    server_image: str | None = None
    rest_image: str | None = None
    # -- the REST tier --
    gateway: str | None = None
    rest_server: str | None = None
    stand_in: bool | None = None
    stand_in_for: str | None = None
    path: str | None = None
    tls_version: str | None = None
    https_only: bool | None = None
    # -- a tenant router in front of a pooler --
    router: str | None = None
    tenant: str | None = None
    tenant_router: str | None = None
    routes_to: str | None = None
    refusal_delay_s: float | None = None
    startup_parameters: str | None = None
    # -- what the lab put in between, and the network --
    wire_tracer: bool | None = None
    delay_proxy: bool | None = None
    rtt_ms: float | None = None
    tls: bool | None = None
    sslmode: str | None = None
    # -- a target the lab did not start --
    target: str | None = None
    host: str | None = None
    declared: bool | None = None
    max_connections_allowed: int | None = None
    measured_rtt_ms: float | None = None
    # -- what an experiment observed beside the endpoint --
    max_connections: int | None = None
    rest: str | None = None
    pgbench: str | None = None

    def with_(self, **changes: Any) -> EndpointFacts:
        return replace(self, **changes)

    def to_row(self) -> dict[str, Any]:
        """The row's `topology` object: every fact that is set; `pooler` and `pool_mode` always (None: the server)."""
        out = {k: v for k, v in asdict(self).items() if v is not None}
        return {"pooler": self.pooler, "pool_mode": self.pool_mode, **out}

    @classmethod
    def from_row(cls, data: dict[str, Any]) -> EndpointFacts:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


class Secret(str):
    """A password or key: usable wherever a string is, but its repr never shows it (pytest's locals,
    a dataclass's repr, a log line of an object all go through repr)."""

    def __repr__(self) -> str:
        return "Secret('********')"


REDACTED = "********"


@dataclass(frozen=True)
class Endpoint:
    topology: str  # the name experiments use: direct, pgbouncer-transaction, ...
    host: str
    port: int
    database: str
    user: str
    password: str  # a Secret once made (its repr hides it)
    facts: EndpointFacts = field(default_factory=EndpointFacts)  # copied into every row: nothing secret here
    tls_port: int | None = None  # HTTP endpoints: where https is served
    keys: dict[str, str] = field(default_factory=dict)  # REST endpoints: Supabase-style API keys by role
    ca_file: str | None = None  # the CA to verify the server's certificate against (the run's own, or a target's)
    sslmode: str = "disable"  # libpq's sslmode for this endpoint's DSNs: disable | require | verify-full
    #: a tenant router's project (Supavisor's `<role>.<project-ref>`): a role without one logs in as role.tenant;
    #: `user` stays the role the server knows
    tenant: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "password", Secret(self.password))
        object.__setattr__(self, "keys", {k: Secret(v) for k, v in self.keys.items()})

    def dsn(
        self, user: str | None = None, password: str | None = None, tls: bool | None = None, redact: bool = False
    ) -> str:
        """A libpq URL, the form the RCA's DATABASE_URL has, with the endpoint's sslmode; tls=True asks for
        at least sslmode=require, tls=False for disable. redact=True: the password masked, for printing."""
        login = user or self.user
        if self.tenant and "." not in login:
            login = f"{login}.{self.tenant}"
        u = quote(login, safe="")
        p = REDACTED if redact else quote(password if password is not None else self.password, safe="")
        url = f"postgresql://{u}:{p}@{self.host}:{self.port}/{quote(self.database, safe='')}"
        mode = (
            self.sslmode
            if tls is None
            else ("disable" if not tls else self.sslmode if self.sslmode != "disable" else "require")
        )
        url += f"?sslmode={mode}"
        if mode == "verify-full" and self.ca_file:
            url += f"&sslrootcert={quote(self.ca_file, safe='/')}"
        return url

    def url(self, tls: bool = False) -> str:
        """The base URL of an HTTP endpoint, as SUPABASE_URL (the REST path is added by clients)."""
        if tls:
            assert self.tls_port is not None, f"{self.topology} has no TLS port"
            return f"https://{self.host}:{self.tls_port}"
        return f"http://{self.host}:{self.port}"

    def via(
        self, port: int, tls_port: int | None = None, topology: str | None = None, plain: bool = False, **facts: Any
    ) -> Endpoint:
        """The same endpoint reached through something of the lab's listening on other ports of this host
        (a delay proxy, the wire tracer, a tenant router); `facts` say what is in between. plain=True: what is
        in between must read the protocol (the tracer, the router), so that hop speaks no TLS. The one way an
        endpoint is rewritten."""
        if plain and self.sslmode != "disable":
            facts = {**facts, "sslmode": "disable"}
        return replace(
            self,
            port=port,
            tls_port=tls_port if tls_port is not None else self.tls_port,
            topology=topology or self.topology,
            sslmode="disable" if plain else self.sslmode,
            facts=replace(self.facts, **facts),
        )


@dataclass(frozen=True)
class Topology:
    run_id: str
    backend: str
    endpoints: dict[str, Endpoint]
    superuser: str
    superuser_password: str  # a Secret once made

    def __post_init__(self) -> None:
        object.__setattr__(self, "superuser_password", Secret(self.superuser_password))

    def endpoint(self, name: str) -> Endpoint:
        return pick("topology", name, self.endpoints)

    def admin_dsn(self) -> str:
        """The server itself, as its superuser: for the lab's own housekeeping, never for a cell. A target
        has no superuser of the lab's: its own user, which may end its own backends, stands in."""
        if not self.superuser:
            return self.endpoint("direct").dsn()
        return self.endpoint("direct").dsn(user=self.superuser, password=self.superuser_password)

    def with_sslmode(self, sslmode: str) -> Topology:
        """Every PostgreSQL endpoint with this sslmode (the local topology's TLS axis)."""
        eps = {
            k: (replace(e, sslmode=sslmode, facts=replace(e.facts, sslmode=sslmode)) if not e.keys else e)
            for k, e in self.endpoints.items()
        }
        return replace(self, endpoints=eps)

    def to_dict(self, redact: bool = False) -> dict[str, Any]:
        """As state.json keeps it (a file only the run's owner can read); redact=True masks every secret, for printing."""
        data = asdict(self)
        if redact:
            data["superuser_password"] = REDACTED
            for ep in data["endpoints"].values():
                ep["password"] = REDACTED if ep["password"] else ""
                ep["keys"] = {k: REDACTED for k in ep["keys"]}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Topology:
        """From a run's state.json, which may carry more than the topology (a Docker run's compose project)."""
        eps = {
            k: Endpoint(**{**v, "facts": EndpointFacts.from_row(v.get("facts") or {})})
            for k, v in data["endpoints"].items()
        }
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known and k != "endpoints"}, endpoints=eps)
