"""The one value every experiment produces, and how an exception becomes one.

Drivers wrap server errors differently (asyncpg's PostgresError.sqlstate, psycopg's
Error.sqlstate, psycopg2's pgcode, SQLAlchemy's DBAPIError.orig, a pool timeout whose
real cause was only logged); `classify` digs through all of them so a row says
what the server or pooler actually answered, not just which wrapper caught it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

#: ok; error (the driver raised one: class, SQLSTATE, message); wrong-result (an answer that is not the one asked for,
#: silently); timeout (a time limit the driver or its pool enforces ended the wait: its own error); hang (nothing came
#: back within the cell's limit, and nothing of the client's ended the wait: what was outstanding is in the detail)
Kind = Literal["ok", "error", "wrong-result", "timeout", "hang"]
Phase = Literal["connect", "first query", "later query", "commit"]
KINDS: tuple[str, ...] = ("ok", "error", "wrong-result", "timeout", "hang")
PHASES: tuple[str, ...] = ("connect", "first query", "later query", "commit")


@dataclass(frozen=True)
class Outcome:
    kind: Kind
    error_class: str | None = None
    sqlstate: str | None = None
    message: str | None = None  # first line only: the rest is often a per-run name or pid
    phase: Phase | None = None
    iteration: int | None = None  # 0-based repeat of the scenario in which it happened
    detail: str | None = None  # the underlying cause when a wrapper hid it, or what was wrong
    expected: str | None = None  # wrong-result: what the query had to return ...
    received: str | None = None  # ... and what came back instead

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Outcome:
        if not isinstance(data, dict) or data.get("kind") not in KINDS:
            raise ValueError(f"an outcome's kind is one of {', '.join(KINDS)}")
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def label(self) -> str:
        """What a count of outcomes calls this one: its kind, or an error's SQLSTATE (its class where it has none)."""
        if self.kind == "error":
            return self.sqlstate or (self.error_class or "error").rsplit(".", 1)[-1]
        return self.kind

    def summary(self) -> str:
        if self.kind != "error":
            return self.kind + (f" ({self.detail})" if self.detail else "")
        where = f" at {self.phase}" if self.phase else ""
        state = f" [{self.sqlstate}]" if self.sqlstate else ""
        return f"error{where}: {self.error_class}{state}: {self.message}"


OK = Outcome("ok")


@dataclass
class CellResult:
    """What running one cell produced: its outcome (the first failure of any iteration; ok only if every iteration
    was), the latency of every operation that completed, how many iterations ran, and the versions the runner
    reported (None: the configuration's own reader says)."""

    outcome: Outcome
    latencies_s: list[float] = field(default_factory=list)
    iterations: int = 0
    elapsed_s: float = 0.0
    versions: dict[str, str] | None = None
    #: every iteration's outcome, in order (a cell that keeps going after a failure counts them)
    outcomes: list[Outcome] = field(default_factory=list)


class PhaseError(Exception):
    """Marks the phase in which the wrapped exception happened."""

    def __init__(self, phase: Phase, cause: BaseException) -> None:
        super().__init__(f"{phase}: {cause!r}")
        self.phase = phase
        self.cause = cause


@contextmanager
def in_phase(phase: Phase) -> Iterator[None]:
    """Marks what fails inside as having failed in `phase` (a COMMIT the pooler broke, say)."""
    try:
        yield
    except PhaseError:
        raise
    except Exception as exc:
        raise PhaseError(phase, exc) from exc


class WrongResult(Exception):
    """A query returned, but not what it must have returned: `what` was asked, `got` came back
    instead of `want`. Both values go into the row, so a reader sees whose answer arrived."""

    def __init__(self, what: str, got: object = None, want: object = None) -> None:
        super().__init__(
            what if got is None and want is None else f"{what}: got {_shown(got)}, expected {_shown(want)}"
        )
        self.what, self.got, self.want = what, got, want


def _shown(value: object) -> str:
    """A value as a row records it: JSON where it is JSON-like (rows of a query), repr otherwise."""
    try:
        return json.dumps(value, default=str)
    except (TypeError, ValueError):
        return repr(value)


def _qualname(exc: BaseException) -> str:
    cls = type(exc)
    module = cls.__module__
    for short in ("asyncpg", "psycopg2", "psycopg_pool", "psycopg", "sqlalchemy"):
        if module == short or module.startswith(short + "."):
            module = short
            break
    return cls.__name__ if module == "builtins" else f"{module}.{cls.__name__}"


def _fields(exc: BaseException) -> dict[str, Any]:
    """The server's error fields where a driver passes them as they came (pg8000: its first argument, {'C': ...})."""
    first = exc.args[0] if exc.args else None
    return first if isinstance(first, dict) and isinstance(first.get("C"), str) else {}


def _sqlstate(exc: BaseException) -> str | None:
    for attr in ("sqlstate", "pgcode"):
        value = getattr(exc, attr, None)
        if isinstance(value, str) and value:
            return value
    code = _fields(exc).get("C")
    return code if isinstance(code, str) and code else None


def _message(exc: BaseException) -> str:
    """The first line of what the server (or pooler) said: its message field where the driver keeps the fields."""
    return first_line(str(_fields(exc).get("M") or exc))


def _chain(exc: BaseException) -> list[BaseException]:
    """exc, then what it wraps: SQLAlchemy's .orig, its __cause__, and so on."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = getattr(current, "orig", None) or current.__cause__ or current.__context__
        if isinstance(current, (asyncio.CancelledError,)):
            break
    return seen


def first_line(text: str) -> str:
    return text.strip().splitlines()[0].strip() if text.strip() else ""


def classify(exc: BaseException, phase: Phase | None = None, iteration: int | None = None) -> Outcome:
    """An exception, as the error outcome a row records."""
    while isinstance(exc, PhaseError):  # the innermost mark is the most precise; the lab's wrapper is never the error
        phase, exc = exc.phase, exc.cause
    if isinstance(exc, WrongResult):
        shown = exc.got is not None or exc.want is not None
        return Outcome(
            "wrong-result",
            phase=phase,
            iteration=iteration,
            detail=first_line(str(exc)),
            expected=_shown(exc.want) if shown else None,
            received=_shown(exc.got) if shown else None,
        )
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)) and not _sqlstate(exc):
        return Outcome("timeout", phase=phase, iteration=iteration, detail=first_line(str(exc)) or None)
    chain = _chain(exc)
    # the outermost error names what the application sees; the innermost with a
    # SQLSTATE names what the server or pooler said.
    with_state = next((e for e in chain if _sqlstate(e)), None)
    detail = None
    if len(chain) > 1:
        inner = chain[-1]
        detail = f"{_qualname(inner)}: {first_line(str(inner))}"
    return Outcome(
        kind="error",
        error_class=_qualname(exc),
        sqlstate=_sqlstate(with_state) if with_state is not None else None,
        message=_message(with_state if with_state is not None else exc) or _qualname(exc),
        phase=phase,
        iteration=iteration,
        detail=detail,
    )
