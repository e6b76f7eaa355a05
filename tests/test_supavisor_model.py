"""The model of Supavisor held to Supavisor's own tests, and to what the issue asks of it on the wire.

The unit tests port the assertions of Supavisor's test files, each citing the test it ports
(`file:line @ tag`, the v2.9.10 line; the same assertions hold at main). The integration tests run the
model in this process in front of the test topology's PostgreSQL and speak to it with real drivers.
"""

from __future__ import annotations

import asyncio
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg
import psycopg
import pytest

from lab.proxies.pgwire import Message
from lab.proxies.supavisor import errors, sql
from lab.proxies.supavisor.model import Model, Settings
from lab.proxies.supavisor.prepared import (
    BACKEND_LIMIT,
    MEMORY_LIMIT,
    ClientStatements,
    ServerStatements,
    translate,
)
from lab.proxies.supavisor.scram import Secret
from lab.topology.ports import HOST
from lab.topology.supavisor_releases import RELEASES

TENANT = "labtenant"


def _msg(mtype: bytes, body: bytes) -> Message:
    return Message("", mtype, body)


def _server(mtype: bytes, body: bytes = b"") -> Message:
    return Message("", mtype, body)


# -- test/supavisor/protocol/prepared_statements_test.exs @ v2.9.10 ---------------------------------------------


def test_unnamed_parse_passes_untouched() -> None:
    """prepared_statements_test.exs:17 "handles unnamed prepared statements": output == <<?P,16::32,0,"select 1",0,0,0>>."""
    storage = ClientStatements()
    out = translate(_msg(b"P", b"\0select 1\0\0\0"), storage)
    assert out.packet == b"P" + struct.pack("!i", 16) + b"\0select 1\0\0\0" and storage.names == {}


def test_close_pops_the_mapping_and_translates_the_name() -> None:
    """prepared_statements_test.exs:31 "handles close": storage empty; {:close_pkt, "server_stmt", <<?C,_,?S,"server_stmt",0>>}."""
    storage = ClientStatements({"test_stmt": ("server_stmt", b"P")})
    out = translate(_msg(b"C", b"Stest_stmt\0"), storage)
    assert storage.names == {} and (out.kind, out.server_name) == ("close", "server_stmt")
    assert out.packet[5:] == b"Sserver_stmt\0"


def test_a_close_of_an_unknown_name_is_no_error() -> None:
    """prepared_statements.ex:145-167: Close 'S' of a name the client never prepared becomes "supavisor_none"."""
    out = translate(_msg(b"C", b"Snever\0"), ClientStatements())
    assert out.packet[5:] == b"Ssupavisor_none\0"


def test_a_named_parse_is_renamed_and_stored() -> None:
    """prepared_statements_test.exs:52 "handles named parse": the stored name starts with "sv_"; the packet is the
    rewritten Parse and is what storage keeps for replay."""
    storage = ClientStatements()
    out = translate(_msg(b"P", b"test_stmt\0select 1\0\0\0"), storage)
    server_name, parse_pkt = storage.names["test_stmt"]
    assert server_name.startswith("sv_") and out.server_name == server_name
    assert out.packet == parse_pkt and out.packet[5:] == server_name.encode() + b"\0select 1\0\0\0"


def test_a_bind_is_renamed_and_carries_its_parse() -> None:
    """prepared_statements_test.exs:79 "handles bind": {:bind_pkt, "server_stmt", <<?B,_,0,"server_stmt",0,...>>, parse_pkt}."""
    storage = ClientStatements({"test_stmt": ("server_stmt", b"Pparse")})
    out = translate(_msg(b"B", b"\0test_stmt\0" + b"\0" * 8), storage)
    assert (out.kind, out.server_name, out.parse_pkt) == ("bind", "server_stmt", b"Pparse")
    assert out.packet[5:] == b"\0server_stmt\0" + b"\0" * 8
    assert struct.unpack("!i", out.packet[1:5])[0] == len(out.packet) - 1


