"""Session state through a pooler, in both directions (claims C2, C10).

- `state-*`: what a client loses. Each kind of state is set in one transaction and looked for
  in a later one on the same client connection, while other clients keep the pooler's server
  connections busy; through a transaction pooler the later transaction is retried until it runs
  on another server connection (seen through pg_backend_pid()), so "lost" is observed.
- `leak-*`: what another client receives. Client A sets it and stays connected; client B retries
  until a transaction of its own runs on A's server connection, and looks: A's setting, A's
  search_path, A's temporary table, A's advisory lock (B takes it without waiting), A's LISTEN
  (B receives the notification).
- `discard-*`: what another client takes away: B prepares a statement (or sets search_path) on a
  server connection, A lands there and sends DISCARD ALL (RESET ALL), B runs its statement again.

Every name the probes use on the server (the advisory lock's key, the LISTEN channel) is the run's
own, derived from the run id, so a probe on a target never meets an application's lock or channel,
and no probe waits for anything: locks are taken with pg_try_advisory_lock. Every connection is
bounded (lab.topology.bounded): a server that stops answering ends the probe. Through a transaction
pooler each probe ends by landing on the server connection it set its state on once more and taking
that state back, so no later client (on a target, an application) inherits it.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg

from lab.clients.configuration import Configuration
from lab.results.outcome import Outcome, WrongResult, classify
from lab.topology.bounded import NoAnswer, answered_within

NOTIFY_WAIT_S = 1.0
#: The experiment's one subject: a connection that never prepares on its own.
PROBE = Configuration(
    "state-probe", "psycopg 3 connection (prepare_threshold=None), explicit transactions", ("psycopg",), group="probe"
)
MOVE_ATTEMPTS = 40
#: how long one probe may take in all before the server is taken as not answering
PROBE_BOUND_S = 30.0
#: how long a probe's login waits for a connection slot: the backends of the cell before it (its clients closed
#: them) are still exiting on a loaded machine, and a target's slots are shared with its applications
SLOT_WAIT_S = 10.0


@dataclass(frozen=True)
class Names:
    """The names a probe uses on the server, its cell's own (derived from the run id and the cell): an advisory-lock
    key, a LISTEN channel, a temporary table and a prepared statement no application uses and no earlier probe
    left behind (on a target the lab ends no server connection: what a probe leaves there stays until the probe
    takes it back, below)."""

    key: int
    channel: str
    table: str
    statement: str

    @classmethod
    def for_cell(cls, run_id: str, cell: str) -> Names:
        digest = zlib.crc32(f"{run_id}/{cell}".encode())
        tag = f"{digest:08x}"
        return cls(digest & 0x3FFFFFFF, f"pooler_lab_{tag}", f"pooler_lab_tmp_{tag}", f"pooler_lab_stmt_{tag}")


def _value(conn: psycopg.Connection, sql: str, params: list[Any] | None = None) -> Any:
    """The first column of the one row a statement returns."""
    row = conn.execute(sql, params).fetchone()
    assert row is not None, sql
    return row[0]


Check = Callable[[psycopg.Connection, Names], tuple[bool, str]]


@dataclass(frozen=True)
class StateKind:
    name: str
    set_sql: Callable[[Names], str]
    check: Check  # (present, what was seen)


def _check_set(conn: psycopg.Connection, names: Names) -> tuple[bool, str]:
    value = _value(conn, "SHOW statement_timeout")
    return value == "4321ms", f"statement_timeout = {value}"


def _check_prepared(conn: psycopg.Connection, names: Names) -> tuple[bool, str]:
    value = _value(conn, f"EXECUTE {names.statement}")
    return value == 42, f"EXECUTE gave {value}"


def _check_temp(conn: psycopg.Connection, names: Names) -> tuple[bool, str]:
    value = _value(conn, f"SELECT count(*) FROM {names.table}")
    return value == 1, f"{value} row(s) in the temporary table"


def _check_lock(conn: psycopg.Connection, names: Names) -> tuple[bool, str]:
    value = _value(
        conn,
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = %s AND pid = pg_backend_pid()",
        [names.key],
    )
    return value == 1, f"{value} advisory lock(s) of the run held by this backend"


def _takes_lock(conn: psycopg.Connection, names: Names) -> tuple[bool, str]:
    """Can this client take the lock another client holds? On the holder's own server connection it can (session
    locks are the backend's): the lock no longer protects anything. Released again at once if taken."""
    took = bool(_value(conn, "SELECT pg_try_advisory_lock(%s)", [names.key]))
    if took:
        conn.execute("SELECT pg_advisory_unlock(%s)", [names.key])
    return took, "took the advisory lock another client holds" if took else "the lock is held elsewhere: not taken"


