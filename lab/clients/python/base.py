"""What every in-process Python client configuration offers the runner: open, fetch, transaction, close.

Statements are written once with named parameters (``:name``) and converted to each
driver's own style, so every configuration runs the same SQL. `fetch` runs one
statement in its own transaction (as an application's single query does); a
`transaction` runs several steps, each built from the rows of the steps before.
"""

from __future__ import annotations

import functools
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any, ClassVar

from lab.clients.configuration import Configuration, package_versions

Rows = list[tuple[Any, ...]]
Statement = tuple[str, dict[str, Any]]
Step = Callable[[list[Rows]], Statement]
#: awaited after a transaction's statements, before its COMMIT: the transaction holds its server connection meanwhile
BeforeCommit = Callable[[], Coroutine[Any, Any, None]]

_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


def to_dollar(sql: str, params: dict[str, Any]) -> tuple[str, list[Any]]:
    """`:name` → `$1` for asyncpg, with the values in order."""
    converted, order = _dollar(sql)
    return converted, [params[name] for name in order]


@functools.lru_cache(maxsize=1024)
def _dollar(sql: str) -> tuple[str, tuple[str, ...]]:
    """A statement's text in asyncpg's style and its parameters' order, worked out once per text: an application has
    its statements in that style in its source, so converting them must not weigh on the lab's timings."""
    order: list[str] = []

    def repl(m: re.Match[str]) -> str:
        if m.group(1) not in order:
            order.append(m.group(1))
        return f"${order.index(m.group(1)) + 1}"

    return _PARAM.sub(repl, sql), tuple(order)


@functools.lru_cache(maxsize=1024)
def to_pyformat(sql: str) -> str:
    """`:name` → `%(name)s` for psycopg and psycopg2 (once per text, as to_dollar)."""
    return _PARAM.sub(lambda m: f"%({m.group(1)})s", sql.replace("%", "%%"))


class Client(ABC):
    """One Python client configuration, run in the lab's own process. A new instance per scenario iteration.

    The class attributes are the configuration's data (lab.clients.configuration.Configuration, which
    `configuration()` builds): its name, description and packages, its group, the workloads it runs, and its
    relations (what it fixes, the setting it changes, the documentation behind it)."""

    name: ClassVar[str]
    packages: ClassVar[tuple[str, ...]]
    description: ClassVar[str]
    group: ClassVar[str] = "driver"
    #: the matrix workloads this configuration runs; None: every one. The RCA's attempts are
    #: pool constructions, followed by one workload that shows whether the pool works.
    workloads: ClassVar[tuple[str, ...] | None] = None
    fixes: ClassVar[Mapping[str, str]] = {}
    change: ClassVar[str | None] = None
    snippet: ClassVar[str | None] = None
    docs: ClassVar[tuple[str, ...]] = ()
    #: the driver's own way to send a batch (the contract's `batch` operations), as its users call it; None: it has
    #: none, and the batch workloads are not run for it
    batch_api: ClassVar[str | None] = None
    local_only: ClassVar[bool] = False
    login_role: ClassVar[str | None] = None

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
    async def transaction(self, steps: Sequence[Step], before_commit: BeforeCommit | None = None) -> list[Rows]: ...

    async def batch(self, sql: str, params: Sequence[dict[str, Any]]) -> list[Rows]:
        """One SQL text with several parameter sets, sent as one batch the driver's own way (batch_api)."""
        raise NotImplementedError(f"{self.name} has no batch API")

    @abstractmethod
    async def close(self) -> None: ...

    @classmethod
    def versions(cls) -> dict[str, str]:
        return package_versions(cls.packages)

    @classmethod
    def configuration(cls) -> Configuration:
        return Configuration(
            name=cls.name,
            description=cls.description,
            packages=cls.packages,
            group=cls.group,
            workloads=cls.workloads,
            fixes=cls.fixes,
            change=cls.change,
            snippet=cls.snippet,
            docs=cls.docs,
            batch=cls.batch_api,
            local_only=cls.local_only,
            login_role=cls.login_role,
            version_reader=lambda _packages: cls.versions(),
        )