def test_a_describe_is_renamed() -> None:
    """prepared_statements_test.exs:103 "handles describe": {:describe_pkt, "server_stmt", <<?D,_,?S,"server_stmt",0>>}."""
    storage = ClientStatements({"test_stmt": ("server_stmt", b"Pparse")})
    out = translate(_msg(b"D", b"Stest_stmt\0"), storage)
    assert (out.kind, out.packet[5:]) == ("describe", b"Sserver_stmt\0")


@pytest.mark.parametrize("mtype, body", [(b"B", b"\0test_stmt\0\0\0\0\0\0\0\0\0"), (b"D", b"Stest_stmt\0")])
def test_an_unknown_name_is_prepared_statement_not_found(mtype: bytes, body: bytes) -> None:
    """prepared_statements_test.exs:126 "returns error for bind with unknown statement" and :136 (describe):
    PreparedStatementNotFoundError{name: "test_stmt"}; 26000 on the wire (its postgres_error override)."""
    with pytest.raises(errors.SupavisorError) as raised:
        translate(_msg(mtype, body), ClientStatements())
    assert (raised.value.code, raised.value.sqlstate) == ("EPREPAREDNOTFOUND", "26000")
    assert raised.value.message(RELEASES["2.9"]) == '(EPREPAREDNOTFOUND) prepared statement "test_stmt" does not exist'


def test_an_unnamed_describe_passes() -> None:
    """prepared_statements_test.exs:146 "handles unnamed describe": <<?D,6::32,?S,0>> unchanged."""
    out = translate(_msg(b"D", b"S\0"), ClientStatements())
    assert out.packet == b"D" + struct.pack("!i", 6) + b"S\0"


def test_the_hundred_and_first_statement_is_refused() -> None:
    """prepared_statements_test.exs:160 "returns error when max prepared statements limit reached"."""
    storage = ClientStatements({f"q_{i}": (f"sv_{i}", b"P") for i in range(100)})
    with pytest.raises(errors.SupavisorError) as raised:
        translate(_msg(b"P", b"q_err\0select 1\0\0\0"), storage)
    assert raised.value.code == "EMAXPREPARED"
    assert "max prepared statements limit reached" in raised.value.message(RELEASES["2.9"])


def test_a_duplicate_name_is_refused() -> None:
    """prepared_statements_test.exs:181 "returns error for duplicate prepared statement": name "stmt"; 42P05."""
    storage = ClientStatements({"stmt": ("sv_x", b"P")})
    with pytest.raises(errors.SupavisorError) as raised:
        translate(_msg(b"P", b"stmt\0select 1\0\0\0"), storage)
    assert (raised.value.code, raised.value.sqlstate) == ("EPREPAREDDUP", "42P05")


def test_the_memory_limit_is_strictly_greater_than() -> None:
    """prepared_statements_test.exs:197 "returns error when memory limit reached": one stored Parse of exactly
    1,000,000 bytes was accepted (the check is strictly `>`); the next is refused."""
    storage = ClientStatements()
    storage.put("big", "sv_big", b"x" * MEMORY_LIMIT)
    with pytest.raises(errors.SupavisorError) as raised:
        translate(_msg(b"P", b"test_stmt\0select 1\0\0\0"), storage)
    assert raised.value.code == "EMAXPREPAREDMEM"
    assert "Limit: 1.0MB per connection" in raised.value.message(RELEASES["2.9"])


# -- test/supavisor/protocol/frontend_message_handler_test.exs @ v2.9.10 ----------------------------------------


@pytest.mark.parametrize("query", ["PREPARE stmt AS SELECT 1", "EXECUTE stmt(1)", "DEALLOCATE stmt", "DEALLOCATE ALL"])
def test_prepared_statement_commands_on_the_simple_protocol_are_refused(query: str) -> None:
    """frontend_message_handler_test.exs:49 "rejects PREPARE, EXECUTE and DEALLOCATE in simple query"."""
    assert sql.refuses_simple_query(query)


