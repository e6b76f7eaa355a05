"""The session-state probes on a server someone else uses (a target): they wait for nothing, take nothing that
is not theirs, and leave nothing behind."""

from __future__ import annotations

import threading
import time

import psycopg

from lab.workloads.session_state import Names, leak_probe, probe

NAMES = Names.for_cell("20261207T000000-1", "session-state/advisory-lock/direct")


def test_a_held_advisory_lock_ends_the_probe_at_once_and_stays_its_holders(topology) -> None:  # type: ignore[no-untyped-def]
    """An application holds the very key the cell would use: the probe neither waits for it nor reports a lost or
    leaked lock; it says the key is held, and the holder keeps it."""
    dsn = topology.endpoint("direct").dsn()
    with psycopg.connect(dsn, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", [NAMES.key])
        started = time.monotonic()
        results = [probe("advisory-lock", dsn, dsn, False, NAMES), leak_probe("advisory-lock", dsn, dsn, False, NAMES)]
        elapsed = time.monotonic() - started
        for result in results:
            assert result.outcome.kind == "error" and result.outcome.error_class.endswith("KeyHeld"), result.outcome
            assert "is held by another session" in (result.outcome.message or "")
        held = holder.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = %s AND pid = pg_backend_pid()",
            [NAMES.key],
        ).fetchone()
        assert held == (1,), "the holder still holds its lock"
    assert elapsed < 30, f"the probes took {elapsed:.1f}s: they waited"


def test_a_leak_probe_through_the_transaction_pooler_leaves_nothing_on_the_server_connections(topology) -> None:  # type: ignore[no-untyped-def]
    """The leak probes observe a leak (another client sees the state) and then take the state back: no server
    connection behind the pooler keeps the probe's lock or temporary table."""
    pooled, direct = topology.endpoint("pgbouncer-transaction").dsn(), topology.endpoint("direct").dsn()
    names = Names.for_cell("20261207T000000-1", "leak/transaction")
    seen = {
        k: leak_probe(k, pooled, direct, True, names) for k in ("advisory-lock", "temp-table", "listen-notify", "set")
    }
    assert {k: r.outcome.kind for k, r in seen.items()} == dict.fromkeys(seen, "wrong-result"), seen
    with psycopg.connect(direct, autocommit=True) as conn:
        left = conn.execute(
            "SELECT (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = %s),"
            " (SELECT count(*) FROM pg_class WHERE relname = %s)",
            [names.key, names.table],
        ).fetchone()
    assert left == (0, 0), f"the probe left its lock or its temporary table behind: {left}"


def test_a_probe_waits_for_a_connection_slot_the_last_cell_is_giving_back(topology) -> None:  # type: ignore[no-untyped-def]
    """Every slot for non-superusers taken (as by the backends of the cell before, still exiting on a loaded
    machine): the probe's login waits until one is free instead of reporting the refusal as the probe's outcome."""
    dsn = topology.endpoint("direct").dsn()
    taken: list[psycopg.Connection] = []
    try:
        while True:  # up to the server's limit: the next login is refused with 53300
            taken.append(psycopg.connect(dsn, connect_timeout=5))
    except psycopg.OperationalError as exc:
        assert "remaining connection slots" in str(exc) or "too many clients" in str(exc), exc
    assert taken, "no connection could be opened at all"
    freed = threading.Timer(0.5, taken.pop().close)
    freed.start()
    try:
        result = probe("set", dsn, dsn, False, NAMES)
    finally:
        freed.join()
        for conn in taken:
            conn.close()
    assert result.outcome.kind == "ok", result.outcome
