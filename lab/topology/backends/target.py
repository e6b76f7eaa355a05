"""Endpoints the lab did not start: a user's Supabase project, their own PgBouncer (a target file).

A target file (TOML) names endpoints by the lab's topology names (or new ones), each
with a libpq URL without its password, the environment variable the password comes
from, and what the user declares it is (pooler, pool mode, version). The lab starts
nothing there: it reads the file, checks every value before anything connects, and
builds the same `Topology` the local backends build, with `backend = "target"` and
the target's name in every row.

On somebody's real database the lab touches only what it creates: a schema of its
own per run (`pooler_lab_<run id>`, holding the one table the workloads write),
dropped at the end, after Ctrl-C and after a failure; `target clean` drops what a
killed run left. It never opens more connections to an endpoint than the file allows.
"""

from __future__ import annotations

import os
import re
import socket
import ssl
import statistics
import struct
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import psycopg

from lab.errors import ConfigError, EnvironmentProblem
from lab.topology.bounded import NoAnswer, bounded
from lab.topology.model import Endpoint, EndpointFacts, Secret, Topology
from lab.topology.services import families, for_family

#: the poolers a target may declare: none, every family the lab runs, the ones it only meets on targets, and `other`
#: (recorded, never judged)
POOLERS = ("none", *dict.fromkeys([*families(), "supavisor", "pgcat", "pgdog", "odyssey"]), "other")
POOL_MODES = ("none", "session", "transaction")
SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
DEFAULT_MAX_CONNECTIONS = 10
#: how long the lab waits for a target to answer anything (connecting, a statement) before it says so
BOUND_S = 10.0
SCHEMA_PREFIX = "pooler_lab_"
#: the libpq URL parameters a target's url may carry (the CA goes in ca_file, the password in the environment)
URL_PARAMETERS = {"sslmode"}
ENDPOINT_KEYS = {"url", "password_env", "pooler", "pool_mode", "pooler_version", "max_connections", "ca_file"}
TOP_KEYS = {"name", "endpoints", "rest", "allow_bursts"}
REST_KEYS = {"url", "anon_key_env", "ca_file"}
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


@dataclass(frozen=True)
class TargetEndpoint:
    name: str
    host: str
    port: int
    database: str
    user: str
    password: Secret = field(repr=False)
    sslmode: str
    pooler: str
    pool_mode: str
    pooler_version: str | None
    max_connections: int
    ca_file: str | None

    def endpoint(self, target: str) -> Endpoint:
        kind = for_family(self.pooler)
        facts = EndpointFacts(
            backend="target",
            target=target,
            service=self.name,
            host=self.host,
            pooler=None if self.pooler == "none" else self.pooler,
            pool_mode=None if self.pool_mode == "none" else self.pool_mode,
            pooler_version=self.pooler_version,
            declared=True,
            sslmode=self.sslmode,
            max_connections_allowed=self.max_connections,
            prepared_statements=kind.prepared_statements(self.pooler_version, None) if kind else None,
        )
        return Endpoint(
            self.name,
            self.host,
            self.port,
            self.database,
            self.user,
            self.password,
            facts,
            ca_file=self.ca_file,
            sslmode=self.sslmode,
        )


