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
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING

from lab.proxies.pgwire import Framer, error_response, startup_message, startup_params
from lab.proxies.base import ThreadedProxy

if TYPE_CHECKING:
    from lab.topology.model import Endpoint, Topology

SUPAVISOR_SOURCE = "https://github.com/supabase/supavisor/blob/main/lib/supavisor/errors/tenant_or_user_not_found_error.ex"
SQLSTATE = "XX000"


def not_found_message(user: str, tenant: str) -> str:
    return f"(ENOTFOUND) tenant/user {user}.{tenant} not found"


#: The tenant the lab's routers know, and the user names the tenant experiment logs in with.
TENANT = "labproject01"
USER_KINDS = ("tenant-right-user", "tenant-wrong-ref", "tenant-no-ref")
def tenant_user(user: str, tenant: str | None, kind: str) -> str:
    """The user name a tenant cell logs in with: `<role>.<ref>` with the right ref, a wrong one, or none.
    `user` may be the plain role (the lab's router, which knows `tenant`) or Supabase's `role.ref` (a target)."""
    role, _, ref = user.partition(".")
    ref = tenant or ref
    return {"tenant-right-user": f"{role}.{ref}", "tenant-wrong-ref": f"{role}.someoneelse", "tenant-no-ref": role}[kind]


#: router topology -> the pooler it routes to
ROUTES = {"tenant-proxy-transaction": "pgbouncer-transaction", "tenant-proxy-session": "pgbouncer-session"}

NO_IDENTIFIER_MESSAGE = "(ENOIDENTIFIER) no tenant identifier provided (external_id or sni_hostname required)"


class TenantRouter(ThreadedProxy):
    """Routes `<user>.<tenant>` to the pooler as `<user>`; refuses every other tenant."""

    def __init__(self, target_host: str, target_port: int, tenant: str, delay_s: float = 0.0) -> None:
        super().__init__(target_host, target_port)
        self.tenant, self.delay_s = tenant, delay_s
        self.refused: list[str] = []

    def __enter__(self) -> "TenantRouter":
        super().__enter__()
        return self

    @classmethod
    @contextmanager
    def in_front_of(cls, topology: "Topology", routes: Mapping[str, str], tenant: str) -> Iterator[dict[str, "Endpoint"]]:
        """A router per route (router topology -> pooler topology); yields the routers' endpoints."""
        with ExitStack() as stack:
            endpoints = {}
            for name, pooler in routes.items():
                target = topology.endpoint(pooler)
                router = stack.enter_context(cls(target.host, target.port, tenant))
                endpoints[name] = target.via(
                    router.port, topology=name, plain=True, routes_to=pooler, tenant=tenant, refusal_delay_s=router.delay_s,
                    tenant_router="lab.proxies.tenant (stand-in for Supavisor's tenant routing)")
            yield endpoints

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
        try:
            server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.close()
            return
        server_w.write(startup_message({**params, "user": role}) + bytes(framer.buffer))
        await server_w.drain()
        await asyncio.gather(self.pipe(client_r, server_w), self.pipe(server_r, client_w))