def _check_temp_visible(conn: psycopg.Connection, names: Names) -> tuple[bool, str]:
    """Does another client's temporary table answer here? (Looked up without failing, so the look stays a look.)"""
    present = _value(conn, f"SELECT to_regclass('pg_temp.{names.table}') IS NOT NULL")
    if not present:
        return False, "no temporary table of another client"
    rows = _value(conn, f"SELECT count(*) FROM pg_temp.{names.table}")
    return True, f"read another client's temporary table: {rows} row(s)"


def _check_shown(parameter: str, want: str) -> Check:
    def check(conn: psycopg.Connection, names: Names) -> tuple[bool, str]:
        value = _value(conn, f"SHOW {parameter}")
        return value == want, f"{parameter} = {value}"

    return check


def _listen(names: Names) -> str:
    return f"LISTEN {names.channel}"


def _constant(sql: str) -> Callable[[Names], str]:
    return lambda names: sql


KINDS = {
    k.name: k
    for k in (
        StateKind("set", _constant("SET statement_timeout = '4321ms'"), _check_set),
        StateKind("prepared-statement", lambda names: f"PREPARE {names.statement} AS SELECT 42", _check_prepared),
        StateKind(
            "temp-table",
            lambda names: f"CREATE TEMP TABLE {names.table} (x int); INSERT INTO {names.table} VALUES (1)",
            _check_temp,
        ),
        StateKind("advisory-lock", lambda names: f"SELECT pg_try_advisory_lock({names.key})", _check_lock),
        StateKind("listen-notify", _listen, lambda conn, names: (False, "")),  # checked by delivery, below
        # parameters the server reports (ParameterStatus) and a pooler may track and restore on the next server
        # connection, beside statement_timeout ("set"), which it does not
        StateKind("timezone", _constant("SET TimeZone = 'Asia/Tokyo'"), _check_shown("TimeZone", "Asia/Tokyo")),
        StateKind(
            "application-name",
            _constant("SET application_name = 'lab-state-probe'"),
            _check_shown("application_name", "lab-state-probe"),
        ),
        StateKind("datestyle", _constant("SET DateStyle = 'SQL, DMY'"), _check_shown("DateStyle", "SQL, DMY")),
        StateKind(
            "standard-conforming-strings",
            _constant("SET standard_conforming_strings = off"),
            _check_shown("standard_conforming_strings", "off"),
        ),
        StateKind(
            "client-encoding", _constant("SET client_encoding = 'LATIN1'"), _check_shown("client_encoding", "LATIN1")
        ),
        StateKind(
            "search-path",
            _constant("SET search_path = lab_elsewhere, public"),
            _check_shown("search_path", "lab_elsewhere, public"),
        ),
    )
}
#: what another client may receive on its server connection: settings (a pooler tracks some and sets the client's
#: own again; statement_timeout and search_path it does not), and what lives on the server connection itself
LEAK_KINDS: dict[str, Check] = {
    "set": _check_set,
    "timezone": _check_shown("TimeZone", "Asia/Tokyo"),
    "application-name": _check_shown("application_name", "lab-state-probe"),
    "datestyle": _check_shown("DateStyle", "SQL, DMY"),
    "standard-conforming-strings": _check_shown("standard_conforming_strings", "off"),
    "client-encoding": _check_shown("client_encoding", "LATIN1"),
    "search-path": _check_shown("search_path", "lab_elsewhere, public"),
    "advisory-lock": _takes_lock,
    "temp-table": _check_temp_visible,
    "listen-notify": lambda conn, names: (False, ""),  # checked by delivery, below
}
#: what another client takes away: B's state on a server connection, then A's command there
DISCARD_KINDS = {"discard-all": "DISCARD ALL", "reset-all": "RESET ALL"}


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
            with _connect(self.dsn) as conn, answered_within(conn, PROBE_BOUND_S, "a busy client"):
                while not self.stop.is_set():
                    conn.execute("SELECT pg_sleep(0.003)")
                    conn.commit()
        except (psycopg.Error, OSError):
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


