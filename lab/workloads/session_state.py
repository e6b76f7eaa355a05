"""Session state across two transactions on one client connection (claims C2, C10).

Each kind of state is set in one transaction and looked for in a later one, on the
same client connection, while other clients keep the pooler's server connections
busy. Through a transaction pooler the later transaction is retried until it runs on
another server connection than the first (seen through pg_backend_pid()), so "lost"
is observed, not assumed; direct and through a session pooler it is always the same.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg

from lab.clients.configuration import Configuration
from lab.results.outcome import Outcome, WrongResult, classify

NOTIFY_WAIT_S = 1.0
#: The experiment's one subject: a connection that never prepares on its own.
PROBE = Configuration(
    "state-probe", "psycopg 3 connection (prepare_threshold=None), explicit transactions", ("psycopg",), group="probe"
)
MOVE_ATTEMPTS = 40


def _value(conn: psycopg.Connection, sql: str) -> Any:
    """The first column of the one row a statement returns."""
    row = conn.execute(sql).fetchone()
    assert row is not None, sql
    return row[0]


@dataclass(frozen=True)
class StateKind:
    name: str
    set_sql: str
    check: Callable[[psycopg.Connection], tuple[bool, str]]  # (kept, what was seen); raises when the state is gone


def _check_set(conn: psycopg.Connection) -> tuple[bool, str]:
    value = _value(conn, "SHOW statement_timeout")
    return value == "4321ms", f"statement_timeout = {value}"


def _check_prepared(conn: psycopg.Connection) -> tuple[bool, str]:
    value = _value(conn, "EXECUTE lab_state_stmt")
    return value == 42, f"EXECUTE gave {value}"


def _check_temp(conn: psycopg.Connection) -> tuple[bool, str]:
    value = _value(conn, "SELECT count(*) FROM lab_state_tmp")
    return value == 1, f"{value} row(s) in the temporary table"


def _check_lock(conn: psycopg.Connection) -> tuple[bool, str]:
    value = _value(
        conn, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242 AND pid = pg_backend_pid()"
    )
    return value == 1, f"{value} advisory lock(s) held by this backend"


def _check_shown(parameter: str, want: str) -> Callable[[psycopg.Connection], tuple[bool, str]]:
    def check(conn: psycopg.Connection) -> tuple[bool, str]:
        value = _value(conn, f"SHOW {parameter}")
        return value == want, f"{parameter} = {value}"

    return check


KINDS = {
    k.name: k
    for k in (
        StateKind("set", "SET statement_timeout = '4321ms'", _check_set),
        StateKind("prepared-statement", "PREPARE lab_state_stmt AS SELECT 42", _check_prepared),
        StateKind(
            "temp-table", "CREATE TEMP TABLE lab_state_tmp (x int); INSERT INTO lab_state_tmp VALUES (1)", _check_temp
        ),
        StateKind("advisory-lock", "SELECT pg_advisory_lock(4242)", _check_lock),
        StateKind("listen-notify", "LISTEN lab_state_chan", lambda conn: (False, "")),  # checked by delivery, below
        # parameters the server reports (ParameterStatus) and a pooler may track and restore on the next server
        # connection, beside statement_timeout ("set"), which it does not
        StateKind("timezone", "SET TimeZone = 'Asia/Tokyo'", _check_shown("TimeZone", "Asia/Tokyo")),
        StateKind(
            "application-name",
            "SET application_name = 'lab-state-probe'",
            _check_shown("application_name", "lab-state-probe"),
        ),
        StateKind("datestyle", "SET DateStyle = 'SQL, DMY'", _check_shown("DateStyle", "SQL, DMY")),
        StateKind(
            "standard-conforming-strings",
            "SET standard_conforming_strings = off",
            _check_shown("standard_conforming_strings", "off"),
        ),
        StateKind("client-encoding", "SET client_encoding = 'LATIN1'", _check_shown("client_encoding", "LATIN1")),
    )
}
#: the kinds a second client may find on its server connection: settings (a pooler tracks some and sets the
#: client's own again; statement_timeout it does not)
LEAK_KINDS = ("set", "timezone", "application-name", "datestyle", "standard-conforming-strings", "client-encoding")


@dataclass
class StateResult:
    outcome: Outcome
    kept: bool | None = None
    seen: str = ""
    pids: list[int] = field(default_factory=list)
    attempts: int = 0


class BusyPool:
    """Other clients running short transactions, so server connections change hands."""

    def __init__(self, dsn: str, clients: int = 3) -> None:
        self.dsn, self.clients = dsn, clients
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def _run(self) -> None:
        try:
            with psycopg.connect(self.dsn, prepare_threshold=None, connect_timeout=5) as conn:
                while not self.stop.is_set():
                    conn.execute("SELECT pg_sleep(0.003)")
                    conn.commit()
        except psycopg.Error:
            pass

    def __enter__(self) -> BusyPool:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(5)


def _land(conn: psycopg.Connection, result: StateResult, wanted: Callable[[int], bool], pooled: bool) -> None:
    """Open a transaction on `conn` that runs on a wanted server connection (by pg_backend_pid), retrying through a
    transaction pooler until one does (at most MOVE_ATTEMPTS; the last is taken as it comes); direct and through a
    session pooler the first is the only one there is. The transaction stays open for the caller's look; the
    backend and the attempts go into `result`."""
    for attempt in range(1, MOVE_ATTEMPTS + 1):
        result.attempts = attempt
        pid = _value(conn, "SELECT pg_backend_pid()")
        if pooled and not wanted(pid) and attempt < MOVE_ATTEMPTS:
            conn.commit()
            time.sleep(0.002)
            continue
        result.pids.append(pid)
        return


def leak_probe(kind: StateKind, dsn: str, pooled: bool) -> StateResult:
    """Client A sets the state in a transaction of its own and stays connected; client B, another client
    connection, looks for it. Through a transaction pooler B retries until a transaction of its runs on A's
    server connection (pg_backend_pid, in the same transaction as the look), so "not seen" is observed there;
    direct and through a session pooler B can never have A's server connection while A is connected.
    A leak is a wrong result: B sees a setting it never made."""
    result = StateResult(Outcome("ok"))
    try:
        with (
            psycopg.connect(dsn, prepare_threshold=None, connect_timeout=5) as a,
            psycopg.connect(dsn, prepare_threshold=None, connect_timeout=5) as b,
        ):
            first = _value(a, "SELECT pg_backend_pid()")
            a.execute(kind.set_sql)
            a.commit()
            result.pids.append(first)
            _land(b, result, lambda pid: pid == first, pooled)
            result.kept, result.seen = kind.check(b)  # here: A's state seen by B
            b.commit()
        if result.kept:
            raise WrongResult(f"another client's state leaked: {result.seen}")
        result.outcome = Outcome("ok", detail=f"not seen: {result.seen}")
    except Exception as exc:
        if result.kept is None:
            result.seen = f"{type(exc).__name__}: {exc}".splitlines()[0]
        result.outcome = classify(exc)
    return result


def probe(kind: StateKind, dsn: str, notify_dsn: str, pooled: bool) -> StateResult:
    """Set the state in one transaction, look for it in a later one on the same client connection."""
    result = StateResult(Outcome("ok"))
    try:
        with psycopg.connect(dsn, prepare_threshold=None, connect_timeout=5) as conn:
            first = _value(conn, "SELECT pg_backend_pid()")
            conn.execute(kind.set_sql)
            conn.commit()
            result.pids.append(first)
            _land(conn, result, lambda pid: pid != first, pooled)
            if kind.name == "listen-notify":
                conn.commit()
                with psycopg.connect(notify_dsn, autocommit=True) as other:
                    other.execute("NOTIFY lab_state_chan, 'hello'")
                got = list(conn.notifies(timeout=NOTIFY_WAIT_S, stop_after=1))
                result.kept, result.seen = bool(got), f"{len(got)} notification(s) within {NOTIFY_WAIT_S:g}s"
            else:
                result.kept, result.seen = kind.check(conn)
                conn.commit()
        if not result.kept:
            raise WrongResult(f"lost: {result.seen}")
        result.outcome = Outcome("ok", detail=f"kept: {result.seen}")
    except Exception as exc:
        if result.kept is None:
            result.kept = False
            result.seen = f"{type(exc).__name__}: {exc}".splitlines()[0]
        result.outcome = classify(exc)
    return result
