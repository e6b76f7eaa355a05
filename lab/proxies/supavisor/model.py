"""A model of Supavisor's client-facing behaviour: a pooler on the PostgreSQL wire protocol, in one asyncio loop.

What it does, and where each behaviour comes from (Supavisor's source; lab/topology/supavisor_releases.py
names the release lines, and /docs/supavisor-model.md the whole mapping):

- Tenants: a client logs in as `<role>.<tenant>`; an unknown tenant, a missing one and an unknown role are
  refused with Supavisor's errors (errors.py), tenant-not-found and wrong password after the release's
  delay (500 ms from v2.9.3).
- Authentication: SCRAM-SHA-256 with the roles' secrets, the ClientKey of the first client kept to log in to
  the server as the pool's connections (scram.py; client_handler/auth_methods/scram.ex).
- Pooling (the model's own, not PgBouncer's): a pool per role and database of `pool_size` server connections,
  reused last in, first out (Supavisor's pools are poolboy's, LIFO: manager.ex / tenant supervisor), a
  checkout timeout answered with (ECHECKOUTTIMEOUT).
  - transaction mode: a server connection per transaction, released when a read from it ends with
    ReadyForQuery 'I' (v2.8, v2.9), or when every ReadyForQuery the client asked for has come (2.10);
  - session mode: one per client for its life; at the end DISCARD ALL and back to the pool (v2.9+), or
    closed (v2.8). No translation and no checks in session mode (protocol_helpers.ex:104-106 @ v2.8.8).
- Named prepared statements in transaction mode behind the switch (NAMED_PREPARED_STATEMENTS_ENABLED,
  default off: config/runtime.exs @ v2.9.10): off, every message passes untouched (the server's own 42P05 and
  26000 reach the client, the connection stays open); on, prepared.py's translation and replay, and the
  simple-query refusal of PREPARE / EXECUTE / DEALLOCATE (sql.py), every error FATAL and the connection
  closed (its server connection too: the DbHandler is linked to the ClientHandler, db_handler.ex:411-421).
- 2.10 (provisional): txn_mode_leak_action ignore | log | error (PR #1113).

Startup parameters follow lab.proxies.tenant.supavisor_startup: only user, database and (session mode)
application_name reach the server; every other one is accepted and dropped.
"""

from __future__ import annotations

import asyncio
import logging
import secrets as random_bytes
import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from lab.proxies.pgwire import Framer, Message, error_fields, startup_message, startup_params
from lab.proxies.supavisor import errors, sql
from lab.proxies.supavisor.errors import SupavisorError
from lab.proxies.supavisor.prepared import ClientStatements, ServerStatements, Translated, translate
from lab.proxies.supavisor.scram import ClientExchange, Secret, ServerExchange
from lab.proxies.tenant import supavisor_startup
from lab.topology.supavisor_releases import Release

log = logging.getLogger("supavisor-model")
LEAK_ACTIONS = ("ignore", "log", "error")


@dataclass(frozen=True, repr=False)
class Settings:
    release: Release
    tenant: str
    server: tuple[str, int]
    secrets: dict[str, Secret]  # role -> its SCRAM secret (what the tenant's auth_query returns)
    named_prepared_statements: bool = False
    leak_action: str = "ignore"
    refusal_delay_s: float | None = None  # None: the release's own
    pool_size: int = 2
    #: session mode holds a server connection per client: as many clients as this, the next refused
    session_pool_size: int = 5
    checkout_timeout_s: float = 5.0

    def __repr__(self) -> str:
        return f"Settings({self.describe()})"

    @property
    def delay_s(self) -> float:
        return self.release.refusal_delay_s if self.refusal_delay_s is None else self.refusal_delay_s

    def describe(self) -> str:
        parts = [self.release.label, f"named_prepared_statements={'on' if self.named_prepared_statements else 'off'}"]
        if self.release.has_leak_action:
            parts.append(f"txn_mode_leak_action={self.leak_action}")
        parts.append(f"refusal delay {self.delay_s * 1000:g} ms")
        return ", ".join(parts)


class Closed(Exception):
    """The peer went away."""


class ServerRefused(ConnectionError):
    """The server refused a login of the pool's (an unknown database, say): its SQLSTATE and text."""

    def __init__(self, sqlstate: str, text: str) -> None:
        super().__init__(text)
        self.code, self.sqlstate, self.text = "EDBHANDLEREXITED", sqlstate, text