def _connect(dsn: str, **kwargs: Any) -> psycopg.Connection:
    """A probe's own connection. A login refused for want of a free slot (53300) is tried again for up to SLOT_WAIT_S:
    what the probe observes is session state, and a slot frees itself as the last cell's backends finish exiting."""
    deadline = time.monotonic() + SLOT_WAIT_S
    while True:
        try:
            return psycopg.connect(dsn, prepare_threshold=None, connect_timeout=5, **kwargs)
        except psycopg.OperationalError as exc:
            if not _no_slot(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _no_slot(exc: psycopg.OperationalError) -> bool:
    """Refused for want of a connection slot? libpq reports a refused login with no SQLSTATE, so the server's words
    decide (53300: 'too many clients already', 'remaining connection slots are reserved ...')."""
    text = str(exc)
    return exc.sqlstate == "53300" or "too many clients already" in text or "remaining connection slots" in text


def _notified(conn: psycopg.Connection, notify_dsn: str, names: Names) -> tuple[bool, str]:
    """A notification on the run's channel, sent from a connection of its own while `conn`'s transaction is open on
    the server connection it landed on: PostgreSQL delivers it to a listening session when that session's
    transaction ends, so it comes with `conn`'s COMMIT where that server connection listens. Does `conn` get it?"""
    got: list[psycopg.Notify] = []
    conn.add_notify_handler(got.append)
    with _connect(notify_dsn, autocommit=True) as other:
        other.execute(f"NOTIFY {names.channel}, 'hello'")
    conn.commit()
    if not got:
        got += list(conn.notifies(timeout=NOTIFY_WAIT_S, stop_after=1))
    return bool(got), f"{len(got)} notification(s) on the run's channel within {NOTIFY_WAIT_S:g}s"


class KeyHeld(Exception):
    """The cell's advisory-lock key is held by a session that is not the probe's: there is nothing to observe, and
    the probe takes nothing it would have to wait for."""


def _set(conn: psycopg.Connection, kind: str, sql: str, names: Names) -> None:
    """Make the state; the advisory lock is tried, never waited for, and a key someone else holds ends the probe."""
    cursor = conn.execute(sql)
    if kind == "advisory-lock" and not (cursor.fetchone() or (False,))[0]:
        raise KeyHeld(f"the cell's advisory-lock key {names.key} is held by another session; the probe took nothing")


#: the settings the probes make, as SHOW reports them: the tidy step resets a setting only where it still holds the
#: probe's value (on a target the server connection may carry an application's own)
OWN_SETTINGS = {
    "statement_timeout": "4321ms",
    "TimeZone": "Asia/Tokyo",
    "application_name": "lab-state-probe",
    "DateStyle": "SQL, DMY",
    "standard_conforming_strings": "off",
    "client_encoding": "LATIN1",
    "search_path": "lab_elsewhere, public",
}


def _undo(conn: psycopg.Connection, names: Names) -> None:
    """Take back, on the server connection `conn`'s transaction runs on, what a probe may have left there: its
    settings, its temporary table, its LISTEN, its advisory lock, its prepared statement. Only the cell's own names."""
    for parameter, value in OWN_SETTINGS.items():
        if _value(conn, f"SHOW {parameter}") == value:
            conn.execute(f"RESET {parameter}")
    conn.execute(f"DROP TABLE IF EXISTS pg_temp.{names.table}")
    conn.execute(f"UNLISTEN {names.channel}")
    held = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = %s AND pid = pg_backend_pid()"
    while _value(conn, held, [names.key]):
        conn.execute("SELECT pg_advisory_unlock(%s)", [names.key])
    if _value(conn, "SELECT count(*) FROM pg_prepared_statements WHERE name = %s", [names.statement]):
        conn.execute(f"DEALLOCATE {names.statement}")


def _tidy(dsn: str, pid: int, names: Names) -> None:
    """Through a transaction pooler what a probe set stays on the server connection (pid) after its client has gone:
    land there once more and take it back, so no later client (on a target: an application) meets it. Direct, the
    closed connection takes it along; a session pooler runs its reset query (server_reset_query) when the client
    leaves. Best effort and bounded: a server connection that never comes back (the pooler closed it) keeps
    nothing."""
    landing = StateResult(Outcome("ok"))
    try:
        with _connect(dsn) as conn, answered_within(conn, PROBE_BOUND_S, "tidying after a state probe"):
            _land(conn, landing, lambda p: p == pid, True)
            if landing.pids[-1] == pid:
                _undo(conn, names)
            conn.commit()
    except (psycopg.Error, OSError, NoAnswer):
        pass


def leak_probe(name: str, dsn: str, notify_dsn: str, pooled: bool, names: Names) -> StateResult:
    """Client A sets the state in a transaction of its own and stays connected; client B, another client
    connection, looks for it. Through a transaction pooler B retries until a transaction of its runs on A's
    server connection (pg_backend_pid, in the same transaction as the look), so "not seen" is observed there;
    direct and through a session pooler B can never have A's server connection while A is connected.
    A leak is a wrong result: B sees (or takes, or receives) what it never made."""
    result = StateResult(Outcome("ok"))
    setting = KINDS[name].set_sql(names)
    try:
        with (
            _connect(dsn) as a,
            _connect(dsn) as b,
            answered_within(a, PROBE_BOUND_S, "a state probe"),
            answered_within(b, PROBE_BOUND_S, "a state probe"),
        ):
            first = _value(a, "SELECT pg_backend_pid()")
            _set(a, name, setting, names)
            a.commit()
            result.pids.append(first)
            _land(b, result, lambda pid: pid == first, pooled)
            if name == "listen-notify":
                result.kept, result.seen = _notified(b, notify_dsn, names)
            else:
                result.kept, result.seen = LEAK_KINDS[name](b, names)  # here: A's state seen by B
            b.commit()
        if result.kept:
            raise WrongResult(f"another client's state reached this one: {result.seen}")
        result.outcome = Outcome("ok", detail=f"not seen: {result.seen}")
    except Exception as exc:
        if result.kept is None:
            result.seen = f"{type(exc).__name__}: {exc}".splitlines()[0]
        result.outcome = classify(exc)
    if pooled and result.pids:
        _tidy(dsn, result.pids[0], names)
    return result


def discard_probe(command: str, dsn: str, pooled: bool, names: Names) -> StateResult:
    """Client B prepares a statement and sets search_path on its server connection; client A lands on that server
    connection and sends `command` (DISCARD ALL, RESET ALL); B lands there again and runs its statement. Through a
    transaction pooler A's command takes away B's state (the error or the setting B no longer has); direct and
    through a session pooler A never shares B's server connection."""
    result = StateResult(Outcome("ok"))
    try:
        with (
            _connect(dsn) as b,
            _connect(dsn) as a,
            answered_within(a, PROBE_BOUND_S, "a state probe"),
            answered_within(b, PROBE_BOUND_S, "a state probe"),
        ):
            first = _value(b, "SELECT pg_backend_pid()")
            b.execute(f"PREPARE {names.statement} AS SELECT 42")
            b.execute("SET search_path = lab_elsewhere, public")
            b.commit()
            result.pids.append(first)
            _land(a, result, lambda pid: pid == first, pooled)
            landed = result.pids[-1] == first
            a.commit()
            if landed:  # its own transaction, as an application (or a framework's reset) sends it
                a.autocommit = True
                a.execute(command)
            _land(b, result, lambda pid: pid == first, pooled)
            path = _value(b, "SHOW search_path")
            statement = _value(b, f"EXECUTE {names.statement}")  # fails where the statement is gone
            b.commit()
            result.kept, result.seen = path == "lab_elsewhere, public" and statement == 42, f"search_path = {path}"
        if not result.kept:
            raise WrongResult(f"another client's {command} took this one's state away: {result.seen}")
        result.outcome = Outcome("ok", detail=f"kept: {result.seen}")
    except Exception as exc:
        if result.kept is None:
            result.kept = False
            result.seen = f"{type(exc).__name__}: {exc}".splitlines()[0]
        result.outcome = classify(exc)
    if pooled and result.pids:
        _tidy(dsn, result.pids[0], names)
    return result


def probe(name: str, dsn: str, notify_dsn: str, pooled: bool, names: Names) -> StateResult:
    """Set the state in one transaction, look for it in a later one on the same client connection."""
    result = StateResult(Outcome("ok"))
    kind = KINDS[name]
    try:
        with _connect(dsn) as conn, answered_within(conn, PROBE_BOUND_S, "a state probe"):
            first = _value(conn, "SELECT pg_backend_pid()")
            _set(conn, name, kind.set_sql(names), names)
            conn.commit()
            result.pids.append(first)
            _land(conn, result, lambda pid: pid != first, pooled)
            if name == "listen-notify":
                result.kept, result.seen = _notified(conn, notify_dsn, names)
            else:
                result.kept, result.seen = kind.check(conn, names)
                conn.commit()
        if not result.kept:
            raise WrongResult(f"lost: {result.seen}")
        result.outcome = Outcome("ok", detail=f"kept: {result.seen}")
    except Exception as exc:
        if result.kept is None:
            result.kept = False
            result.seen = f"{type(exc).__name__}: {exc}".splitlines()[0]
        result.outcome = classify(exc)
    if pooled and result.pids:
        _tidy(dsn, result.pids[0], names)
    return result
