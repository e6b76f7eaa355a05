"""What the server and the pooler saw, read from the real servers: log lines with their SQLSTATE, and
prepared statements left on a transaction pooler's server connections."""

from __future__ import annotations

import time

import psycopg
import pytest

from lab.observe.server_view import LogWindow, PreparedCensus, summarize


def test_the_log_window_sees_the_servers_error_with_its_sqlstate(topology) -> None:  # type: ignore[no-untyped-def]
    window = LogWindow.of(topology, topology.endpoint("pgbouncer-transaction")).open()
    with (
        psycopg.connect(topology.endpoint("pgbouncer-transaction").dsn(), autocommit=True) as conn,
        pytest.raises(psycopg.errors.DivisionByZero),
    ):
        conn.execute("SELECT 1 / 0")
    time.sleep(0.1)
    events = window.events()
    assert events is not None
    assert any(e.source == "postgres" and e.sqlstate == "22012" and e.message == "division by zero" for e in events)
    _, unraised = summarize(events, "22012", "division by zero")
    assert unraised == 0
    _, unraised = summarize(events, None, None)  # had the client swallowed it, it would count
    assert unraised == 1


def test_the_census_counts_statements_left_on_every_server_connection(topology) -> None:  # type: ignore[no-untyped-def]
    endpoint = topology.endpoint("pgbouncer-transaction")
    census = PreparedCensus(endpoint.dsn(), int(endpoint.facts.pool_size))
    try:
        before = census.count()
        with psycopg.connect(endpoint.dsn(), autocommit=True) as conn:
            conn.execute("PREPARE lab_left_behind AS SELECT 1")  # transaction mode: it stays on that server connection
        assert census.count() == before + 1
        assert census.count() == before + 1  # counting leaves nothing of its own
    finally:
        census.close()
