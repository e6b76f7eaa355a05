"""Tenant routing as Supabase's pooler (Supavisor) does it, in front of a PgBouncer.

Supavisor serves many projects on one address and reads the project from the user
name: `postgres.<project-ref>`. This proxy reads the client's startup packet, routes
a known tenant to the pooler behind it with the user name rewritten to the plain
role, and answers an unknown tenant, or a user name without one, with the error
Supavisor sends, as its source defines it:

- lib/supavisor/errors/tenant_or_user_not_found_error.ex: code ENOTFOUND, message
  "tenant/user <user>.<tenant> not found", answered after a 2.5 s response delay;
- lib/supavisor/errors/no_tenant_identifier_error.ex: code ENOIDENTIFIER, "no tenant
  identifier provided (external_id or sni_hostname required)";
- lib/supavisor/error.ex: sent as a FATAL ErrorResponse with SQLSTATE XX000 and the
  message prefixed by the code in parentheses.

Older Supavisor releases sent the same XX000 FATAL as "Tenant or user not found",
the text in the RCA. The response delay is off by default (`delay_s`) so a matrix
run does not wait 2.5 s per refused client; rows record it.

Startup parameters are handled as Supavisor handles them (`supavisor_startup`), not
passed through: Supavisor never refuses an unknown startup parameter, reads `user`,
`database`, `application_name`, `search_path` and a few keys of `options` itself, and
opens its server connections with a startup message of its own. So the RCA's
`server_settings={'jit': 'off'}` and `options='-c jit=off'` connect through it, and
have no effect on the server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING

from lab.proxies.base import ThreadedProxy
from lab.proxies.pgwire import Framer, auth_code, error_fields, error_response, startup_message, startup_params

if TYPE_CHECKING:
    from lab.topology.model import Endpoint, Topology

SUPAVISOR_SOURCE = (
    "https://github.com/supabase/supavisor/blob/main/lib/supavisor/errors/tenant_or_user_not_found_error.ex"
)
#: the Supavisor commit whose startup handling `supavisor_startup` follows (2026-08-20)
SUPAVISOR_COMMIT = "03e5cc5697904df3b98b2e4a587bbbd5bc054157"
STARTUP_SOURCES = tuple(
    f"https://github.com/supabase/supavisor/blob/{SUPAVISOR_COMMIT}/lib/supavisor/{path}"
    for path in (
        "protocol/client.ex",  # decode_startup_packet: any key accepted; only `user` is required
        "protocol/startup_options.ex",  # `options`: -c name=value and --name=value, backslash escapes as pg_split_opts
        "client_handler/protocol_helpers.ex",  # extract_and_validate_user_info: search_path, options' jit and client_tls
        "db_handler.ex",  # send_startup: the server gets user, database, application_name and options(search_path) only
        "client_handler.ex",  # maybe_set_application_name: the client's application_name is SET in session mode only
    )
)
SQLSTATE = "XX000"


def not_found_message(user: str, tenant: str) -> str:
    return f"(ENOTFOUND) tenant/user {user}.{tenant} not found"


#: The user names the tenant experiment logs in with (the tenant the lab's routers know: TENANT).
USER_KINDS = ("tenant-right-user", "tenant-wrong-ref", "tenant-no-ref")


def tenant_user(user: str, tenant: str | None, kind: str) -> str:
    """The user name a tenant cell logs in with: `<role>.<ref>` with the right ref, a wrong one, or none.
    `user` may be the plain role (the lab's router, which knows `tenant`) or Supabase's `role.ref` (a target)."""
    role, _, ref = user.partition(".")
    ref = tenant or ref
    return {"tenant-right-user": f"{role}.{ref}", "tenant-wrong-ref": f"{role}.someoneelse", "tenant-no-ref": role}[
        kind
    ]


#: router topology -> the pooler it routes to
ROUTES = {"tenant-proxy-transaction": "pgbouncer-transaction", "tenant-proxy-session": "pgbouncer-session"}
#: a router of another region: the same kind of pooler behind it, but it hosts another tenant, so it answers the
#: lab's project as Supabase's pooler of another region answers a project it does not host
OTHER_REGION = {"tenant-proxy-other-region": "pgbouncer-transaction"}
OTHER_TENANT = "otherregion01"

NO_IDENTIFIER_MESSAGE = "(ENOIDENTIFIER) no tenant identifier provided (external_id or sni_hostname required)"
#: Supavisor looks the user up with the tenant's auth_query before any password exchange; no row is this error
#: (lib/supavisor/auth_query.ex, errors/auth_query_error.ex), sent as XX000 with its code (error.ex)
UNKNOWN_USER_MESSAGE = "(EAUTHQUERY) user not found in the database"


def wrong_password_message(role: str) -> str:
    """errors/wrong_password_error.ex: sent as FATAL 28P01 without the code prefix, PostgreSQL's own wording;
    `user` is the role part of the user name (client_handler/auth_methods/scram.ex: context.db_user)."""
    return f'password authentication failed for user "{role}"'


def parse_options(value: str) -> dict[str, str]:
    """Supavisor's StartupOptions.parse: `-c name=value` and `--name=value` settings of an `options` string,
    tokenized on whitespace with backslash escapes; anything else is skipped."""
    tokens: list[str] = []
    current: list[str] | None = None
    chars = iter(value)
    for ch in chars:
        if ch == "\\":
            nxt = next(chars, "")
            current = (current or []) + [nxt]
        elif ch.isspace():
            if current is not None:
                tokens.append("".join(current))
            current = None
        else:
            current = (current or []) + [ch]
    if current is not None:
        tokens.append("".join(current))
    settings: dict[str, str] = {}
    i = 0
    while i < len(tokens):
        pair = (
            tokens[i + 1]
            if tokens[i] == "-c" and i + 1 < len(tokens)
            else tokens[i][2:]
            if tokens[i].startswith("--")
            else None
        )
        i += 2 if tokens[i] == "-c" else 1
        if pair and "=" in pair:
            name, setting = pair.split("=", 1)
            settings[name] = setting
    return settings


def supavisor_startup(params: Mapping[str, str], role: str, session: bool) -> tuple[dict[str, str], list[str]]:
    """The startup message Supavisor sends the server for a client's startup parameters, and the client's
    parameters it drops. The server gets `user`, `database` and, in session mode, the client's
    `application_name` (SET after connecting there; sent here as the parameter PgBouncer tracks). Every
    other parameter (`jit`, `DateStyle`, `options`...) is read or ignored, never refused, never forwarded.
    Supavisor passes `search_path` on inside `options`; PgBouncer 1.18 behind this router refuses
    `options`, so the router drops it too, and lists it among the dropped."""
    out = {"user": role, "database": params.get("database") or role}
    if session and params.get("application_name"):
        out["application_name"] = params["application_name"]
    dropped = sorted(k for k in params if k not in out)
    if "options" in params:
        dropped = [d for d in dropped if d != "options"] + [
            f"options({', '.join(sorted(parse_options(params['options']))) or params['options']})"
        ]
    return out, dropped


class TenantRouter(ThreadedProxy):
    """Routes `<user>.<tenant>` to the pooler as `<user>`; refuses every other tenant."""

    def __init__(
        self,
        target_host: str,
        target_port: int,
        tenant: str,
        delay_s: float = 0.0,
        session: bool = False,
        roles: frozenset[str] | None = None,
    ) -> None:
        super().__init__(target_host, target_port)
        self.tenant, self.delay_s, self.session = tenant, delay_s, session
        self.roles = roles  # the roles the tenant's auth_query would find; None: every role
        self.refused: list[str] = []
        self.dropped: list[list[str]] = []  # per routed client: the startup parameters not forwarded

    def __enter__(self) -> TenantRouter:
        super().__enter__()
        return self

    @classmethod
    @contextmanager
    def in_front_of(
        cls, topology: Topology, routes: Mapping[str, str], tenant: str
    ) -> Iterator[dict[str, tuple[Endpoint, TenantRouter]]]:
        """A router per route (router topology -> pooler topology) whose pooler runs (a run narrowed to other
        topologies starts none); yields each router's endpoint and the router."""
        with ExitStack() as stack:
            endpoints = {}
            routers = []
            for name, pooler in routes.items():
                if pooler not in topology.endpoints:
                    continue
                target = topology.endpoint(pooler)
                router = stack.enter_context(
                    cls(
                        target.host,
                        target.port,
                        tenant,
                        session=target.facts.pool_mode == "session",
                        roles=frozenset({target.user, topology.superuser} - {""}),
                    )
                )
                routers.append(router)
                endpoints[name] = target.via(
                    router.port,
                    topology=name,
                    plain=True,
                    routes_to=pooler,
                    tenant=tenant,
                    refusal_delay_s=router.delay_s,
                    tenant_router="lab.proxies.tenant (stand-in for Supavisor's tenant routing)",
                    startup_parameters=f"as Supavisor {SUPAVISOR_COMMIT[:8]}: user, database"
                    f"{', application_name' if router.session else ''} forwarded; any other accepted and dropped",
                )
            yield {name: (endpoints[name], r) for name, r in zip(endpoints, routers, strict=True)}

    async def _refuse(self, writer: asyncio.StreamWriter, text: str) -> None:
        self.refused.append(text)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        writer.write(error_response("FATAL", SQLSTATE, text))
        await writer.drain()
        writer.close()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        framer = Framer("client")
        startup = None
        try:
            while startup is None:
                data = await client_r.read(65536)
                if not data:
                    client_w.close()
                    return
                for msg in framer.feed(data):
                    if msg.kind in ("SSLRequest", "GSSENCRequest"):
                        client_w.write(b"N")  # no TLS at this hop: the client goes on in plain text
                        await client_w.drain()
                    elif msg.kind == "CancelRequest":
                        client_w.close()
                        return
                    elif msg.kind == "Startup":
                        startup = msg
        except (ConnectionError, OSError):
            return
        params = startup_params(startup)
        user = params.get("user", "")
        if "." not in user:
            await self._refuse(client_w, NO_IDENTIFIER_MESSAGE)
            return
        role, tenant = user.rsplit(".", 1)
        if tenant != self.tenant:
            await self._refuse(client_w, not_found_message(role, tenant))
            return
        if self.roles is not None and role not in self.roles:
            await self._refuse(client_w, UNKNOWN_USER_MESSAGE)
            return
        try:
            server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.close()
            return
        forwarded, dropped = supavisor_startup(params, role, self.session)
        self.dropped.append(dropped)
        server_w.write(startup_message(forwarded) + bytes(framer.buffer))
        await server_w.drain()
        upstream = asyncio.ensure_future(self.pipe(client_r, server_w))  # the client's SASL messages, then the rest
        if await self._authentication(server_r, client_w, role):
            await asyncio.gather(upstream, self.pipe(server_r, client_w))
        else:
            upstream.cancel()
            server_w.close()

    async def _authentication(self, server_r: asyncio.StreamReader, client_w: asyncio.StreamWriter, role: str) -> bool:
        """The pooler's side of the login, passed on until AuthenticationOk; a refused password is answered as
        Supavisor answers it (28P01, PostgreSQL's wording), where PgBouncer 1.18 says 08P01 'SASL authentication
        failed'. False when the login ended there."""
        framer = Framer("server", started=True)
        try:
            while data := await server_r.read(65536):
                messages = framer.feed(data)
                for i, msg in enumerate(messages):
                    if msg.kind == "ErrorResponse":
                        code = error_fields(msg).get("C", "")
                        refused = code in ("28P01", "28000") or (
                            code == "08P01" and "authentication" in error_fields(msg).get("M", "")
                        )
                        client_w.write(
                            error_response("FATAL", "28P01", wrong_password_message(role)) if refused else msg.encode()
                        )
                        await client_w.drain()
                        client_w.close()
                        return False
                    client_w.write(msg.encode())
                    if auth_code(msg) == 0:  # AuthenticationOk: the rest is the session's, passed on unread
                        client_w.write(b"".join(m.encode() for m in messages[i + 1 :]) + bytes(framer.buffer))
                        await client_w.drain()
                        return True
                await client_w.drain()
        except (ConnectionError, OSError):
            pass
        client_w.close()
        return False