@pytest.mark.parametrize(
    "query, refused",
    [
        ("SELECT 1", False),  # :74 "allows simple query"
        ("SELECT 1; PREPARE stmt AS SELECT 2", True),  # :86 "rejects a multi-statement query with PREPARE"
        ("SELECT 1; SELECT 2; SELECT 3", False),  # :97 "allows multiple simple statements"
        ("EXPLAIN EXECUTE stmt", False),  # simple_query_handler.ex: only top-level statement types are checked
        ("SELECT 'PREPARE x'; -- EXECUTE y", False),
        ("/* PREPARE */ SELECT $$; EXECUTE z; $$", False),
    ],
)
def test_only_top_level_prepared_statement_commands_are_refused(query: str, refused: bool) -> None:
    assert sql.refuses_simple_query(query) is refused


# -- test/supavisor/protocol/backend_message_handler_test.exs @ v2.9.10 -----------------------------------------


@pytest.mark.parametrize("mtype", [b"1", b"3", b"t", b"Z"])
def test_with_no_actions_server_messages_pass(mtype: bytes) -> None:
    """backend_message_handler_test.exs:16, :30, :44, :58: ParseComplete, CloseComplete, ParameterDescription,
    ReadyForQuery pass through."""
    msg = _server(mtype, b"I" if mtype == b"Z" else b"")
    assert ServerStatements().incoming(msg) == msg.encode()


@pytest.mark.parametrize("mtype, what", [(b"1", "parse"), (b"3", "close")])
def test_an_intercept_action_swallows_its_message(mtype: bytes, what: str) -> None:
    """backend_message_handler_test.exs:72 and :95: {:intercept, :parse | :close} gives <<>>."""
    statements = ServerStatements()
    statements.actions.append(("intercept", what))
    assert statements.incoming(_server(mtype)) == b"" and not statements.actions


def test_an_inject_action_puts_a_parse_complete_before_the_next_message() -> None:
    """backend_message_handler_test.exs:206: {:inject, :parse} before ParameterDescription gives <<?1,4::32>> <> t."""
    statements = ServerStatements()
    statements.actions.append(("inject", "parse"))
    t = _server(b"t", b"\0\0")
    assert statements.incoming(t) == b"1\x00\x00\x00\x04" + t.encode()


def test_an_inject_then_a_forward_keep_their_order() -> None:
    """backend_message_handler_test.exs:229: [{:inject,:parse}, {:forward,:close}]: t gives 1+t and leaves the
    forward; then CloseComplete is forwarded."""
    statements = ServerStatements()
    statements.actions.extend([("inject", "parse"), ("forward", "close")])
    t = _server(b"t", b"\0\0")
    assert statements.incoming(t) == b"1\x00\x00\x00\x04" + t.encode()
    assert list(statements.actions) == [("forward", "close")]
    assert statements.incoming(_server(b"3")) == _server(b"3").encode() and not statements.actions


def test_a_parse_complete_passes_an_intercept_of_close() -> None:
    """backend_message_handler_test.exs:265: with {:intercept, :close} queued a ParseComplete is forwarded and the
    action is kept for later."""
    statements = ServerStatements()
    statements.actions.append(("intercept", "close"))
    assert statements.incoming(_server(b"1")) == _server(b"1").encode()
    assert list(statements.actions) == [("intercept", "close")]


