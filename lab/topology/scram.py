"""SCRAM-SHA-256 secrets in PostgreSQL's stored form, for the server's roles and PgBouncer's auth_file alike.

A pooler in front of a SCRAM server holds the roles' SCRAM secrets, not their passwords: Supabase's
PgBouncer reads them from pg_shadow through auth_query, and Supavisor keeps them per tenant. With a
secret in auth_file PgBouncer checks a client's proof with two HMACs and logs in to the server with
the client's own proof ("SCRAM pass-through"); with a plain-text password it runs PBKDF2 (4,096
rounds of HMAC-SHA-256) for every client login, on its one thread, which costs this 2-core machine
about 7 ms of PgBouncer's CPU per login (measured) and is not what the real pooler does. Pass-through
needs the very same secret on both sides, same salt and iterations (PgBouncer's doc/config.md,
"Authentication file format", at 13a344f2); so the lab computes each role's secret once per run and
gives it to both: `ALTER ROLE ... PASSWORD '<secret>'` in init.sql and the line in userlist.txt.

The form is RFC 5803's, as PostgreSQL's src/common/scram-common.c (scram_build_secret) writes it:
SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>, each part base64.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

#: PostgreSQL 15's fixed iteration count (scram_iterations is a setting from 16 on, same default)
ITERATIONS = 4096


def scram_secret(password: str, salt: bytes, iterations: int = ITERATIONS) -> str:
    """The secret PostgreSQL would store for `password` with this salt (16 bytes, as PostgreSQL makes them)."""
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def role_salt(run_salt: str, role: str) -> bytes:
    """Each role's salt, from one random value per run: the same role gets the same secret every time the run's
    files are rendered (init.sql and every pooler's userlist.txt must agree), different roles different salts."""
    return hashlib.sha256(f"{run_salt}:{role}".encode()).digest()[:16]
