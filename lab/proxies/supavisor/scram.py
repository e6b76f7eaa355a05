"""SCRAM-SHA-256 on both sides of a pooler that holds the roles' secrets, not their passwords.

Supavisor gets each role's SCRAM secret through its tenant's auth_query, checks a client's proof with it,
and keeps the ClientKey the proof reveals (ClientKey = proof XOR HMAC(StoredKey, AuthMessage)) to log in to
the server as that client would (lib/supavisor/client_handler/auth_methods/scram.ex @ v2.9.10;
lib/supavisor/helpers.ex, scram_*). PgBouncer does the same with a secret in its auth_file
(lab.topology.scram explains why the lab gives both the same secrets). RFC 5802 and RFC 7677; PostgreSQL's
framing of it: https://www.postgresql.org/docs/15/sasl-authentication.html
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
from dataclasses import dataclass

MECHANISM = "SCRAM-SHA-256"


@dataclass(frozen=True, repr=False)
class Secret:
    """A role's stored secret: SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>."""

    iterations: int
    salt: bytes
    stored_key: bytes
    server_key: bytes

    def __repr__(self) -> str:
        return "Secret(hidden)"

    @classmethod
    def parse(cls, text: str) -> Secret:
        method, rest = text.split("$", 1)
        if method != MECHANISM:
            raise ValueError("not a SCRAM-SHA-256 secret")
        params, keys = rest.split("$", 1)
        iterations, salt = params.split(":", 1)
        stored, server = keys.split(":", 1)
        return cls(int(iterations), base64.b64decode(salt), base64.b64decode(stored), base64.b64decode(server))


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), "sha256").digest()


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def _attributes(text: str) -> dict[str, str]:
    return {part[0]: part[2:] for part in text.split(",") if len(part) >= 2 and part[1] == "="}


def auth_request(code: int, data: bytes = b"") -> bytes:
    body = struct.pack("!i", code) + data
    return b"R" + struct.pack("!i", len(body) + 4) + body


class ServerExchange:
    """The pooler's side towards a client: server-first from the client-first, then the client's proof checked."""

    def __init__(self, secret: Secret) -> None:
        self.secret = secret
        self.client_first_bare = ""
        self.server_first = ""
        self.nonce = ""

    @staticmethod
    def start() -> bytes:
        """AuthenticationSASL: the one mechanism offered (no channel binding: the model speaks no TLS)."""
        return auth_request(10, MECHANISM.encode() + b"\0\0")

    def first(self, initial_response: bytes) -> bytes:
        """SASLInitialResponse body (mechanism, int32 length, client-first) -> AuthenticationSASLContinue."""
        mechanism, _, rest = initial_response.partition(b"\0")
        if mechanism.decode() != MECHANISM or len(rest) < 4:
            raise ValueError("unsupported SASL mechanism")
        parts = rest[4:].decode().split(",", 2)  # gs2 header (flag, authzid), then client-first-message-bare
        if len(parts) < 3:
            raise ValueError("malformed client-first-message")
        header, self.client_first_bare = parts[0], parts[2]
        if header not in ("n", "y"):
            raise ValueError("channel binding is not offered")
        self.nonce = _attributes(self.client_first_bare)["r"] + base64.b64encode(secrets.token_bytes(18)).decode()
        salt = base64.b64encode(self.secret.salt).decode()
        self.server_first = f"r={self.nonce},s={salt},i={self.secret.iterations}"
        return auth_request(11, self.server_first.encode())

    def final(self, response: bytes) -> tuple[bytes, bytes] | None:
        """SASLResponse body (client-final) -> (AuthenticationSASLFinal + AuthenticationOk, the ClientKey), or None
        when the proof does not match (a wrong password)."""
        client_final = response.decode()
        without_proof, _, proof_part = client_final.rpartition(",p=")
        if _attributes(without_proof).get("r") != self.nonce or not proof_part:
            return None
        auth_message = f"{self.client_first_bare},{self.server_first},{without_proof}"
        proof = base64.b64decode(proof_part)
        client_key = _xor(proof, _hmac(self.secret.stored_key, auth_message))
        if not hmac.compare_digest(hashlib.sha256(client_key).digest(), self.secret.stored_key):
            return None
        signature = base64.b64encode(_hmac(self.secret.server_key, auth_message)).decode()
        return auth_request(12, f"v={signature}".encode()) + auth_request(0), client_key


class ClientExchange:
    """The pooler's side towards the server, with a ClientKey instead of a password (SCRAM pass-through)."""

    def __init__(self, client_key: bytes, secret: Secret) -> None:
        self.client_key, self.secret = client_key, secret
        self.client_first_bare = f"n=,r={base64.b64encode(secrets.token_bytes(18)).decode()}"
        self.auth_message = ""

    def initial(self) -> bytes:
        """SASLInitialResponse."""
        data = f"n,,{self.client_first_bare}".encode()
        body = MECHANISM.encode() + b"\0" + struct.pack("!i", len(data)) + data
        return b"p" + struct.pack("!i", len(body) + 4) + body

    def respond(self, server_first: bytes) -> bytes:
        """SASLResponse to AuthenticationSASLContinue's server-first."""
        text = server_first.decode()
        without_proof = f"c=biws,r={_attributes(text)['r']}"
        self.auth_message = f"{self.client_first_bare},{text},{without_proof}"
        stored_key = hashlib.sha256(self.client_key).digest()
        proof = _xor(self.client_key, _hmac(stored_key, self.auth_message))
        data = f"{without_proof},p={base64.b64encode(proof).decode()}".encode()
        return b"p" + struct.pack("!i", len(data) + 4) + data

    def verify(self, server_final: bytes) -> bool:
        expected = base64.b64encode(_hmac(self.secret.server_key, self.auth_message)).decode()
        return _attributes(server_final.decode()).get("v") == expected