def test_eviction_closes_a_fifth_at_the_backend_limit() -> None:
    """prepared_statements_test.exs:74 "prepared statement soft limit (backend)" in unit form: at 200 statements on a
    server connection 40 are closed and their CloseCompletes swallowed (db_handler.ex:350-369 @ v2.8.8)."""
    statements = ServerStatements(prepared={f"sv_{i}" for i in range(BACKEND_LIMIT)})
    out = statements.evictions()
    assert out.count(b"C") >= BACKEND_LIMIT // 5 and len(statements.prepared) == BACKEND_LIMIT - BACKEND_LIMIT // 5
    assert list(statements.actions) == [("intercept", "close")] * (BACKEND_LIMIT // 5)


# -- test/supavisor/protocol/server_test.exs and proxy_test.exs: the errors on the wire --------------------------


def test_error_framing_per_release() -> None:
    """server_test.exs:178 (v2.8 error_message: S, V, C, M) and :190 (v2.9 encode_error_message: keys sorted C, M, S)."""
    error = errors.wrong_password("postgres")
    v28, v29 = error.encode(RELEASES["2.8"]), error.encode(RELEASES["2.9"])
    assert v28[5:] == b'SFATAL\0VFATAL\0C28P01\0Mpassword authentication failed for user "postgres"\0\0'
    assert v29[5:] == b'C28P01\0Mpassword authentication failed for user "postgres"\0SFATAL\0\0'


def test_tenant_not_found_texts_per_release() -> None:
    """proxy_test.exs:65 "tenant or user not found" (v2.9.0+): "(ENOTFOUND) tenant/user postgres.nonexistent_tenant
    not found", FATAL XX000; v2.8: "Tenant or user not found" (client_handler/error.ex:103-116 @ v2.8.8)."""
    error = errors.tenant_or_user_not_found("postgres", "nonexistent_tenant")
    assert error.message(RELEASES["2.9"]) == "(ENOTFOUND) tenant/user postgres.nonexistent_tenant not found"
    assert error.message(RELEASES["2.8"]) == "Tenant or user not found" and error.sqlstate == "XX000"


def test_the_simple_query_refusal_text_per_release() -> None:
    """integration/prepared_statements_test.exs:169 "prepared statements error on simple query protocol": the expected
    message at v2.9.10 and at v2.8.8 (:171)."""
    error = errors.simple_query_prepare()
    assert error.message(RELEASES["2.9"]) == (
        "(EPSSIMPLEQUERY) transaction mode only supports prepared statements using the Extended Query Protocol"
    )
    assert error.message(RELEASES["2.8"]) == (
        "Supavisor transaction mode only supports prepared statements using the Extended Query Protocol"
    )


def test_ready_for_query() -> None:
    """server_test.exs:215: ready_for_query() == <<90,0,0,0,5,73>>."""
    assert errors.ready_for_query() == bytes([90, 0, 0, 0, 5, 73])


@pytest.mark.parametrize(
    "query, leak",
    [
        ("SET statement_timeout = 5", "session_set"),
        ("SET LOCAL statement_timeout = 5", None),
        ("SELECT set_config('a.b', 'c', false)", "set_config"),
        ("SELECT set_config('a.b', 'c', true)", None),
        ("SELECT pg_advisory_lock(1)", "advisory_lock"),
        ("SELECT pg_advisory_xact_lock(1)", None),
        ("LISTEN x", "listen"),
        ("CREATE TEMP TABLE t (x int)", "temp_table"),
        ("CREATE TEMP TABLE t (x int) ON COMMIT DROP", None),
        ("DECLARE c CURSOR WITH HOLD FOR SELECT 1", "hold_cursor"),
        ("DISCARD ALL", "discard"),
        ("SELECT 1", None),
    ],
)
def test_session_leaks_as_pr_1113_names_them(query: str, leak: str | None) -> None:
    """PR #1113's session_leak NIF (native/pgparser/src/lib.rs), statement by statement."""
    assert sql.session_leak(query) == leak


# -- the model on the wire, in front of the test topology's PostgreSQL ------------------------------------------


@contextmanager
def model_running(topology, **settings: object) -> Iterator[tuple[Model, int, int]]:  # type: ignore[no-untyped-def]
    """The model on its own loop in a thread, with the server's stored SCRAM secrets (what auth_query returns)."""
    direct = topology.endpoint("direct")
    with psycopg.connect(topology.admin_dsn(), autocommit=True) as conn:
        stored = dict(conn.execute("SELECT rolname, rolpassword FROM pg_authid WHERE rolname = %s", [direct.user]))
    model = Model(
        Settings(
            release=RELEASES[str(settings.pop("release", "2.9"))],
            tenant=TENANT,
            server=(direct.host, direct.port),
            secrets={role: Secret.parse(secret) for role, secret in stored.items()},
            **settings,  # type: ignore[arg-type]
        )
    )
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    servers = asyncio.run_coroutine_threadsafe(model.serve(HOST, 0, 0), loop).result(10)
    ports = [s.sockets[0].getsockname()[1] for s in servers]
    try:
        yield model, ports[0], ports[1]
    finally:

        async def stop() -> None:
            for s in servers:
                s.close()
            for task in [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]:
                task.cancel()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def _dsn(topology, port: int, tenant: str = TENANT) -> str:  # type: ignore[no-untyped-def]
    direct = topology.endpoint("direct")
    return direct.via(port, plain=True).dsn(user=f"{direct.user}.{tenant}")


def test_switch_on_prepare_over_the_simple_protocol_is_fatal_and_closes(topology) -> None:  # type: ignore[no-untyped-def]
    """integration/prepared_statements_test.exs:169: PREPARE / EXECUTE / DEALLOCATE over the simple protocol get
    (EPSSIMPLEQUERY), FATAL, and the connection is closed; :194 plain statements work."""
    with model_running(topology, named_prepared_statements=True) as (_, tx, _s):
        with psycopg.connect(_dsn(topology, tx), autocommit=True) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        for query in ("PREPARE q0 AS SELECT $1", "SELECT 1; PREPARE stmt AS SELECT 2", "DEALLOCATE ALL"):
            with psycopg.connect(_dsn(topology, tx), autocommit=True) as conn:
                with pytest.raises(psycopg.Error, match=r"\(EPSSIMPLEQUERY\)") as raised:
                    conn.execute(query)
                assert raised.value.sqlstate == "XX000"
                with pytest.raises(psycopg.OperationalError):  # FATAL: the model closed the connection
                    conn.execute("SELECT 1")


def test_switch_on_a_duplicate_parse_is_fatal(topology) -> None:  # type: ignore[no-untyped-def]
    """A Parse under a name the client holds already: (EPREPAREDDUP) 42P05, FATAL, closed (duplicate_prepared_
    statement_error.ex; prepared_statements_test.exs:181 in unit form)."""

    async def scenario(port: int) -> BaseException:
        conn = await asyncpg.connect(_dsn(topology, port), statement_cache_size=0)
        try:
            await conn.prepare("SELECT 1", name="dup")
            await conn.prepare("SELECT 2", name="dup")
        except BaseException as exc:
            return exc
        finally:
            await conn.close()
        raise AssertionError("the second Parse of one name was accepted")

    with model_running(topology, named_prepared_statements=True) as (_, tx, _s):
        error = asyncio.run(scenario(tx))
    # asyncpg reports a FATAL after which the server closed the connection as the closed connection (08003), with the
    # server's text: what an application prints
    assert '(EPREPAREDDUP) prepared statement "dup" already exists' in str(error)
    assert getattr(error, "sqlstate", None) in ("42P05", "08003")


def test_a_wrong_project_ref_is_refused_after_the_releases_delay(topology) -> None:  # type: ignore[no-untyped-def]
    """proxy_test.exs:65: (ENOTFOUND) FATAL XX000, held back 500 ms (client_handler/error.ex:41-43 @ v2.9.10)."""
    with model_running(topology) as (_, tx, _s):
        started = time.monotonic()
        with pytest.raises(psycopg.OperationalError, match=r"\(ENOTFOUND\) tenant/user \S+\.someoneelse not found"):
            psycopg.connect(_dsn(topology, tx, tenant="someoneelse"), connect_timeout=5)
        waited = time.monotonic() - started
    assert waited >= 0.5, f"answered after {waited:.3f}s, not held back 500 ms"


def test_switch_off_asyncpg_defaults_fail_as_through_pgbouncer_without_tracking(topology) -> None:  # type: ignore[no-untyped-def]
    """With the switch off every message passes untranslated: asyncpg's named statement, prepared in one transaction
    and executed in the next, meets a server connection without it: the server's own 26000, the connection open."""

    async def scenario(port: int) -> BaseException | None:
        pool = await asyncpg.create_pool(_dsn(topology, port), min_size=2, max_size=2)
        try:
            async with pool.acquire() as a, pool.acquire() as b:
                async with a.transaction():
                    await a.fetchval("SELECT pg_backend_pid()")  # a pins a server connection meanwhile
                    await b.fetchval("SELECT $1::int", 1)  # b prepares on the other one
                await b.fetchval("SELECT $1::int", 2)  # b's cached statement, on the one a released last
        except BaseException as exc:
            return exc
        finally:
            await pool.close()
        return None

    with model_running(topology) as (model, tx, _s):
        error = asyncio.run(scenario(tx))
    assert error is not None and getattr(error, "sqlstate", None) == "26000", error
    assert not any("FATAL" in e for e in model.events), "the model refused nothing itself"


def test_session_mode_keeps_a_server_connection_per_client_and_discards_it_after(topology) -> None:  # type: ignore[no-untyped-def]
    """Session mode: SQL PREPARE works as against the server; the next client on the same server connection finds
    nothing (DISCARD ALL, client_handler.ex:750-769 @ v2.9.10)."""
    with model_running(topology, named_prepared_statements=True) as (_, _tx, session):
        with psycopg.connect(_dsn(topology, session), autocommit=True) as conn:
            conn.execute("PREPARE lab_s AS SELECT 42")
            assert conn.execute("EXECUTE lab_s").fetchone() == (42,)
            pid = conn.execute("SELECT pg_backend_pid()").fetchone()
        time.sleep(0.2)
        with psycopg.connect(_dsn(topology, session), autocommit=True) as conn:
            assert conn.execute("SELECT pg_backend_pid()").fetchone() == pid, "the pool reused its server connection"
            assert conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchone() == (0,)


def test_switch_on_a_pipelined_batch_leaves_every_server_connection_to_the_pool(topology) -> None:  # type: ignore[no-untyped-def]
    """psycopg's executemany (pipeline mode, prepared after prepare_threshold) from four client connections on a
    pool of two, switch on: some clients are left waiting (a dropped Parse's ParseComplete is injected only before
    a ParseComplete, CloseComplete, ParameterDescription or ReadyForQuery, so a BindComplete comes first); once they
    give up and leave, the pool hands out both server connections again."""

    async def batch(port: int, worker: int) -> BaseException | None:
        try:
            conn = await psycopg.AsyncConnection.connect(_dsn(topology, port), autocommit=True)
            async with conn, conn.cursor() as cur:
                for op in range(3):
                    await asyncio.wait_for(
                        cur.executemany(
                            "SELECT %s::text, %s::int", [(f"w{worker}-{op}-{k}", k) for k in range(5)], returning=True
                        ),
                        3,
                    )
        except (psycopg.Error, TimeoutError) as exc:
            return exc
        return None

    async def scenario(port: int) -> list[BaseException | None]:
        return await asyncio.gather(*(batch(port, w) for w in range(4)))

    with model_running(topology, named_prepared_statements=True, pool_size=2, checkout_timeout_s=1.0) as (_, tx, _s):
        asyncio.run(asyncio.wait_for(scenario(tx), 30))
        conns = [psycopg.connect(_dsn(topology, tx), connect_timeout=5) for _ in range(2)]
        try:
            for conn in conns:  # a transaction each, kept open: two server connections at once
                assert conn.execute("SELECT 1").fetchone() == (1,)
        finally:
            for conn in conns:
                conn.close()
