"""What experiments see of a running topology: named endpoints and the facts about them.

Backends (native processes, Docker) produce a `Topology`; clients only ever get an
`Endpoint`'s DSN; result rows copy an endpoint's facts (which pooler, which mode,
which versions, which backend, which stand-in), so a row always says what produced it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import quote

from lab.names import pick


@dataclass(frozen=True)
class Endpoint:
    topology: str  # the name experiments use: direct, pgbouncer-transaction, ...
    host: str
    port: int
    database: str
    user: str
    password: str
    facts: dict[str, Any] = field(default_factory=dict)

    def dsn(self, user: str | None = None, password: str | None = None) -> str:
        """A libpq URL, the form the RCA's DATABASE_URL has."""
        u = quote(user or self.user, safe="")
        p = quote(password if password is not None else self.password, safe="")
        return f"postgresql://{u}:{p}@{self.host}:{self.port}/{quote(self.database, safe='')}"


@dataclass(frozen=True)
class Topology:
    run_id: str
    backend: str
    endpoints: dict[str, Endpoint]
    superuser: str
    superuser_password: str

    def endpoint(self, name: str) -> Endpoint:
        return pick("topology", name, self.endpoints)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Topology":
        eps = {k: Endpoint(**v) for k, v in data["endpoints"].items()}
        return cls(**{**data, "endpoints": eps})