@dataclass(frozen=True)
class TargetFile:
    """A target file, read and checked: every value typed and in range, every secret found in the environment."""

    name: str
    path: Path
    endpoints: dict[str, TargetEndpoint]
    allow_bursts: bool = False
    rest: TargetRest | None = None

    @classmethod
    def load(cls, path: Path, env: dict[str, str] | None = None, need_secrets: bool = True) -> TargetFile:
        env = dict(os.environ) if env is None else env
        try:
            doc = tomllib.loads(path.read_text())
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the target file ({exc.strerror})") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: not a text file (a target file is TOML)") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not TOML ({exc})") from None
        where = str(path)
        unknown = set(doc) - TOP_KEYS
        if unknown:
            raise ConfigError(
                f"{where}: unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(TOP_KEYS))}"
            )
        name = doc.get("name")
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise ConfigError(
                f"{where}: `name` must be a short name of letters, digits, '.', '_' or '-' (it goes into every row)"
            )
        raw_eps = doc.get("endpoints")
        if not isinstance(raw_eps, dict) or not raw_eps:
            raise ConfigError(f"{where}: needs at least one [endpoints.NAME] table")
        rest = _rest(f"{where}: [rest]", doc["rest"], env, need_secrets) if "rest" in doc else None
        allow = doc.get("allow_bursts", False)
        if not isinstance(allow, bool):
            raise ConfigError(f"{where}: allow_bursts must be true or false")
        eps = {ep: _endpoint(f"{where}: [endpoints.{ep}]", ep, body, env, need_secrets) for ep, body in raw_eps.items()}
        return cls(name, path, eps, allow, rest)

    def topology(self, run_id: str, observed: dict[str, dict[str, Any]] | None = None) -> Topology:
        """The endpoints as experiments see them; `observed` (from `check`) adds what the lab saw at each to its facts."""
        eps = {}
        for n, e in self.endpoints.items():
            ep = e.endpoint(self.name)
            eps[n] = replace(ep, facts=replace(ep.facts, **(observed or {}).get(n, {})))
        if self.rest is not None:
            ep = self.rest.endpoint(self.name)
            eps["rest"] = replace(ep, facts=replace(ep.facts, **(observed or {}).get("rest", {})))
        return Topology(run_id=run_id, backend="target", endpoints=eps, superuser="", superuser_password=Secret(""))

    def home(self) -> TargetEndpoint:
        """Where the run's schema is created: the direct endpoint if there is one (DDL through a
        transaction pooler works too, but a session of its own is the plain way)."""
        return self.endpoints.get("direct") or next(iter(self.endpoints.values()))


@dataclass(frozen=True)
class TargetRest:
    """A Supabase-style REST tier (PostgREST behind a gateway at /rest/v1/), over https only."""

    host: str
    port: int
    key: Secret = field(repr=False)
    ca_file: str | None

    def endpoint(self, target: str) -> Endpoint:
        facts = EndpointFacts(
            backend="target",
            target=target,
            rest_server="the target's REST tier (declared)",
            stand_in=False,
            gateway="the target's",
            path="/rest/v1/",
            https_only=True,
        )
        return Endpoint(
            "rest",
            self.host,
            self.port,
            "postgres",
            "",
            Secret(""),
            facts,
            tls_port=self.port,
            keys={"anon": self.key},
            ca_file=self.ca_file,
        )


def _rest(where: str, body: Any, env: dict[str, str], need_secrets: bool) -> TargetRest:
    if not isinstance(body, dict):
        raise ConfigError(f"{where}: must be a table")
    unknown = set(body) - REST_KEYS
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(REST_KEYS))}"
        )
    for required in ("url", "anon_key_env"):
        if not isinstance(body.get(required), str) or not body[required]:
            raise ConfigError(f"{where}: `{required}` is required (a string)")
    shape = "url must be the project's base URL over https, like https://abcdefghijklmnop.supabase.co"
    try:
        url = urlsplit(body["url"])
        hostname, port_given = url.hostname, url.port
    except ValueError:
        raise ConfigError(f"{where}: {shape} (a port of 1-65535)") from None
    if url.scheme != "https" or not hostname or url.path.strip("/") or url.username or url.query or port_given == 0:
        raise ConfigError(f"{where}: {shape}")
    port = port_given or 443
    ca = body.get("ca_file")
    if ca is not None and (not isinstance(ca, str) or not Path(ca).is_file()):
        raise ConfigError(f"{where}: ca_file {ca!r} is not a file")
    key: str | None = env.get(body["anon_key_env"])
    if key is None and need_secrets:
        raise ConfigError(f"{where}: the environment variable {body['anon_key_env']} (anon_key_env) is not set")
    return TargetRest(hostname, port, Secret(key or ""), ca)


