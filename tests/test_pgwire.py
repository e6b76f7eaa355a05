"""The wire framer on recorded sessions (tests/data/*.bin, recorded through the tracer from a real
PostgreSQL 15: psycopg with SCRAM and named statements, asyncpg, and psycopg over TLS), fed in every
possible split: the messages must not depend on where the network cut the stream."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.proxies.pgwire import Framer, Message, error_fields, error_response, startup_message, startup_params
from lab.proxies.tracer import ConnectionTrace, Session

DATA = Path(__file__).parent / "data"
PLAIN = ["psycopg", "asyncpg"]


def _stream(name: str, side: str) -> bytes:
    return (DATA / f"{name}.{side}.bin").read_bytes()


def _frame(side: str, chunks: list[bytes]) -> list[Message]:
    framer = Framer(side)
    out: list[Message] = []
    for chunk in chunks:
        out.extend(framer.feed(chunk))
    assert not framer.buffer, "bytes left over at the end of a complete stream"
    return out


@pytest.mark.parametrize("name", PLAIN)
@pytest.mark.parametrize("side", ["client", "server"])
def test_every_split_point_gives_the_same_messages(name: str, side: str) -> None:
    data = _stream(name, side)
    whole = _frame(side, [data])
    assert whole and all(not m.kind.startswith("Unknown") for m in whole)
    for i in range(1, len(data)):
        assert _frame(side, [data[:i], data[i:]]) == whole, f"split at byte {i}"
    assert _frame(side, [data[i : i + 1] for i in range(len(data))]) == whole  # one byte at a time


def test_what_the_recorded_psycopg_session_contains() -> None:
    trace = ConnectionTrace(1)
    session = Session(trace)
    session.observe("client", _stream("psycopg", "client"))
    session.observe("server", _stream("psycopg", "server"))
    assert trace.startup["user"] == "lab_app" and trace.startup["database"] == "postgres"
    assert trace.auth_requests == [10, 11, 12, 0]  # SASL, SASLContinue, SASLFinal, Ok: SCRAM once, at connect
    assert trace.client["PasswordMessage"] == 2
    assert trace.statement_names == ["_pg3_0", "_pg3_1"]
    assert trace.errors == [("22012", "division by zero")]


def test_tls_session_becomes_opaque_after_the_answer() -> None:
    client, server = _stream("psycopg-tls", "client"), _stream("psycopg-tls", "server")
    for i in range(1, 9):  # the 8-byte SSLRequest itself, split anywhere
        trace = ConnectionTrace(1)
        session = Session(trace)
        session.observe("client", client[:i])
        session.observe("client", client[i:8])
        for j in range(0, len(server), 97):
            session.observe("server", server[j : j + 97])
        session.observe("client", client[8:])
        assert trace.client["SSLRequest"] == 1 and trace.tls
        assert trace.client["Startup"] == 0 and not trace.errors  # nothing read from inside TLS


def test_startup_and_error_round_trip() -> None:
    params = {"user": "lab_app.tenant", "database": "postgres", "options": "-c jit=off"}
    msg = _frame("client", [startup_message(params)])[0]
    assert msg.kind == "Startup" and startup_params(msg) == params
    server = Framer("server")
    err = server.feed(error_response("FATAL", "XX000", "(ENOTFOUND) tenant/user x.y not found"))[0]
    assert err.kind == "ErrorResponse" and error_fields(err)["C"] == "XX000"


def test_supavisor_options_parsing_follows_its_source() -> None:
    """The examples of Supavisor's StartupOptions.parse doc (lib/supavisor/protocol/startup_options.ex), and its escapes."""
    from lab.proxies.tenant import parse_options

    assert parse_options("-c search_path=public -c work_mem=64MB") == {"search_path": "public", "work_mem": "64MB"}
    assert parse_options("--search_path=public") == {"search_path": "public"}
    assert parse_options("-c search_path=schemaA,\\ schemaB stray -c") == {"search_path": "schemaA, schemaB"}
    assert parse_options("-c jit=off") == {"jit": "off"}


def test_the_router_forwards_what_supavisor_forwards() -> None:
    """Supavisor's db_handler.ex send_startup: user, database (and the application_name SET in session mode); the rest
    is accepted, never refused, never forwarded."""
    from lab.proxies.tenant import supavisor_startup

    asked = {
        "user": "lab_app.ref",
        "database": "postgres",
        "jit": "off",
        "options": "-c jit=off",
        "application_name": "bot",
        "client_encoding": "UTF8",
    }
    sent, dropped = supavisor_startup(asked, "lab_app", session=False)
    assert sent == {"user": "lab_app", "database": "postgres"}
    assert dropped == ["application_name", "client_encoding", "jit", "options(jit)"]
    sent, dropped = supavisor_startup(asked, "lab_app", session=True)
    assert sent == {"user": "lab_app", "database": "postgres", "application_name": "bot"}
