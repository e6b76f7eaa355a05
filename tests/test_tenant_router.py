"""The Supavisor-style router on a real PgBouncer: logins as Supavisor answers them (its source is cited in
lab/proxies/tenant.py), startup parameters accepted and dropped, the session passed on after the login."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from lab.proxies.tenant import OTHER_REGION, OTHER_TENANT, ROUTES, TenantRouter
from lab.topology.supavisor_api import TENANT


def _connect(dsn: str, **kwargs: object) -> object:
    async def go() -> object:
        conn = await asyncpg.connect(
            dsn, timeout=5, statement_cache_size=0, **kwargs
        )  # nothing named: no leftover can collide
        try:
            return await conn.fetchval("SHOW jit")
        finally:
            await conn.close()

    return asyncio.run(go())


@pytest.fixture(scope="module")
def routers(topology):  # type: ignore[no-untyped-def]
    with (
        TenantRouter.in_front_of(topology, ROUTES, TENANT) as here,
        TenantRouter.in_front_of(topology, OTHER_REGION, OTHER_TENANT) as far,
    ):
        yield {**here, **far}


def test_the_right_user_logs_in_and_a_startup_parameter_is_dropped(routers) -> None:  # type: ignore[no-untyped-def]
    endpoint, router = routers["tenant-proxy-transaction"]
    # PgBouncer itself refuses jit as a startup parameter; through the router it is accepted and has no effect
    assert _connect(endpoint.dsn(user=f"{endpoint.user}.{TENANT}"), server_settings={"jit": "off"}) == "on"
    assert "jit" in router.dropped[-1]


@pytest.mark.parametrize(
    "user, password, sqlstate, text",
    [
        (
            "{role}.{tenant}",
            "wrong",
            "28P01",
            'password authentication failed for user "{role}"',
        ),  # PgBouncer said 08P01
        ("lab_nobody.{tenant}", None, "XX000", "(EAUTHQUERY) user not found in the database"),
        ("{role}.someoneelse", None, "XX000", "(ENOTFOUND) tenant/user {role}.someoneelse not found"),
        ("{role}", None, "XX000", "(ENOIDENTIFIER) no tenant identifier provided"),
    ],
)
def test_refusals_are_supavisors(routers, user: str, password: str | None, sqlstate: str, text: str) -> None:  # type: ignore[no-untyped-def]
    endpoint, _ = routers["tenant-proxy-transaction"]
    role = endpoint.user
    with pytest.raises(asyncpg.PostgresError) as info:
        _connect(endpoint.dsn(user=user.format(role=role, tenant=TENANT), password=password))
    assert info.value.sqlstate == sqlstate
    assert str(info.value).startswith(text.format(role=role))


def test_another_regions_pooler_does_not_know_the_project(routers) -> None:  # type: ignore[no-untyped-def]
    endpoint, _ = routers["tenant-proxy-other-region"]
    with pytest.raises(asyncpg.PostgresError) as info:
        _connect(endpoint.dsn(user=f"{endpoint.user}.{TENANT}"))
    assert info.value.sqlstate == "XX000" and f"tenant/user {endpoint.user}.{TENANT} not found" in str(info.value)