@dataclass(eq=False)
class ServerConnection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    framer: Framer
    statements: ServerStatements = field(default_factory=ServerStatements)
    parameters: dict[str, str] = field(default_factory=dict)
    status: bytes = b"I"
    #: while idle in the pool: a read that ends when the server says anything (it only does when it ends the
    #: connection: an administrator's pg_terminate_backend, a restart); such a connection is not handed out again
    watch: asyncio.Task[bytes] | None = None

    def idle(self) -> None:
        self.watch = asyncio.ensure_future(self.reader.read(65536))

    async def wake(self) -> bool:
        """Out of the pool: True when it is still good (the server said nothing meanwhile)."""
        watch, self.watch = self.watch, None
        if watch is None:
            return True
        if not watch.done():
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)
            return not watch.done() or watch.cancelled()
        return False

    async def messages(self) -> list[Message]:
        data = await self.reader.read(65536)
        if not data:
            raise Closed("the server closed the connection")
        return self.framer.feed(data)

    def close(self) -> None:
        try:
            self.writer.write(b"X\x00\x00\x00\x04")
            self.writer.close()
        except Exception:  # already gone
            pass


async def open_server_connection(
    host: str, port: int, params: dict[str, str], client_key: bytes, secret: Secret
) -> ServerConnection:
    """Log in to the server as the client would, with its ClientKey (SCRAM pass-through)."""
    reader, writer = await asyncio.open_connection(host, port)
    conn = ServerConnection(reader, writer, Framer("server", started=True))
    writer.write(startup_message(params))
    exchange = ClientExchange(client_key, secret)
    while True:
        for msg in await conn.messages():
            if msg.type == b"R":
                code = struct.unpack("!i", msg.body[:4])[0]
                if code == 10:
                    writer.write(exchange.initial())
                elif code == 11:
                    writer.write(exchange.respond(msg.body[4:]))
                elif code == 12 and not exchange.verify(msg.body[4:]):
                    writer.close()
                    raise ConnectionError("the server's SCRAM signature does not match")
            elif msg.type == b"E":
                writer.close()
                fields = error_fields(msg)
                raise ServerRefused(fields.get("C", "XX000"), fields.get("M", "the server refused the login"))
            elif msg.type == b"S":
                name, value = msg.cstrings()[:2]
                conn.parameters[name] = value
            elif msg.type == b"Z":
                return conn


class Pool:
    """One pool per role and database: at most `size` server connections; a returned one goes to the client that
    has waited longest, else on top of the idle ones, which are handed out last in, first out (poolboy, which
    Supavisor's pools are, queues waiting checkouts and keeps its workers LIFO)."""

    def __init__(self, size: int, opener: Callable[[], asyncio.Future[ServerConnection]]) -> None:
        self.size, self.opener = size, opener
        self.idle: list[ServerConnection] = []
        self.waiters: deque[asyncio.Future[ServerConnection]] = deque()
        self.opening: set[asyncio.Task[None]] = set()
        self.count = 0
        self.parameters: dict[str, str] = {}
        self.clients = 0  # session mode: the clients that hold (or wait for) a server connection

    async def checkout(self, timeout: float) -> ServerConnection:
        while self.idle:
            conn = self.idle.pop()
            if await conn.wake():
                return conn
            conn.close()  # the server ended it while it was idle: the pool opens another
            self.count -= 1
        if self.count < self.size:
            self.count += 1
            try:
                conn = await self.opener()
            except BaseException:
                self.count -= 1
                self._hand_on()
                raise
            self.parameters = self.parameters or dict(conn.parameters)
            return conn
        waiter: asyncio.Future[ServerConnection] = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        try:
            conn = await asyncio.wait_for(asyncio.shield(waiter), timeout)
        except TimeoutError:
            if waiter.done() and not waiter.cancelled():  # handed over just as the wait ended: keep it
                return waiter.result()
            waiter.cancel()
            raise
        if not await conn.wake():
            conn.close()
            self.count -= 1
            return await self.checkout(timeout)
        return conn

    def _hand_on(self) -> None:
        """A slot freed without a connection: the longest waiter opens one."""
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                self.count += 1

                async def open_for(w: asyncio.Future[ServerConnection]) -> None:
                    try:
                        conn = await self.opener()
                    except BaseException as exc:
                        self.count -= 1
                        if not w.done():
                            w.set_exception(exc)
                        return
                    if w.done():
                        await self.checkin(conn)
                    else:
                        w.set_result(conn)

                task = asyncio.ensure_future(open_for(waiter))
                self.opening.add(task)  # kept until done: a task nobody holds may be collected mid-way
                task.add_done_callback(self.opening.discard)
                return

    async def checkin(self, conn: ServerConnection) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        conn.idle()
        self.idle.append(conn)

    async def discard(self, conn: ServerConnection) -> None:
        conn.close()
        self.count -= 1
        self._hand_on()


