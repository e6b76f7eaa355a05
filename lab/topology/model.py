"""What experiments see of a running topology: named endpoints and the facts about them.

Backends (native processes, Docker) produce a `Topology`; clients only ever get an
`Endpoint`'s DSN; result rows copy an endpoint's facts (which pooler, which mode,
which versions, which backend, which stand-in), so a row always says what produced it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any
from urllib.parse import quote

from lab.names import pick


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
    password: Secret
    facts: dict[str, Any] = field(default_factory=dict)  # copied into every row: nothing secret here
    tls_port: int | None = None  # HTTP endpoints: where https is served
    keys: dict[str, str] = field(default_factory=dict)  # REST endpoints: Supabase-style API keys by role
    ca_file: str | None = None  # the run's CA, to verify TLS against

    def __post_init__(self) -> None:
        object.__setattr__(self, "password", Secret(self.password))
        object.__setattr__(self, "keys", {k: Secret(v) for k, v in self.keys.items()})

    def dsn(self, user: str | None = None, password: str | None = None, tls: bool = False, redact: bool = False) -> str:
        """A libpq URL, the form the RCA's DATABASE_URL has; tls=True asks for sslmode=require.
        redact=True: the same URL with the password masked, for printing."""
        u = quote(user or self.user, safe="")
        p = REDACTED if redact else quote(password if password is not None else self.password, safe="")
        url = f"postgresql://{u}:{p}@{self.host}:{self.port}/{quote(self.database, safe='')}"
        return url + ("?sslmode=require" if tls else "?sslmode=disable")

    def url(self, tls: bool = False) -> str:
        """The base URL of an HTTP endpoint, as SUPABASE_URL (the REST path is added by clients)."""
        if tls:
            assert self.tls_port is not None, f"{self.topology} has no TLS port"
            return f"https://{self.host}:{self.tls_port}"
        return f"http://{self.host}:{self.port}"

    def via(self, port: int, tls_port: int | None = None, topology: str | None = None, **facts: Any) -> "Endpoint":
        """The same endpoint reached through something of the lab's listening on other ports of this host
        (a delay proxy, the wire tracer, a tenant router); `facts` say what is in between. The one way an
        endpoint is rewritten."""
        return replace(self, port=port, tls_port=tls_port if tls_port is not None else self.tls_port,
                       topology=topology or self.topology, facts={**self.facts, **facts})


@dataclass(frozen=True)
class Topology:
    run_id: str
    backend: str
    endpoints: dict[str, Endpoint]
    superuser: str
    superuser_password: Secret

    def __post_init__(self) -> None:
        object.__setattr__(self, "superuser_password", Secret(self.superuser_password))

    def endpoint(self, name: str) -> Endpoint:
        return pick("topology", name, self.endpoints)

    def admin_dsn(self) -> str:
        """The server itself, as its superuser: for the lab's own housekeeping, never for a cell."""
        return self.endpoint("direct").dsn(user=self.superuser, password=self.superuser_password)

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
    def from_dict(cls, data: dict[str, Any]) -> "Topology":
        """From a run's state.json, which may carry more than the topology (a Docker run's compose project)."""
        eps = {k: Endpoint(**v) for k, v in data["endpoints"].items()}
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known and k != "endpoints"}, endpoints=eps)
