"""The lab's stand-in for PostgREST, for machines where PostgREST cannot be installed.

It implements the part of PostgREST's HTTP interface that the RCA and Supabase's
Python client use, and runs per request what PostgREST runs: one transaction that
sets the role and request.jwt.claims with set_config(..., true), then the statement,
through its own connection pool logged in as the authenticator role. It reads
PostgREST's own environment (PGRST_DB_URI, PGRST_JWT_SECRET, PGRST_DB_ANON_ROLE,
PGRST_DB_SCHEMAS, PGRST_DB_POOL, PGRST_SERVER_HOST/PORT), so the compose file's
postgrest service configures both. Every row measured through it says so.

Also like Supabase's gateway (not PostgREST itself), a request must carry an
`apikey` header holding a JWT signed with the same secret.

    python -m lab.proxies.postgrest      # with the PGRST_* environment set
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import asyncpg
import jwt
from aiohttp import web

NAME = "pooler-lab PostgREST stand-in"
#: the key of its root document that says it stands in for PostgREST (what the lab reads to name it in rows)
STAND_IN_MARK = "x-pooler-lab-stand-in-for"
OPERATORS = {"eq": "=", "neq": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


def describe() -> str:
    """What rows record as the REST server: the stand-in and the stack it runs on."""
    return f"{NAME} (aiohttp {version('aiohttp')}, asyncpg {version('asyncpg')})"


class ApiError(Exception):
    """A PostgREST-shaped error: HTTP status and the JSON body PostgREST sends."""

    def __init__(
        self, status: int, code: str | None, message: str, details: str | None = None, hint: str | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.body = status, {"code": code, "details": details, "hint": hint, "message": message}


# PostgREST's mapping of SQLSTATE classes to HTTP status (docs: errors.html#http-status-codes)
def _status_for(sqlstate: str, role: str, anon_role: str) -> int:
    if sqlstate == "42501":
        return 401 if role == anon_role else 403
    exact = {
        "23502": 400,
        "23505": 409,
        "23503": 409,
        "25006": 405,
        "42P01": 404,
        "42883": 404,
        "P0001": 400,
        "53400": 500,
    }
    if sqlstate in exact:
        return exact[sqlstate]
    prefix = sqlstate[:2]
    return {
        "08": 503,
        "09": 500,
        "0L": 403,
        "0P": 403,
        "23": 409,
        "25": 500,
        "28": 403,
        "2D": 500,
        "38": 500,
        "39": 500,
        "3B": 500,
        "40": 500,
        "53": 503,
        "54": 500,
        "55": 500,
        "57": 500,
        "58": 500,
        "F0": 500,
        "HV": 500,
        "P0": 500,
        "XX": 500,
        "42": 400,
        "22": 400,
    }.get(prefix, 400)


def _quote(ident: str) -> str:
    return '"' + ident.replace('"', '""') + '"'


@dataclass(frozen=True)
class Settings:
    db_uri: str
    jwt_secret: str
    anon_role: str | None
    schema: str
    pool_size: int
    host: str
    port: int

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        missing = [k for k in ("PGRST_DB_URI", "PGRST_JWT_SECRET") if not env.get(k)]
        if missing:
            raise SystemExit(f"{NAME}: set {', '.join(missing)} (PostgREST's own settings)")
        host = env.get("PGRST_SERVER_HOST", "127.0.0.1")
        return cls(
            db_uri=env["PGRST_DB_URI"],
            jwt_secret=env["PGRST_JWT_SECRET"],
            anon_role=env.get("PGRST_DB_ANON_ROLE") or None,
            schema=env.get("PGRST_DB_SCHEMAS", "public").split(",")[0].strip(),
            pool_size=int(env.get("PGRST_DB_POOL", "10")),
            host="0.0.0.0" if host in ("*", "*4") else host,
            port=int(env.get("PGRST_SERVER_PORT", "3000")),
        )


class StandIn:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pool: asyncpg.Pool | None = None
        self.columns: dict[str, dict[str, str]] = {}  # the schema cache: table -> column -> type

    async def start(self, app: web.Application) -> None:
        self.pool = await asyncpg.create_pool(self.settings.db_uri, min_size=1, max_size=self.settings.pool_size)
        await self.load_schema()
        # like PostgREST: `NOTIFY pgrst, 'reload schema'` reloads the schema cache (a new table becomes reachable)
        self.listener = await asyncpg.connect(self.settings.db_uri)
        await self.listener.add_listener("pgrst", self._notified)

    def _notified(self, conn: object, pid: int, channel: str, payload: str) -> None:
        if payload in ("", "reload schema"):
            asyncio.get_running_loop().create_task(self.load_schema())

    async def load_schema(self) -> None:
        assert self.pool is not None
        # pg_catalog, as PostgREST's schema cache does: information_schema hides what the
        # authenticator role has no privilege on, and it has none of its own (NOINHERIT)
        rows = await self.pool.fetch(
            "SELECT c.relname AS table_name, a.attname AS column_name, format_type(a.atttypid, a.atttypmod) AS data_type "
            "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = $1 AND c.relkind IN ('r', 'v', 'm', 'f', 'p') AND a.attnum > 0 AND NOT a.attisdropped "
            "ORDER BY c.relname, a.attnum",
            self.settings.schema,
        )
        columns: dict[str, dict[str, str]] = {}
        for r in rows:
            columns.setdefault(r["table_name"], {})[r["column_name"]] = r["data_type"]
        self.columns = columns

    async def stop(self, app: web.Application) -> None:
        if getattr(self, "listener", None) is not None:
            await self.listener.close()
        if self.pool is not None:
            await self.pool.close()

    # -- auth ---------------------------------------------------------------------------
    def _decode(self, token: str) -> dict[str, Any]:
        try:
            return jwt.decode(token, self.settings.jwt_secret, algorithms=["HS256"], options={"verify_aud": False})
        except jwt.ExpiredSignatureError:
            raise ApiError(401, "PGRST303", "JWT expired") from None
        except jwt.InvalidSignatureError:
            raise ApiError(401, "PGRST301", "JWSError JWSInvalidSignature") from None
        except jwt.PyJWTError as exc:
            raise ApiError(401, "PGRST301", f"JWSError {type(exc).__name__}: {exc}") from None

    def authenticate(self, request: web.Request) -> tuple[str, dict[str, Any]]:
        apikey = request.headers.get("apikey")
        if not apikey:
            raise ApiError(
                401, None, "No API key found in request", hint="No `apikey` request header or url param was found."
            )
        self._decode(apikey)
        auth = request.headers.get("Authorization", "")
        if not auth:
            if not self.settings.anon_role:
                raise ApiError(401, "PGRST302", "Anonymous access is disabled")
            return self.settings.anon_role, {"role": self.settings.anon_role}
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise ApiError(
                401, "PGRST301", "JWSError (CompactDecodeError Invalid number of parts: Expected 3 parts; got 1)"
            )
        claims = self._decode(token.strip())
        role = claims.get("role") or self.settings.anon_role
        if not role:
            raise ApiError(401, "PGRST302", "Anonymous access is disabled")
        return str(role), claims

    # -- the statement, inside PostgREST's per-request transaction ------------------------
    async def _run(
        self, request: web.Request, role: str, claims: dict[str, Any], sql: str, *args: Any, read_only: bool
    ) -> Any:
        assert self.pool is not None
        async with self.pool.acquire() as conn:
            try:
                async with conn.transaction(readonly=read_only, isolation="read_committed"):
                    # switching to the JWT's role fails like the statement can (a role that does not exist: 22023,
                    # one the authenticator may not become: 42501): both are the client's error, as in PostgREST
                    await conn.execute(
                        "SELECT set_config('search_path', $1, true), set_config('role', $2, true), "
                        "set_config('request.jwt.claims', $3, true), set_config('request.method', $4, true), "
                        "set_config('request.path', $5, true)",
                        _quote(self.settings.schema),
                        role,
                        json.dumps(claims),
                        request.method,
                        request.path,
                    )
                    return await conn.fetchval(sql, *args)
            except asyncpg.PostgresError as exc:
                state = exc.sqlstate or "XX000"
                raise ApiError(
                    _status_for(state, role, self.settings.anon_role or ""),
                    state,
                    exc.args[0] if exc.args else str(exc),
                    getattr(exc, "detail", None),
                    getattr(exc, "hint", None),
                ) from None

    def _table(self, request: web.Request) -> tuple[str, dict[str, str]]:
        table = request.match_info["table"]
        if table not in self.columns:
            raise ApiError(
                404, "PGRST205", f"Could not find the table '{self.settings.schema}.{table}' in the schema cache"
            )
        return table, self.columns[table]

    async def insert(self, request: web.Request) -> web.Response:
        role, claims = self.authenticate(request)
        table, columns = self._table(request)
        try:
            body = await request.json(loads=json.loads)
        except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: JSON nested past the parser's depth
            raise ApiError(400, "PGRST102", "Empty or invalid json") from None
        items = body if isinstance(body, list) else [body]
        if not items or not all(isinstance(i, dict) for i in items):
            raise ApiError(400, "PGRST102", "Empty or invalid json")
        keys = list(dict.fromkeys(k for item in items for k in item))
        if any(set(item) != set(keys) for item in items):
            raise ApiError(400, "PGRST102", "All object keys must match")
        for k in keys:
            if k not in columns:
                raise ApiError(400, "PGRST204", f"Could not find the '{k}' column of '{table}' in the schema cache")
        prefer = {p.strip() for h in request.headers.getall("Prefer", []) for p in h.split(",")}
        representation = "return=representation" in prefer
        qualified = f"{_quote(self.settings.schema)}.{_quote(table)}"
        # `{}` inserts a row of the table's defaults (PostgREST #616/#618): a select of no columns
        cols = ", ".join(_quote(k) for k in keys)
        source = (
            f"INSERT INTO {qualified}({cols}) " if keys else f"INSERT INTO {qualified} "
        ) + f"SELECT {cols} FROM json_populate_recordset(NULL::{qualified}, $1::json) _ RETURNING {qualified}.*"
        body_out = "coalesce(json_agg(_), '[]')::text" if representation else "''"
        sql = f"WITH pgrst_source AS ({source}) SELECT {body_out} FROM (SELECT * FROM pgrst_source) _"
        result = await self._run(request, role, claims, sql, json.dumps(items), read_only=False)
        headers = {"Content-Range": "*/*"}
        if representation:
            return web.Response(status=201, text=result, content_type="application/json", headers=headers)
        return web.Response(status=201, headers=headers)

    async def select(self, request: web.Request) -> web.Response:
        role, claims = self.authenticate(request)
        table, columns = self._table(request)
        qualified = f"{_quote(self.settings.schema)}.{_quote(table)}"
        select = request.query.get("select", "*")
        wanted = list(columns) if select.strip() == "*" else [c.strip() for c in select.split(",") if c.strip()]
        for c in wanted:
            if c not in columns:
                raise ApiError(400, "42703", f"column {table}.{c} does not exist")
        where, args = [], []
        for key, value in request.query.items():
            if key in ("select", "limit", "offset", "order"):
                continue
            if key not in columns:
                raise ApiError(400, "42703", f"column {table}.{key} does not exist")
            op, _, operand = value.partition(".")
            if op not in OPERATORS or not _:
                raise ApiError(
                    400,
                    "PGRST100",
                    f'"failed to parse filter ({value})" (line 1, column 1)',
                    details=f"unexpected '{op}'",
                )
            args.append(operand)
            where.append(f"{_quote(key)} {OPERATORS[op]} CAST(${len(args)}::text AS {columns[key]})")
        sql = f"SELECT {', '.join(_quote(c) for c in wanted)} FROM {qualified}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        if "limit" in request.query:
            if not re.fullmatch(
                r"[0-9]{1,18}", request.query["limit"]
            ):  # str.isdigit() takes '²', which int() does not
                raise ApiError(
                    400, "PGRST100", f'"failed to parse limit ({request.query["limit"]})" (line 1, column 1)'
                )
            sql += f" LIMIT {int(request.query['limit'])}"
        sql = f"SELECT coalesce(json_agg(_), '[]')::text FROM ({sql}) _"
        result = await self._run(request, role, claims, sql, *args, read_only=True)
        return web.Response(status=200, text=result, content_type="application/json")


@web.middleware
async def errors(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return web.json_response(exc.body, status=exc.status)


def make_app(settings: Settings) -> web.Application:
    standin = StandIn(settings)
    app = web.Application(middlewares=[errors])
    app.on_startup.append(standin.start)
    app.on_cleanup.append(standin.stop)
    # PostgREST serves tables at the root; the gateway maps /rest/v1/ onto it
    app.router.add_post("/{table}", standin.insert)
    app.router.add_get("/{table}", standin.select)

    async def root(request: web.Request) -> web.Response:
        # PostgREST answers / with its OpenAPI document; the stand-in names itself there (what a Docker run reads)
        return web.json_response({"info": {"title": NAME, "description": describe(), STAND_IN_MARK: "PostgREST"}})

    app.router.add_get("/", root)
    return app


def main() -> None:
    settings = Settings.from_env()
    # aiohttp stops gracefully on SIGINT and SIGTERM, closing the pool
    web.run_app(
        make_app(settings), host=settings.host, port=settings.port, print=None, access_log=None, handle_signals=True
    )


if __name__ == "__main__":
    main()
