"""The client contract: a cell as data, and what a runner sends back. docs/client-contract.md describes the JSON.

The harness hands a runner a `CellSpec`: where to connect, how large a pool, how many
workers, how often to repeat, the limits, and per worker the operations to run, each
statement with named parameters (`:name`), values that may refer to earlier results of the
same transaction, and the rows it must return. A runner in any language opens its client
configuration's pool, runs the workers concurrently, checks every answer, and reports each
iteration's outcome (with the phase it failed in and the driver's own error fields) and
latencies, and the versions it ran with.

Contract 2 adds what makes a pooler's failures deterministic and what applications do beside
single statements: an order between operations of different workers (`after`, `during`, `hold`: an open
transaction pins its server connection, and who commits last decides which one a transaction
pooler hands out next), a client connection per worker (`connections`), batches sent the
driver's own way (`batch`), and cells that run every repeat to count outcomes (`keep_going`).

This module is standard library only: Python runners in environments of their own (a
client's own lock file, the system libpq) import it without the lab's dependencies.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

#: bumped when a runner written for an older contract would misread a spec
CONTRACT = 2

#: a value in a statement's parameters or expected rows: a JSON scalar, or one of
#:   {"ref": [step, row, column]}  the value an earlier statement of the same operation returned
#:   {"type": "integer"}           any integer (a driver may return int8 as a string of digits)
Value = Any


@dataclass(frozen=True)
class Statement:
    sql: str  # with :name placeholders
    params: dict[str, Value] = field(default_factory=dict)
    #: the rows it must return (a list of rows, each a list of values); None: not checked
    expect: list[list[Value]] | None = None
    what: str = ""  # what was asked, for a wrong-result message: "worker 1's SELECT n * 2"


@dataclass(frozen=True)
class Operation:
    """One unit of an application's work: a statement in a transaction of its own, or several in an explicit one
    (BEGIN ... COMMIT); `pause_s` is slept before it (the harness's fixed, uneven stagger)."""

    statements: tuple[Statement, ...]
    transaction: bool = False
    pause_s: float = 0.0
    #: a named operation only some runners implement (a framework's own API, e.g. Django's QuerySet.iterator()),
    #: with its arguments; the statements then describe it for the record
    call: str | None = None
    args: dict[str, Value] = field(default_factory=dict)
    #: start only once these operations, each (worker, index) of the same iteration, are done (committed or failed)
    after: tuple[tuple[int, int], ...] = ()
    #: start only while these operations hold their transactions open: once their statements have run (each then
    #: pins its server connection until it commits)
    during: tuple[tuple[int, int], ...] = ()
    #: an explicit transaction stays open after its statements, before its COMMIT, until these operations are done
    hold: tuple[tuple[int, int], ...] = ()
    #: the statements (one SQL text, a parameter set each) sent as one batch the driver's own way (psycopg's
    #: executemany in pipeline mode, asyncpg's fetchmany): one operation, its answers checked once all are back
    batch: bool = False


#: every worker shares one pool of `pool_size` connections
POOL = "pool"
#: each worker holds a client connection of its own for the whole iteration (a pool of one each), as an
#: application's thread-local connection does (Django's, a worker thread's)
PER_WORKER = "per-worker"
CONNECTIONS = (POOL, PER_WORKER)


@dataclass(frozen=True)
class CellSpec:
    configuration: str  # the client configuration's name: the runner knows how to build its pool
    scenario: str
    dsn: str
    pool_size: int
    repeats: int
    cell_timeout_s: float
    op_timeout_s: float  # a pool's wait for a connection, a connect timeout
    workers: tuple[tuple[Operation, ...], ...]  # per worker, in order
    connections: str = POOL  # POOL | PER_WORKER
    #: run every repeat even after a failure, each iteration reporting its outcome (the free-running cells count how
    #: often each outcome occurred); otherwise the first failure ends the cell
    keep_going: bool = False
    contract: int = CONTRACT

    def to_json(self) -> str:
        return json.dumps({"type": "cell", **asdict(self)})

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CellSpec:
        workers = tuple(
            tuple(
                Operation(
                    statements=tuple(Statement(**s) for s in op["statements"]),
                    transaction=op.get("transaction", False),
                    pause_s=op.get("pause_s", 0.0),
                    call=op.get("call"),
                    args=op.get("args") or {},
                    after=tuple((int(w), int(i)) for w, i in op.get("after") or ()),
                    during=tuple((int(w), int(i)) for w, i in op.get("during") or ()),
                    hold=tuple((int(w), int(i)) for w, i in op.get("hold") or ()),
                    batch=bool(op.get("batch", False)),
                )
                for op in ops
            )
            for ops in data["workers"]
        )
        known = {
            "configuration",
            "scenario",
            "dsn",
            "pool_size",
            "repeats",
            "cell_timeout_s",
            "op_timeout_s",
            "connections",
            "keep_going",
            "contract",
        }
        return cls(workers=workers, **{k: v for k, v in data.items() if k in known})


# -- what runners send back (one JSON object per line) ----------------------------------------
# {"type": "hello", "contract": 2, "runtime": "node v20.20.2"}                      once, when the runner starts
# {"type": "iteration", "index": 0, "outcome": {...}, "latencies_s": [...]}        per iteration of a cell
# {"type": "done", "versions": {"pg": "8.23.1"}, "elapsed_s": 1.2}                 after the last iteration
# {"type": "fatal", "message": "..."}                                               the runner cannot go on
# An outcome: {"kind": "ok" | "error" | "wrong-result" | "timeout" | "hang", "error_class", "sqlstate", "message",
#              "phase": "connect" | "first query" | "later query" | "commit", "detail", "expected", "received",
#              "outstanding"}


def phase_of(op_index: int) -> str:
    """The phase an operation's failure is recorded in (a failed COMMIT is "commit", a failed open "connect")."""
    return "first query" if op_index == 0 else "later query"


def resolve(value: Value, results: Sequence[Sequence[Sequence[Any]]]) -> Any:
    """A parameter's value, with {"ref": [step, row, column]} taken from the rows earlier statements returned."""
    if isinstance(value, dict) and "ref" in value:
        step, row, column = value["ref"]
        return results[step][row][column]
    return value


def params_of(statement: Statement, results: Sequence[Sequence[Sequence[Any]]]) -> dict[str, Any]:
    return {name: resolve(v, results) for name, v in statement.params.items()}


def plain(value: Any) -> Any:
    """A value as JSON has it: what a row's received value is compared and recorded as."""
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (dt.date, dt.datetime, dt.time, uuid.UUID)):
        return str(value)
    if isinstance(value, (bytes, memoryview)):
        return bytes(value).hex()
    return value


def _matches(want: Value, got: Any, results: Sequence[Sequence[Sequence[Any]]]) -> bool:
    if isinstance(want, dict) and want.get("type") == "integer":
        return (isinstance(got, int) and not isinstance(got, bool)) or (
            isinstance(got, str) and got.lstrip("-").isdigit()
        )
    if isinstance(want, dict) and "ref" in want:
        return plain(resolve(want, results)) == plain(got) or str(resolve(want, results)) == str(got)
    if isinstance(want, int) and not isinstance(want, bool) and isinstance(got, str) and got.lstrip("-").isdigit():
        return int(got) == want  # int8 as a string of digits (node-postgres, postgres.js)
    return bool(plain(got) == want)


def rows_match(
    expect: list[list[Value]], rows: Sequence[Sequence[Any]], results: Sequence[Sequence[Sequence[Any]]]
) -> bool:
    if len(rows) != len(expect):
        return False
    return all(
        len(row) == len(want) and all(_matches(w, g, results) for w, g in zip(want, row, strict=True))
        for want, row in zip(expect, rows, strict=True)
    )


def describe(value: Any) -> str:
    """How a row records an expected or received value."""
    return json.dumps(plain(value), default=str)