class Model:
    """The pooler: listens on a transaction port and a session port, as Supavisor's proxy ports."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pools: dict[tuple[str, str, str], Pool] = {}
        self.keys: dict[str, bytes] = {}  # role -> the ClientKey its first client revealed
        self.events: list[str] = []  # what the model refused or rejected, for tests and its log

    def note(self, level: str, text: str) -> None:
        self.events.append(f"{level} {text}")
        log.log(logging.ERROR if level in ("ERROR", "FATAL") else logging.INFO, "%s %s", level, text)

    def pool(self, mode: str, role: str, database: str) -> Pool:
        key = (mode, role, database)
        if key not in self.pools:
            host, port = self.settings.server

            def opener() -> asyncio.Future[ServerConnection]:
                params = {"user": role, "database": database, "application_name": "Supavisor"}
                return asyncio.ensure_future(
                    open_server_connection(host, port, params, self.keys[role], self.settings.secrets[role])
                )

            size = self.settings.session_pool_size if mode == "session" else self.settings.pool_size
            self.pools[key] = Pool(size, opener)
        return self.pools[key]

    async def serve(self, host: str, transaction_port: int, session_port: int) -> list[asyncio.AbstractServer]:
        return [
            await asyncio.start_server(lambda r, w: self.handle(r, w, "transaction"), host, transaction_port),
            await asyncio.start_server(lambda r, w: self.handle(r, w, "session"), host, session_port),
        ]

    # -- one client ------------------------------------------------------------------------------------------
    async def refuse(self, writer: asyncio.StreamWriter, error: SupavisorError, delayed: bool = False) -> None:
        self.note("FATAL", error.message(self.settings.release))
        if delayed and self.settings.delay_s:
            await asyncio.sleep(self.settings.delay_s)
        writer.write(error.encode(self.settings.release))
        await writer.drain()
        writer.close()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, mode: str) -> None:
        client = Framer("client")
        try:
            startup = await self._startup(reader, writer, client)
            if startup is None:
                return
            params = startup_params(startup)
            user = params.get("user", "")
            if "." not in user:
                await self.refuse(writer, errors.no_tenant_identifier())
                return
            role, tenant = user.rsplit(".", 1)
            if tenant != self.settings.tenant:
                await self.refuse(writer, errors.tenant_or_user_not_found(role, tenant), delayed=True)
                return
            secret = self.settings.secrets.get(role)
            if secret is None:
                await self.refuse(writer, errors.user_not_found())
                return
            client_key = await self._authenticate(reader, writer, client, secret)
            if client_key is None:
                await self.refuse(writer, errors.wrong_password(role), delayed=True)
                return
            self.keys.setdefault(role, client_key)
            self.note("LOG", f"connect: user={role} tenant={tenant} mode={mode}")
            database = params.get("database") or role
            pool = self.pool(mode, role, database)
            if mode == "session":
                await self._session(reader, writer, client, pool, params, role)
            else:
                await self._transaction(reader, writer, client, pool)
        except SupavisorError as exc:  # before the client's first query: its login or the pool's
            try:
                await self.refuse(writer, exc)
            except (ConnectionError, OSError):
                pass
        except (Closed, ConnectionError, OSError, asyncio.IncompleteReadError):
            pass
        finally:
            try:
                writer.close()
            except Exception:
                pass

    async def _startup(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, framer: Framer
    ) -> Message | None:
        while True:
            data = await reader.read(65536)
            if not data:
                return None
            for msg in framer.feed(data):
                if msg.kind in ("SSLRequest", "GSSENCRequest"):
                    writer.write(b"N")  # the model speaks no TLS
                    await writer.drain()
                elif msg.kind == "CancelRequest":
                    return None
                elif msg.kind == "Startup":
                    return msg

    async def _authenticate(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, framer: Framer, secret: Secret
    ) -> bytes | None:
        exchange = ServerExchange(secret)
        writer.write(exchange.start())
        step = 0
        while True:
            data = await reader.read(65536)
            if not data:
                raise Closed("the client left during authentication")
            for msg in framer.feed(data):
                if msg.type != b"p":
                    return None
                if step == 0:
                    writer.write(exchange.first(msg.body))
                    step = 1
                    continue
                done = exchange.final(msg.body)
                if done is None:
                    return None
                ok, client_key = done
                writer.write(ok)
                return client_key

    async def _welcome(self, writer: asyncio.StreamWriter, parameters: dict[str, str]) -> None:
        out = b""
        for name, value in parameters.items():
            body = name.encode() + b"\0" + value.encode() + b"\0"
            out += b"S" + struct.pack("!i", len(body) + 4) + body
        key = struct.pack("!ii", random_bytes.randbits(31), random_bytes.randbits(31))
        out += b"K" + struct.pack("!i", len(key) + 4) + key + errors.ready_for_query()
        writer.write(out)
        await writer.drain()

    async def _checkout(self, pool: Pool, mode: str) -> ServerConnection:
        try:
            return await pool.checkout(self.settings.checkout_timeout_s)
        except TimeoutError:
            raise errors.checkout_timeout(int(self.settings.checkout_timeout_s * 1000), mode) from None
        except ServerRefused as exc:  # the server refused the pool's login: its own error reaches the client
            raise SupavisorError(exc.code, exc.sqlstate, exc.text, coded=False) from None

    # -- session mode: a server connection per client, passed through -----------------------------------------
    async def _session(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        client: Framer,
        pool: Pool,
        params: dict[str, str],
        role: str,
    ) -> None:
        if pool.clients >= pool.size:  # as many clients as server connections: the next is refused at once
            await self.refuse(writer, errors.max_clients_in_session_mode(pool.size))
            return
        pool.clients += 1
        counted = True

        def leave() -> None:
            """The client is gone: it no longer counts towards the limit, though its server connection may still be
            in its DISCARD ALL (a client that comes meanwhile waits for it in the pool, as a checkout does)."""
            nonlocal counted
            if counted:
                counted = False
                pool.clients -= 1

        try:
            await self._session_of(reader, writer, client, pool, params, role, leave)
        finally:
            leave()

    async def _session_of(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        client: Framer,
        pool: Pool,
        params: dict[str, str],
        role: str,
        leave: Callable[[], None],
    ) -> None:
        try:
            conn = await self._checkout(pool, "session")  # one a client just left may still be in its DISCARD ALL
        except SupavisorError as exc:
            await self.refuse(writer, exc)
            return
        try:
            await self._serve_session(reader, writer, client, pool, params, role, conn, leave)
        except BaseException:
            await pool.discard(conn)  # whatever ended the session midway: the server connection is not reused
            raise

    async def _serve_session(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        client: Framer,
        pool: Pool,
        params: dict[str, str],
        role: str,
        conn: ServerConnection,
        leave: Callable[[], None],
    ) -> None:
        forwarded, _ = supavisor_startup(params, role, session=True)
        parameters = dict(conn.parameters)
        if "application_name" in forwarded:  # client_handler.ex maybe_set_application_name: SET in session mode
            name = forwarded["application_name"].replace("'", "''")
            await self._simple(conn, f"SET application_name = '{name}'")
            parameters["application_name"] = forwarded["application_name"]
        await self._welcome(writer, parameters)
        pending = bytes(client.buffer)
        client.buffer.clear()

        async def upstream() -> None:
            data = pending
            while True:
                for msg in client.feed(data):
                    if msg.type == b"X":  # the client leaves; its server connection stays the pool's
                        return
                    conn.writer.write(msg.encode())
                data = await reader.read(65536)
                if not data:
                    return

        async def downstream() -> None:
            while True:
                for msg in await conn.messages():
                    if msg.type == b"Z":
                        conn.status = msg.body[:1]
                    writer.write(msg.encode())
                await writer.drain()

        up, down = asyncio.ensure_future(upstream()), asyncio.ensure_future(downstream())
        await asyncio.wait([up, down], return_when=asyncio.FIRST_COMPLETED)
        server_gone = down.done()
        for task in (up, down):
            task.cancel()
        await asyncio.gather(up, down, return_exceptions=True)  # neither reads any more
        leave()
        if server_gone or conn.status != b"I" or not self.settings.release.session_discard_all:
            raise Closed("the server connection is not reused")  # _session_of discards it
        await self._simple(conn, "DISCARD ALL")  # a failure here: _session_of discards it
        await pool.checkin(conn)

    async def _simple(self, conn: ServerConnection, query: str) -> None:
        body = query.encode() + b"\0"
        conn.writer.write(b"Q" + struct.pack("!i", len(body) + 4) + body)
        while True:
            for msg in await conn.messages():
                if msg.type == b"Z":
                    return

    # -- transaction mode ---------------------------------------------------------------------------------------
    async def _transaction(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, client: Framer, pool: Pool
    ) -> None:
        settings, release = self.settings, self.settings.release
        translating = settings.named_prepared_statements
        storage = ClientStatements()
        if not pool.parameters:  # the client's ParameterStatus come from the pool's server connections
            conn = await self._checkout(pool, "transaction")
            await pool.checkin(conn)
        await self._welcome(writer, pool.parameters)
        held: ServerConnection | None = None
        relay: asyncio.Task[None] | None = None
        expected = 0  # ReadyForQuery messages the client's Q/S/F still await (2.10)
        done = asyncio.Event()

        async def release_(conn: ServerConnection) -> None:
            nonlocal held
            held = None
            await pool.checkin(conn)

        async def relay_from(conn: ServerConnection) -> None:
            nonlocal expected
            try:
                while held is conn:
                    messages = await conn.messages()
                    out = b""
                    for msg in messages:
                        out += conn.statements.incoming(msg) if translating else msg.encode()
                        if msg.type == b"Z":
                            conn.status = msg.body[:1]
                            expected = max(0, expected - 1)
                    writer.write(out)
                    await writer.drain()
                    last_is_idle = bool(messages) and messages[-1].type == b"Z" and conn.status == b"I"
                    if release.counts_ready_for_query:
                        if expected == 0 and conn.status == b"I" and not conn.framer.buffer:
                            await release_(conn)
                    elif last_is_idle and not conn.framer.buffer:
                        await release_(conn)
            except (Closed, OSError):
                if held is conn:
                    await pool.discard(conn)
                    done.set()

        async def fatal(error: SupavisorError) -> None:
            self.note("FATAL", error.message(release))
            writer.write(error.encode(release))
            if error.code == "EPSSIMPLEQUERY" and release.ready_after_simple_query_refusal:
                writer.write(errors.ready_for_query())
            await writer.drain()
            if held is not None:  # the linked DbHandler ends with the client: its server connection is closed
                await pool.discard(held)
            done.set()

        pending = bytes(client.buffer)
        client.buffer.clear()
        try:
            while not done.is_set():
                if pending:
                    data, pending = pending, b""
                else:
                    read = asyncio.ensure_future(reader.read(65536))
                    stop = asyncio.ensure_future(done.wait())
                    await asyncio.wait([read, stop], return_when=asyncio.FIRST_COMPLETED)
                    stop.cancel()
                    if not read.done():
                        read.cancel()
                        break
                    data = read.result()
                if not data:
                    break
                items: list[Translated | Message] = []
                try:
                    for msg in client.feed(data):
                        if msg.type == b"X":
                            raise Closed("the client terminated")
                        if translating and msg.type == b"Q" and sql.refuses_simple_query(msg.cstrings()[0]):
                            raise errors.simple_query_prepare()
                        if release.has_leak_action and settings.leak_action != "ignore" and msg.type in (b"Q", b"P"):
                            text = msg.cstrings()[0 if msg.type == b"Q" else 1]
                            leak = sql.session_leak(text)
                            if leak is not None:
                                described = sql.LEAK_DESCRIPTIONS[leak]
                                if settings.leak_action == "error":
                                    raise errors.session_leak(described)
                                self.note("WARNING", f"received {described} in transaction mode: {text[:200]}")
                        if msg.type in (b"Q", b"S", b"F"):
                            expected += 1
                        items.append(translate(msg, storage) if translating else msg)
                except SupavisorError as exc:
                    await fatal(exc)
                    break
                if not items:
                    continue
                if held is None:
                    try:
                        held = await self._checkout(pool, "transaction")
                    except SupavisorError as exc:
                        await fatal(exc)
                        break
                    relay = asyncio.ensure_future(relay_from(held))
                out = b""
                for item in items:
                    if isinstance(item, Message):
                        out += item.encode()
                    else:
                        out += held.statements.outgoing(item, release.describe_replays_parse)
                if translating:
                    out += held.statements.evictions()
                held.writer.write(out)
        except Closed:
            pass
        finally:
            if relay is not None and not relay.done():
                relay.cancel()
            if held is not None:
                await pool.discard(held)  # the client left inside a transaction: its server connection goes too
