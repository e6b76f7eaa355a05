"""Named prepared statements in transaction mode with Supavisor's switch on: the client side's name translation
and storage, and the server side's replay, suppression and injection.

Follows, function by function (the code is the same from v2.8 to main but for error values):
- lib/supavisor/protocol/prepared_statements.ex @ v2.8.8 (:88-211): Parse, Bind, Close, Describe;
- lib/supavisor/protocol/prepared_statements/storage.ex @ v2.9.10 (:21-46): one map per client connection,
  100 statements, 1,000,000 bytes, checked in that order (count, duplicate, memory);
- lib/supavisor/db_handler.ex @ v2.8.8 (:723-802) and protocol/backend_message_handler.ex: what each
  server connection has prepared, the Parse replayed before a Bind (its ParseComplete swallowed), a Parse
  of a statement the server connection has already dropped (a ParseComplete injected before the next
  ParseComplete, CloseComplete, ParameterDescription or ReadyForQuery), eviction at 200 statements.

The quirks are kept, each named where it is: the Bind rewrite replaces a named portal with the unnamed
one without correcting the length; a Parse's name mapping is stored before the server accepts it (#1175);
a Describe of a statement the server connection lacks is forwarded as is before PR #1185 (#1174).
"""

from __future__ import annotations

import base64
import hashlib
import random
import struct
from collections import deque
from dataclasses import dataclass, field

from lab.proxies.pgwire import Message
from lab.proxies.supavisor import errors

#: storage.ex: @statement_limit, @memory_limit_bytes
CLIENT_LIMIT = 100
MEMORY_LIMIT = 1_000_000
#: prepared_statements.ex:46: @backend_limit; eviction removes a fifth of it (db_handler.ex:350-369)
BACKEND_LIMIT = 200


def server_side_name(parse_body: bytes) -> str:
    """gen_server_side_name/1 (prepared_statements.ex:205-211): "sv_" and the unpadded base64 of the SHA-256 of the
    whole Parse payload (client name, query, parameter types): the same Parse from two clients gets one name."""
    return "sv_" + base64.b64encode(hashlib.sha256(parse_body).digest()).decode().rstrip("=")


def _typed(mtype: bytes, body: bytes) -> bytes:
    return mtype + struct.pack("!i", len(body) + 4) + body


@dataclass
class ClientStatements:
    """A client connection's named statements: its name -> (server name, the rewritten Parse to replay)."""

    names: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    size: int = 0

    def put(self, name: str, server_name: str, parse_pkt: bytes) -> None:
        if len(self.names) >= CLIENT_LIMIT:
            raise errors.max_prepared(CLIENT_LIMIT)
        if name in self.names:
            raise errors.prepared_duplicate(name)
        if self.size + len(parse_pkt) > MEMORY_LIMIT:
            raise errors.max_prepared_memory(MEMORY_LIMIT / 1_000_000)
        self.names[name] = (server_name, parse_pkt)
        self.size += len(parse_pkt)

    def pop(self, name: str) -> tuple[str, bytes] | None:
        found = self.names.pop(name, None)
        if found is not None:
            self.size -= len(found[1])
        return found


@dataclass(frozen=True)
class Translated:
    """One client message, as the client side hands it to its server connection."""

    kind: str  # "raw" | "parse" | "bind" | "describe" | "close"
    packet: bytes
    server_name: str = ""
    parse_pkt: bytes = b""  # bind / describe: the Parse to replay where the server connection lacks it