def _endpoint(where: str, name: str, body: Any, env: dict[str, str], need_secrets: bool) -> TargetEndpoint:
    if not isinstance(body, dict):
        raise ConfigError(f"{where}: must be a table")
    unknown = set(body) - ENDPOINT_KEYS
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(ENDPOINT_KEYS))}"
        )
    if not NAME.fullmatch(name):
        raise ConfigError(f"{where}: the endpoint's name must be letters, digits, '.', '_' or '-'")
    for key in ("url", "password_env", "pooler", "pool_mode"):
        if not isinstance(body.get(key), str) or not body[key]:
            raise ConfigError(f"{where}: `{key}` is required (a string)")
    try:
        url = urlsplit(body["url"])
        hostname, port_given = url.hostname, url.port
    except ValueError as exc:
        why = "its port is not a TCP port (1-65535)" if "port" in str(exc).lower() else f"it is not a URL ({exc})"
        raise ConfigError(f"{where}: url: {why}: postgresql://USER@HOST:PORT/DATABASE") from None
    if url.scheme not in ("postgresql", "postgres"):
        raise ConfigError(f"{where}: url must be postgresql://USER@HOST:PORT/DATABASE")
    query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
    if url.password or "password" in query:
        raise ConfigError(
            f"{where}: url carries a password; put it in the environment variable `password_env` names instead"
        )
    unknown_parameters = sorted(set(query) - URL_PARAMETERS)
    if unknown_parameters:
        raise ConfigError(
            f"{where}: url parameter(s) {', '.join(unknown_parameters)} not taken (the lab would drop them silently); "
            f"it takes {', '.join(sorted(URL_PARAMETERS))}"
        )
    if not hostname or not url.username:
        raise ConfigError(f"{where}: url needs a user and a host: postgresql://USER@HOST:PORT/DATABASE")
    if port_given == 0:
        raise ConfigError(f"{where}: url's port is not a TCP port (1-65535)")
    port = port_given or 5432
    sslmode = query.get("sslmode", "prefer")
    if sslmode not in SSLMODES:
        raise ConfigError(f"{where}: sslmode {sslmode!r} is not one of {', '.join(SSLMODES)}")
    if body["pooler"] not in POOLERS:
        raise ConfigError(f"{where}: pooler {body['pooler']!r} is not one of {', '.join(POOLERS)}")
    if body["pool_mode"] not in POOL_MODES:
        raise ConfigError(f"{where}: pool_mode {body['pool_mode']!r} is not one of {', '.join(POOL_MODES)}")
    if (body["pooler"] == "none") != (body["pool_mode"] == "none"):
        raise ConfigError(f"{where}: pooler and pool_mode are `none` together or not at all")
    version = body.get("pooler_version")
    if version is not None and not isinstance(version, str):
        raise ConfigError(f'{where}: pooler_version must be a string like "1.22.1"')
    limit = body.get("max_connections", DEFAULT_MAX_CONNECTIONS)
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 1000:
        raise ConfigError(f"{where}: max_connections must be a whole number from 1 to 1000")
    ca = body.get("ca_file")
    if ca is not None and (not isinstance(ca, str) or not Path(ca).is_file()):
        raise ConfigError(f"{where}: ca_file {ca!r} is not a file")
    if sslmode == "verify-full" and ca is None:
        raise ConfigError(f"{where}: sslmode=verify-full needs ca_file (the CA that signed the server's certificate)")
    var = body["password_env"]
    password = env.get(var)
    if password is None and need_secrets:
        raise ConfigError(f"{where}: the environment variable {var} (password_env) is not set")
    return TargetEndpoint(
        name,
        hostname,
        port,
        unquote(url.path.lstrip("/")) or "postgres",
        unquote(url.username),
        Secret(password or ""),
        sslmode,
        body["pooler"],
        body["pool_mode"],
        version,
        limit,
        ca,
    )


# -- the run's own schema -------------------------------------------------------------


def schema_for(run_id: str) -> str:
    return SCHEMA_PREFIX + re.sub(r"[^a-z0-9_]", "_", run_id.lower())


TABLE_DDL = """
CREATE TABLE {schema}.lab_items (
    id          bigserial PRIMARY KEY,
    payload     text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    inserted_by text NOT NULL DEFAULT current_user,
    jwt_role    text
)"""


@contextmanager
def run_schema(target: TargetFile, run_id: str, read_only: bool) -> Iterator[str | None]:
    """A schema of the run's own on the target, holding the table the workloads write; dropped at the end
    whatever happens. None with --read-only: nothing is created."""
    if read_only:
        yield None
        return
    schema = schema_for(run_id)
    with _admin(target, "create the run's schema") as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute(TABLE_DDL.format(schema=f'"{schema}"'))
    try:
        yield f"{schema}.lab_items"
    finally:
        with _admin(target, f"drop the run's schema {schema} (`./pooler-lab target clean FILE` will)") as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@contextmanager
