"""What every client configuration offers the scenarios: open, fetch, transaction, close.

Statements are written once with named parameters (``:name``) and converted to each
driver's own style, so every configuration runs the same SQL. `fetch` runs one
statement in its own transaction (as an application's single query does); a
`transaction` runs several steps, each built from the rows of the steps before.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any, ClassVar, Protocol

Rows = list[tuple[Any, ...]]
Statement = tuple[str, dict[str, Any]]
Step = Callable[[list[Rows]], Statement]

_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


def to_dollar(sql: str, params: dict[str, Any]) -> tuple[str, list[Any]]:
    """`:name` → `$1` for asyncpg, with the values in order."""
    order: list[str] = []

    def repl(m: re.Match[str]) -> str:
        if m.group(1) not in order:
            order.append(m.group(1))
        return f"${order.index(m.group(1)) + 1}"

    converted = _PARAM.sub(repl, sql)
    return converted, [params[name] for name in order]


def to_pyformat(sql: str) -> str:
    """`:name` → `%(name)s` for psycopg and psycopg2."""
    return _PARAM.sub(lambda m: f"%({m.group(1)})s", sql.replace("%", "%%"))


def package_versions(dists: Sequence[str]) -> dict[str, str]:
    out = {}
    for dist in dists:
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "not installed"
    return out


class Subject(Protocol):
    """Who acts in a cell: what a row names as its client. A client adapter class, a REST
    client class, or a `Configuration` (a probe, a burst, a loop-lag mode) all are one."""

    name: str
    description: str

    def versions(self) -> dict[str, str]: ...


@dataclass(frozen=True)
class Configuration:
    """A named way of using client packages that experiments drive themselves (no Client adapter)."""

    name: str
    description: str
    packages: tuple[str, ...]

    def versions(self) -> dict[str, str]:
        return package_versions(self.packages)


class Client(ABC):
    """One client configuration. A new instance per scenario iteration."""

    name: ClassVar[str]
    packages: ClassVar[tuple[str, ...]]
    description: ClassVar[str]
    #: the matrix workloads this configuration runs; None: every one. The RCA's attempts are
    #: pool constructions, followed by one workload that shows whether the pool works.
    workloads: ClassVar[tuple[str, ...] | None] = None

    def __init__(self, dsn: str, size: int, timeout: float) -> None:
        self.dsn, self.size, self.timeout = dsn, size, timeout

    @classmethod
    def most_connections(cls, size: int, concurrency: int) -> int:
        """The most connections this configuration opens with `concurrency` callers when asked for a pool of `size`:
        its own pool's limit where it keeps its own (SQLAlchemy's pool_size + max_overflow), one per caller with
        NullPool. A session pooler holds one server connection per client connection, so it decides what fits there."""
        return size

    @abstractmethod
    async def open(self) -> None:
        """Create the pool and open `size` connections, so work spreads over several."""

    @abstractmethod
    async def fetch(self, sql: str, params: dict[str, Any]) -> Rows: ...

    @abstractmethod
    async def transaction(self, steps: Sequence[Step]) -> list[Rows]: ...

    @abstractmethod
    async def close(self) -> None: ...

    @classmethod
    def versions(cls) -> dict[str, str]:
        return package_versions(cls.packages)