def translate(msg: Message, storage: ClientStatements) -> Translated:
    """handle_pkt/2 of prepared_statements.ex: what a client message becomes. Raises SupavisorError."""
    body = msg.body
    if msg.type == b"P":
        name, _, rest = body.partition(b"\0")
        if not name:
            return Translated("raw", msg.encode())
        server_name = server_side_name(body)
        rewritten = _typed(b"P", server_name.encode() + b"\0" + rest)
        storage.put(name.decode("utf-8", "replace"), server_name, rewritten)  # before the server accepts it (#1175)
        return Translated("parse", rewritten, server_name)
    if msg.type == b"B":
        _portal, _, rest = body.partition(b"\0")
        statement, _, after = rest.partition(b"\0")
        if not statement:
            return Translated("raw", msg.encode())
        found = storage.names.get(statement.decode("utf-8", "replace"))
        if found is None:
            raise errors.prepared_not_found(statement.decode("utf-8", "replace"))
        server_name, parse_pkt = found
        new_body = b"\0" + server_name.encode() + b"\0" + after
        # quirk (prepared_statements.ex:130): the named portal becomes the unnamed one, and the length is computed as
        # if the portal name were still there
        length = len(msg.body) + 4 - len(statement) + len(server_name)
        return Translated("bind", b"B" + struct.pack("!i", length) + new_body, server_name, parse_pkt)
    if msg.type == b"C":
        what, name = body[:1], body[1:].split(b"\0", 1)[0]
        if what != b"S" or not name:
            return Translated("raw", msg.encode())
        found = storage.pop(name.decode("utf-8", "replace"))
        server_name = found[0] if found is not None else "supavisor_none"
        return Translated("close", _typed(b"C", b"S" + server_name.encode() + b"\0"), server_name)
    if msg.type == b"D":
        what, name = body[:1], body[1:].split(b"\0", 1)[0]
        if what == b"P" or not name:
            return Translated("raw", msg.encode())
        found = storage.names.get(name.decode("utf-8", "replace"))
        if found is None:
            raise errors.prepared_not_found(name.decode("utf-8", "replace"))
        return Translated("describe", _typed(b"D", b"S" + found[0].encode() + b"\0"), found[0], found[1])
    return Translated("raw", msg.encode())


@dataclass
class ServerStatements:
    """What one server connection has prepared, and the pending actions on its replies, in order: a FIFO of
    ("intercept" | "forward", "parse" | "close") and ("inject", "parse") (backend_message_handler.ex)."""

    prepared: set[str] = field(default_factory=set)
    actions: deque[tuple[str, str]] = field(default_factory=deque)

    def outgoing(self, item: Translated, describe_replays: bool) -> bytes:
        """What goes to the server for one translated client message (db_handler.ex handle_ps_pkts)."""
        if item.kind == "parse":
            if item.server_name in self.prepared:
                self.actions.append(("inject", "parse"))  # dropped: the statement is here already
                return b""
            self.prepared.add(item.server_name)
            self.actions.append(("forward", "parse"))
            return item.packet
        if item.kind == "bind" or (item.kind == "describe" and describe_replays):
            if item.server_name not in self.prepared:
                self.prepared.add(item.server_name)
                self.actions.append(("intercept", "parse"))  # the replayed Parse's ParseComplete is not the client's
                return item.parse_pkt + item.packet
            return item.packet
        if item.kind == "close":
            self.prepared.discard(item.server_name)
            self.actions.append(("forward", "close"))
            return item.packet
        return item.packet

    def evictions(self) -> bytes:
        """At BACKEND_LIMIT statements, Close a fifth of them, chosen at random (v2.8/v2.9), their CloseCompletes
        intercepted (db_handler.ex:350-369, 788-802 @ v2.8.8)."""
        if len(self.prepared) < BACKEND_LIMIT:
            return b""
        out = b""
        for name in random.sample(sorted(self.prepared), BACKEND_LIMIT // 5):
            self.prepared.discard(name)
            self.actions.append(("intercept", "close"))
            out += _typed(b"C", b"S" + name.encode() + b"\0")
        return out

    def incoming(self, msg: Message) -> bytes:
        """BackendMessageHandler: what the client gets for one server message."""
        out = b""
        if msg.type in (b"1", b"3", b"t", b"Z"):
            while self.actions and self.actions[0][0] == "inject":
                self.actions.popleft()
                out += b"1\x00\x00\x00\x04"  # a ParseComplete of the Parse that was dropped
        if msg.type in (b"1", b"3") and self.actions:
            action, what = self.actions[0]
            if what == ("parse" if msg.type == b"1" else "close"):
                self.actions.popleft()
                if action == "intercept":
                    return out
        return out + msg.encode()