def rest_table(target: TargetFile, run_id: str) -> Iterator[str]:
    """The table the REST experiments write: the REST tier serves only its exposed schema (public on Supabase),
    so it is `public.<the run's schema name>`, created for the run, readable and writable (payload only) by anon,
    announced to PostgREST (`NOTIFY pgrst, 'reload schema'`), and dropped at the end."""
    table = schema_for(run_id)
    with _admin(target, "create the run's REST table") as conn:
        conn.execute(TABLE_DDL.format(schema="public").replace("public.lab_items", f'public."{table}"'))
    try:  # from here on the table exists: whatever fails (a grant anon may not get), it is dropped
        with _admin(target, f"let anon write the run's REST table public.{table}") as conn:
            conn.execute(f'GRANT SELECT, INSERT (payload) ON public."{table}" TO anon')
            conn.execute(f'GRANT USAGE ON SEQUENCE public."{table}_id_seq" TO anon')
            conn.execute("NOTIFY pgrst, 'reload schema'")
        yield table
    finally:
        with _admin(
            target, f"drop the run's REST table public.{table} (`./pooler-lab target clean FILE` will)"
        ) as conn:
            conn.execute(f'DROP TABLE IF EXISTS public."{table}"')
            conn.execute("NOTIFY pgrst, 'reload schema'")


@contextmanager
def _admin(target: TargetFile, what: str) -> Iterator[psycopg.Connection]:
    """A connection to the target's home endpoint for the lab's housekeeping; a failure is one line (no DSN, no traceback)."""
    home = target.home()
    connected = False
    try:
        with bounded(
            home.endpoint(target.name).dsn(),
            BOUND_S,
            f"target {target.name}: {what}",
            autocommit=True,
            prepare_threshold=None,
        ) as conn:
            connected = True
            yield conn
    except psycopg.Error as exc:
        kind, state = failure_kind(exc) if not connected else ("statement", getattr(exc, "sqlstate", None))
        hint = "; the user needs CREATE on the database, or run with --read-only" if state == "42501" else ""
        raise EnvironmentProblem(
            f"target {target.name}: cannot {what} through {home.name}: {kind}: {_first_line(exc)}"
            + (f" [SQLSTATE {state}]" if state else "")
            + hint
        ) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0].strip() if text else type(exc).__name__


def clean(target: TargetFile) -> list[str]:
    """Drop the schemas runs of the lab left on the target (a killed run's): only `pooler_lab_*` schemas this user owns."""
    with _admin(target, "look for the lab's schemas") as conn:
        rows = conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s AND pg_get_userbyid(nspowner) = current_user",
            [SCHEMA_PREFIX.replace("_", r"\_") + "%"],
        ).fetchall()
        for (schema,) in rows:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        tables = conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' "
            "AND c.relkind = 'r' AND c.relname LIKE %s AND pg_get_userbyid(c.relowner) = current_user",
            [SCHEMA_PREFIX.replace("_", r"\_") + "%"],
        ).fetchall()
        for (table,) in tables:
            conn.execute(f'DROP TABLE public."{table}"')
        if tables:
            conn.execute("NOTIFY pgrst, 'reload schema'")
    return [r[0] for r in rows] + [f"public.{t[0]}" for t in tables]


# -- target check ----------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    endpoint: str
    ok: bool
    line: str  # what was found, or what failed and why, in one line
    sqlstate: str | None = None
    observed: dict[str, Any] = field(default_factory=dict)  # what the lab saw there: server and TLS version, round trip


#: libpq hands psycopg a failed startup's FATAL as text only, without its SQLSTATE; these messages name exactly one
#: (PostgreSQL's auth.c, Supavisor's errors/*.ex, which always send XX000).
STARTUP_STATES = (
    ("password authentication failed", "28P01"),
    ("no pg_hba.conf entry", "28000"),
    ("tenant/user", "XX000"),
    ("tenant or user not found", "XX000"),
    ("no tenant identifier", "XX000"),
)


