"""PostgreSQL v3 wire framing, written by hand because no library does it for a proxy.

The lab's proxies (the wire tracer, the tenant router) need to see message
boundaries in both directions of a live connection, fed whatever chunks the
network delivers. `Framer` is incremental: `feed(bytes)` returns the complete
messages so far and keeps the rest.

Client → server: the first message has no type byte (StartupMessage, SSLRequest,
GSSENCRequest, CancelRequest: int32 length + int32 code); after an SSLRequest the
server answers one untyped byte ('S' or 'N') and the client sends its startup
again, or TLS, which the lab cannot read. Everything after startup is typed:
one byte, an int32 length that counts itself, the body.
(https://www.postgresql.org/docs/current/protocol-message-formats.html)
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102
PROTOCOL_3 = 196608

# message type bytes, by direction
CLIENT_TYPES = {
    b"Q": "Query",
    b"P": "Parse",
    b"B": "Bind",
    b"E": "Execute",
    b"D": "Describe",
    b"S": "Sync",
    b"H": "Flush",
    b"C": "Close",
    b"X": "Terminate",
    b"p": "PasswordMessage",
    b"d": "CopyData",
    b"c": "CopyDone",
    b"f": "CopyFail",
    b"F": "FunctionCall",
}
SERVER_TYPES = {
    b"R": "Authentication",
    b"S": "ParameterStatus",
    b"K": "BackendKeyData",
    b"Z": "ReadyForQuery",
    b"T": "RowDescription",
    b"D": "DataRow",
    b"C": "CommandComplete",
    b"E": "ErrorResponse",
    b"N": "NoticeResponse",
    b"1": "ParseComplete",
    b"2": "BindComplete",
    b"3": "CloseComplete",
    b"t": "ParameterDescription",
    b"n": "NoData",
    b"s": "PortalSuspended",
    b"I": "EmptyQueryResponse",
    b"A": "NotificationResponse",
    b"G": "CopyInResponse",
    b"H": "CopyOutResponse",
    b"W": "CopyBothResponse",
    b"d": "CopyData",
    b"c": "CopyDone",
    b"v": "NegotiateProtocolVersion",
}


@dataclass(frozen=True)
class Message:
    kind: str  # "Startup", "SSLRequest", "SSLResponse", "Query", ... or "Unknown(x)"
    type: bytes  # the type byte, b"" for untyped messages
    body: bytes  # without type and length

    def cstrings(self) -> list[str]:
        return [s.decode("utf-8", "replace") for s in self.body.split(b"\0")]

    def encode(self) -> bytes:
        """The message as it crossed the wire (typed messages only)."""
        return self.type + struct.pack("!i", len(self.body) + 4) + self.body


@dataclass
class Framer:
    """One direction of one connection. side is "client" (client → server) or "server"."""

    side: str
    buffer: bytearray = field(default_factory=bytearray)
    started: bool = False  # client: startup seen; server: first typed message may come
    expect_ssl_answer: bool = False  # server side: one untyped byte answers an SSLRequest
    opaque: bool = False  # TLS was negotiated: the rest of the stream cannot be framed

    def feed(self, data: bytes) -> list[Message]:
        if self.opaque:
            return []
        self.buffer.extend(data)
        out: list[Message] = []
        while True:
            msg = self._next()
            if msg is None:
                return out
            out.append(msg)
            if self.opaque:
                self.buffer.clear()
                return out

    def _next(self) -> Message | None:
        buf = self.buffer
        if self.side == "server" and self.expect_ssl_answer:
            if not buf:
                return None
            answer = bytes(buf[:1])
            del buf[:1]
            self.expect_ssl_answer = False
            if answer == b"S":
                self.opaque = True
            return Message("SSLResponse", b"", answer)
        if self.side == "client" and not self.started:
            if len(buf) < 8:
                return None
            length, code = struct.unpack("!ii", buf[:8])
            if len(buf) < length:
                return None
            body = bytes(buf[8:length])
            del buf[:length]
            if code == SSL_REQUEST:
                return Message("SSLRequest", b"", body)
            if code == GSSENC_REQUEST:
                return Message("GSSENCRequest", b"", body)
            if code == CANCEL_REQUEST:
                return Message("CancelRequest", b"", body)
            self.started = True
            return Message("Startup", b"", struct.pack("!i", code) + body)
        if len(buf) < 5:
            return None
        mtype = bytes(buf[:1])
        (length,) = struct.unpack("!i", buf[1:5])
        if len(buf) < 1 + length:
            return None
        body = bytes(buf[5 : 1 + length])
        del buf[: 1 + length]
        names = CLIENT_TYPES if self.side == "client" else SERVER_TYPES
        return Message(names.get(mtype, f"Unknown({mtype!r})"), mtype, body)


def startup_params(message: Message) -> dict[str, str]:
    """The key/value pairs of a StartupMessage (user, database, options, application_name...)."""
    parts = message.body[4:].split(b"\0")
    pairs = [p.decode("utf-8", "replace") for p in parts]
    return {pairs[i]: pairs[i + 1] for i in range(0, len(pairs) - 1, 2) if pairs[i]}


def startup_message(params: dict[str, str]) -> bytes:
    body = (
        struct.pack("!i", PROTOCOL_3)
        + b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in params.items())
        + b"\0"
    )
    return struct.pack("!i", len(body) + 4) + body


def error_fields(message: Message) -> dict[str, str]:
    """ErrorResponse / NoticeResponse fields by their code letter (S severity, C SQLSTATE, M message...)."""
    fields = {}
    for part in message.body.split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode("utf-8", "replace")
    return fields


def error_response(severity: str, sqlstate: str, text: str) -> bytes:
    body = (
        b"".join(
            code + value.encode() + b"\0"
            for code, value in ((b"S", severity), (b"V", severity), (b"C", sqlstate), (b"M", text))
        )
        + b"\0"
    )
    return b"E" + struct.pack("!i", len(body) + 4) + body


def auth_code(message: Message) -> int | None:
    """Authentication request subtype: 0 ok, 3 cleartext, 5 MD5, 10 SASL, 11 SASLContinue, 12 SASLFinal."""
    if message.kind != "Authentication" or len(message.body) < 4:
        return None
    return struct.unpack("!i", message.body[:4])[0]


def parse_statement_name(message: Message) -> str:
    """Parse: the statement name ('' for the unnamed statement)."""
    return message.body.split(b"\0", 1)[0].decode("utf-8", "replace")
