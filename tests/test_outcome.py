"""Outcome classification, on exceptions raised by real drivers against the real server."""

from __future__ import annotations

import asyncio

import asyncpg
import psycopg
import psycopg2
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from lab.results.outcome import Outcome, PhaseError, WrongResult, classify, first_line


def test_asyncpg_server_error(topology) -> None:
    async def go() -> None:
        conn = await asyncpg.connect(topology.endpoint("direct").dsn())
        try:
            await conn.fetch("SELECT 1/0")
        finally:
            await conn.close()

    with pytest.raises(asyncpg.PostgresError) as info:
        asyncio.run(go())
    out = classify(PhaseError("first query", info.value), iteration=1)
    assert out == Outcome("error", "asyncpg.DivisionByZeroError", "22012", "division by zero", "first query", 1)


def test_psycopg2_error_uses_pgcode(topology) -> None:
    with (
        psycopg2.connect(topology.endpoint("direct").dsn()) as conn,
        conn.cursor() as cur,
        pytest.raises(psycopg2.Error) as info,
    ):
        cur.execute("SELECT * FROM no_such_table")
    conn.close()
    out = classify(info.value)
    assert (out.kind, out.error_class, out.sqlstate) == ("error", "psycopg2.UndefinedTable", "42P01")
    assert out.message == 'relation "no_such_table" does not exist'


def test_sqlalchemy_wrapper_reports_the_driver_sqlstate(topology) -> None:
    async def go() -> None:
        engine = create_async_engine(
            topology.endpoint("direct").dsn().replace("postgresql://", "postgresql+psycopg://")
        )
        try:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT CAST('x' AS integer)"))
        finally:
            await engine.dispose()

    with pytest.raises(Exception) as info:
        asyncio.run(go())
    out = classify(info.value)
    assert out.error_class == "sqlalchemy.DataError"
    assert out.sqlstate == "22P02"
    assert out.message.startswith("invalid input syntax for type integer")
    assert out.detail.startswith("psycopg.InvalidTextRepresentation")


def test_wrong_password_through_pgbouncer_is_a_connect_error(topology) -> None:
    """libpq reports connection failures as text only, so psycopg gives no SQLSTATE here."""
    with pytest.raises(psycopg.OperationalError) as info:
        psycopg.connect(topology.endpoint("pgbouncer-session").dsn(password="wrong"), connect_timeout=5)
    out = classify(PhaseError("connect", info.value))
    assert out.kind == "error" and out.phase == "connect"
    assert out.error_class == "psycopg.OperationalError" and out.sqlstate is None
    assert out.message.endswith("FATAL:  SASL authentication failed")  # PgBouncer's own wording


def test_timeout_and_wrong_result() -> None:
    assert classify(TimeoutError()).kind == "timeout"
    out = classify(
        PhaseError("later query", WrongResult("SELECT n * 2: got [(3,)], expected [(4,)]\nmore")), iteration=2
    )
    assert out == Outcome(
        "wrong-result", phase="later query", iteration=2, detail="SELECT n * 2: got [(3,)], expected [(4,)]"
    )


def test_wrong_result_carries_what_was_asked_and_what_came() -> None:
    out = classify(PhaseError("later query", WrongResult("worker 10's SELECT", [(20022,)], [(20012,)])))
    assert (out.kind, out.expected, out.received) == ("wrong-result", "[[20012]]", "[[20022]]")
    assert Outcome.from_dict(out.to_dict()) == out
    # rows written before the fields existed still read
    assert Outcome.from_dict(
        {
            "kind": "ok",
            "error_class": None,
            "sqlstate": None,
            "message": None,
            "phase": None,
            "iteration": None,
            "detail": None,
        }
    ) == Outcome("ok")


def test_first_line_and_summary() -> None:
    assert first_line("  a\nb ") == "a"
    o = Outcome("error", "asyncpg.X", "26000", 'prepared statement "s" does not exist', "later query")
    assert o.summary() == 'error at later query: asyncpg.X [26000]: prepared statement "s" does not exist'
    assert Outcome.from_dict(o.to_dict()) == o


def test_nested_phase_marks_unwrap_to_the_driver_error() -> None:
    """A pool that marks its own connect failure, inside the harness's connect mark: the row names the pool's error."""
    out = classify(PhaseError("connect", PhaseError("connect", TimeoutError("pool gave up"))))
    assert out.phase == "connect" and out.kind == "timeout"
    inner = ValueError("bad")
    out = classify(PhaseError("later query", PhaseError("commit", inner)))
    assert (out.phase, out.error_class) == ("commit", "ValueError")