def failure_kind(exc: BaseException) -> tuple[str, str | None]:
    """(what failed, SQLSTATE) for a failed connection: DNS, refused, TLS, authentication, tenant routing, or other."""
    text = str(exc)
    low = text.lower()
    state = getattr(exc, "sqlstate", None) or next(
        (code for needle, code in STARTUP_STATES if needle in low and "fatal" in low), None
    )
    if "tenant" in low or ((state or "").lower() == "xx000" and "not found" in low):
        return "tenant routing", state
    if state in ("28P01", "28000") or "password authentication failed" in low or "authentication failed" in low:
        return "authentication", state
    if (
        "could not translate host name" in low
        or "name or service not known" in low
        or "temporary failure in name resolution" in low
    ):
        return "DNS", state
    if "connection refused" in low:
        return "refused", state
    if "ssl" in low or "certificate" in low or "tls" in low or "no encryption" in low:
        return "TLS", state
    if "timeout" in low or "timed out" in low:
        return "timeout", state
    return "connect", state


def tls_version(host: str, port: int, ca_file: str | None = None, timeout: float = 10.0) -> str | None:
    """The TLS version a PostgreSQL endpoint negotiates (libpq's own handshake does not tell psycopg):
    an SSLRequest, then a handshake of Python's; None if the endpoint declines TLS."""
    ctx = ssl.create_default_context(cafile=ca_file) if ca_file else ssl._create_unverified_context()
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(struct.pack("!ii", 8, 80877103))
        if sock.recv(1) != b"S":
            return None
        with ctx.wrap_socket(sock, server_hostname=host) as tls:
            return tls.version()


def check(target: TargetFile, rounds: int = 5) -> list[Check]:
    """Connect once to each endpoint: server version, TLS version and the measured round-trip time, or why not."""
    out = []
    for name, ep in target.endpoints.items():
        endpoint = ep.endpoint(target.name)
        try:
            with bounded(
                endpoint.dsn(), BOUND_S, f"{name}: no answer", autocommit=True, prepare_threshold=None
            ) as conn:
                version = str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
                tls = (
                    tls_version(ep.host, ep.port, ep.ca_file if ep.sslmode == "verify-full" else None)
                    if conn.pgconn.ssl_in_use
                    else None
                )
                times = []
                for _ in range(rounds):
                    t0 = time.perf_counter()
                    conn.execute("SELECT 1")
                    times.append((time.perf_counter() - t0) * 1000)
            tls_text = tls or "off"
            rtt = statistics.median(times)
            out.append(
                Check(
                    name,
                    True,
                    f"{name}: ok: PostgreSQL {version}, TLS {tls_text}, round trip {rtt:.2f} ms "
                    f"(median of {rounds}), declared {ep.pooler} {ep.pool_mode}",
                    observed={"server_version": version, "tls_version": tls, "measured_rtt_ms": round(rtt, 3)},
                )
            )
        except NoAnswer as exc:
            out.append(Check(name, False, f"{name}: timeout: {exc}"))
        except (psycopg.Error, OSError) as exc:
            kind, state = failure_kind(exc)
            out.append(
                Check(
                    name,
                    False,
                    f"{name}: {kind}: {_first_line(exc)}" + (f" [SQLSTATE {state}]" if state else ""),
                    state,
                )
            )
    if target.rest is not None:
        out.append(_check_rest(target.rest, rounds))
    return out


def _check_rest(rest: TargetRest, rounds: int) -> Check:
    """The REST tier: the TLS version it negotiates and the round trip (a TCP handshake is one)."""
    from lab.topology.tls import negotiated_tls

    try:
        times = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            socket.create_connection((rest.host, rest.port), timeout=10).close()
            times.append((time.perf_counter() - t0) * 1000)
        version = negotiated_tls(rest.host, rest.port, rest.ca_file)
    except (OSError, ssl.SSLError) as exc:
        kind = (
            "TLS"
            if isinstance(exc, ssl.SSLError)
            else "DNS"
            if isinstance(exc, socket.gaierror)
            else "refused"
            if isinstance(exc, ConnectionRefusedError)
            else "connect"
        )
        return Check("rest", False, f"rest: {kind}: {exc}")
    rtt = statistics.median(times)
    return Check(
        "rest",
        True,
        f"rest: ok: https://{rest.host}:{rest.port}/rest/v1/, TLS {version}, round trip {rtt:.2f} ms (TCP connect, "
        f"median of {rounds})",
        observed={"tls_version": version, "measured_rtt_ms": round(rtt, 3)},
    )
