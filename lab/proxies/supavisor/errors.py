"""The errors Supavisor itself sends a client, per release line: code, SQLSTATE, text, and how they are framed.

Every one of them is FATAL: Supavisor sends it and closes the client's connection (v2.9:
Error.terminate_with_error always ends with {:stop, :normal}, client_handler/error.ex:29-60 @ v2.9.10;
v2.8: the :busy handler stops after sending, client_handler.ex:756-766 @ v2.8.8).

- v2.9 and later: a Supavisor.Error exception, message "(CODE) text"; the default wire error is
  %{"S" => "FATAL", "C" => "XX000", "M" => message} (error.ex:69-96 @ v2.9.10), encoded with its keys
  sorted, so the fields go C, M, S and there is no V (protocol/server.ex:147-151 @ v2.9.10, test
  server_test.exs:190-203).
- v2.8: Server.error_message(code, msg): S FATAL, V FATAL, C, M, no code prefix (server.ex:138-141 @ v2.8.8).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from lab.topology.supavisor_releases import Release


@dataclass(frozen=True)
class SupavisorError(Exception):
    """One of Supavisor's own errors: its code (ENOTFOUND...), SQLSTATE, and its text in each release line."""

    code: str
    sqlstate: str
    text: str  # v2.9+ wording, without the "(CODE) " prefix
    text_2_8: str | None = None  # v2.8's wording where it differs (None: the same text)
    coded: bool = True  # v2.9+ prefixes "(CODE) "; a few errors deliberately do not (WrongPasswordError)

    def message(self, release: Release) -> str:
        if not release.coded_errors:
            return self.text_2_8 if self.text_2_8 is not None else self.text
        return f"({self.code}) {self.text}" if self.coded else self.text

    def encode(self, release: Release) -> bytes:
        fields = (
            [(b"C", self.sqlstate), (b"M", self.message(release)), (b"S", "FATAL")]
            if release.coded_errors
            else [(b"S", "FATAL"), (b"V", "FATAL"), (b"C", self.sqlstate), (b"M", self.message(release))]
        )
        body = b"".join(k + v.encode() + b"\0" for k, v in fields) + b"\0"
        return b"E" + struct.pack("!i", len(body) + 4) + body


def quoted(name: str) -> str:
    """A statement name as Elixir's inspect/1 renders it in these messages: in double quotes, escaped."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def tenant_or_user_not_found(user: str, tenant: str) -> SupavisorError:
    """errors/tenant_or_user_not_found_error.ex:6,16-17 @ v2.9.0; v2.8: 'Tenant or user not found' for any failed
    user lookup (client_handler/error.ex:103-116 @ v2.8.8)."""
    return SupavisorError("ENOTFOUND", "XX000", f"tenant/user {user}.{tenant} not found", "Tenant or user not found")


def no_tenant_identifier() -> SupavisorError:
    """errors/no_tenant_identifier_error.ex:7,12-14 @ v2.9.0; v2.8 answered it as any failed lookup."""
    return SupavisorError(
        "ENOIDENTIFIER",
        "XX000",
        "no tenant identifier provided (external_id or sni_hostname required)",
        "Tenant or user not found",
    )


def user_not_found() -> SupavisorError:
    """The tenant's auth_query found no such role (lib/supavisor/auth_query.ex, errors/auth_query_error.ex @ v2.9.10):
    refused before any password exchange."""
    return SupavisorError("EAUTHQUERY", "XX000", "user not found in the database", "Tenant or user not found")


def wrong_password(role: str) -> SupavisorError:
    """errors/wrong_password_error.ex:23-31 @ v2.9.0: PostgreSQL's own wording and SQLSTATE, no code prefix."""
    return SupavisorError(
        "EWRONGPASSWORD", "28P01", f"password authentication failed for user {quoted(role)}", coded=False
    )


def prepared_duplicate(name: str) -> SupavisorError:
    """errors/duplicate_prepared_statement_error.ex:6,13-21 @ v2.9.0 (42P05); client_handler/error.ex:36-85 @ v2.8.8."""
    return SupavisorError("EPREPAREDDUP", "42P05", f"prepared statement {quoted(name)} already exists")


def prepared_not_found(name: str) -> SupavisorError:
    """errors/prepared_statement_not_found_error.ex:6,13-21 @ v2.9.0 (26000)."""
    return SupavisorError("EPREPAREDNOTFOUND", "26000", f"prepared statement {quoted(name)} does not exist")


def simple_query_prepare() -> SupavisorError:
    """errors/simple_query_not_supported_error.ex:7,13-16 @ v2.9.0; v2.8's text names Supavisor itself."""
    return SupavisorError(
        "EPSSIMPLEQUERY",
        "XX000",
        "transaction mode only supports prepared statements using the Extended Query Protocol",
        "Supavisor transaction mode only supports prepared statements using the Extended Query Protocol",
    )


def max_prepared(limit: int) -> SupavisorError:
    """errors/max_prepared_statements_error.ex:6,13-16 @ v2.9.0."""
    return SupavisorError(
        "EMAXPREPARED", "XX000", f"max prepared statements limit reached. Limit: {limit} per connection"
    )


def max_prepared_memory(limit_mb: float) -> SupavisorError:
    """errors/max_prepared_statements_memory_error.ex:6,13-16 @ v2.9.0 (limit_mb = 1_000_000 / 1_000_000 = 1.0)."""
    return SupavisorError(
        "EMAXPREPAREDMEM", "XX000", f"max prepared statements memory limit reached. Limit: {limit_mb}MB per connection"
    )


def checkout_timeout(ms: int, mode: str) -> SupavisorError:
    """The pool had no server connection within the tenant's checkout timeout (proxy_test.exs:269 @ v2.9.10)."""
    return SupavisorError(
        "ECHECKOUTTIMEOUT",
        "XX000",
        f"unable to check out connection from the pool after {ms}ms in {mode.capitalize()} mode",
        "Unable to check out connection from the pool due to timeout",
    )


def max_clients_in_session_mode(pool_size: int) -> SupavisorError:
    """proxy_test.exs:182 "too many clients in session mode" @ v2.9.10; v2.8.8:165's text."""
    return SupavisorError(
        "EMAXCONNSESSION",
        "XX000",
        f"max clients reached in session mode - max clients are limited to pool_size: {pool_size}",
        "MaxClientsInSessionMode: max clients reached - in Session mode max clients are limited to pool_size",
    )


def session_leak(description: str) -> SupavisorError:
    """PR #1113 (unreleased): Supavisor.Errors.SessionLeakError, code ESESSIONLEAK, the default FATAL XX000."""
    return SupavisorError("ESESSIONLEAK", "XX000", f"{description} is not allowed in transaction mode")


def ready_for_query() -> bytes:
    """protocol/server.ex ready_for_query(): <<90,0,0,0,5,73>> (server_test.exs:215)."""
    return b"Z\x00\x00\x00\x05I"
