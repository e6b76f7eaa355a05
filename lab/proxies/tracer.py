"""The wire tracer: a proxy that frames both directions of every connection and counts what crosses.

Placed between a client and any topology, it records per client connection the
startup parameters, every authentication request and response, simple queries,
Parse/Bind/Execute, the names of prepared statements and the errors, which is how
the lab counts authentication exchanges per query (claim C3) and logins (C4). It
runs its own event loop in a thread, so the clients under test keep theirs.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from lab.proxies.base import ThreadedProxy
from lab.proxies.pgwire import Framer, Message, auth_code, error_fields, parse_statement_name, startup_params


@dataclass
class ConnectionTrace:
    """What one client connection exchanged with the topology."""

    number: int
    startup: dict[str, str] = field(default_factory=dict)
    client: Counter[str] = field(default_factory=Counter)  # message kinds sent by the client
    server: Counter[str] = field(default_factory=Counter)  # message kinds sent by the server
    auth_requests: list[int] = field(default_factory=list)  # Authentication subtypes, in order
    statement_names: list[str] = field(default_factory=list)  # named Parse messages
    errors: list[tuple[str, str]] = field(default_factory=list)  # (SQLSTATE, message)
    tls: bool = False
    raw: dict[str, bytearray] | None = None  # both directions' bytes, when recording

    @property
    def authentication_exchanges(self) -> int:
        """Authentication requests that ask the client for something (everything but AuthenticationOk)."""
        return sum(1 for code in self.auth_requests if code != 0)

    def summary(self) -> dict[str, Any]:
        return {
            "startup_messages": self.client["Startup"],
            "ssl_requests": self.client["SSLRequest"],
            "authentication_requests": self.authentication_exchanges,
            "password_messages": self.client["PasswordMessage"],
            "simple_queries": self.client["Query"],
            "parse": self.client["Parse"],
            "bind": self.client["Bind"],
            "execute": self.client["Execute"],
            "named_statements": len(self.statement_names),
            "errors": [f"{s} {m}" for s, m in self.errors],
        }


class Session:
    """Both framers of one connection, kept in step (an SSLRequest changes how the answer is read)."""

    def __init__(self, trace: ConnectionTrace) -> None:
        self.trace = trace
        self.framers = {"client": Framer("client"), "server": Framer("server")}

    def observe(self, side: str, data: bytes) -> list[Message]:
        if self.trace.raw is not None:
            self.trace.raw[side].extend(data)
        messages = self.framers[side].feed(data)
        for msg in messages:
            self._count(side, msg)
        return messages

    def _count(self, side: str, msg: Message) -> None:
        t = self.trace
        if side == "client":
            t.client[msg.kind] += 1
            if msg.kind in ("SSLRequest", "GSSENCRequest"):
                self.framers["server"].expect_ssl_answer = True
            elif msg.kind == "Startup":
                t.startup = startup_params(msg)
            elif msg.kind == "Parse":
                name = parse_statement_name(msg)
                if name:
                    t.statement_names.append(name)
        else:
            t.server[msg.kind] += 1
            if msg.kind == "SSLResponse" and msg.body in (b"S", b"G"):
                t.tls = True
                self.framers["client"].opaque = True
            elif msg.kind == "Authentication":
                code = auth_code(msg)
                if code is not None:
                    t.auth_requests.append(code)
            elif msg.kind == "ErrorResponse":
                f = error_fields(msg)
                t.errors.append((f.get("C", ""), f.get("M", "")))


class WireTracer(ThreadedProxy):
    """A tracing proxy in front of one endpoint (host, port). Use as a context manager."""

    def __init__(self, target_host: str, target_port: int, record: bool = False) -> None:
        super().__init__(target_host, target_port)
        self.record = record
        self.connections: list[ConnectionTrace] = []
        self._lock = threading.Lock()

    def __enter__(self) -> WireTracer:
        super().__enter__()
        return self

    def reset(self) -> None:
        with self._lock:
            self.connections.clear()

    def snapshot(self) -> list[ConnectionTrace]:
        with self._lock:
            return list(self.connections)

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        with self._lock:
            trace = ConnectionTrace(
                len(self.connections) + 1, raw={"client": bytearray(), "server": bytearray()} if self.record else None
            )
            self.connections.append(trace)
        session = Session(trace)
        try:
            server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.close()
            return

        def observer(side: str):
            def observe(data: bytes) -> None:
                with self._lock:
                    session.observe(side, data)

            return observe

        await asyncio.gather(
            self.pipe(client_r, server_w, observer("client")), self.pipe(server_r, client_w, observer("server"))
        )
