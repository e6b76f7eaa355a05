"""The PostgREST stand-in answers like PostgREST, behind real nginx, over http and https."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import httpx
import jwt
import psycopg
import pytest

from lab.clients.rest import HttpxPerCall, SupabasePy, trust_bundle, use_trust_bundle


@pytest.fixture(scope="module")
def rest(topology, tmp_path_factory):  # type: ignore[no-untyped-def]
    endpoint = topology.endpoint("rest")
    before = os.environ.get("SSL_CERT_FILE")
    use_trust_bundle(trust_bundle(endpoint.ca_file, tmp_path_factory.mktemp("ca")))
    yield endpoint
    if before is None:
        os.environ.pop("SSL_CERT_FILE", None)
    else:
        os.environ["SSL_CERT_FILE"] = before


def _headers(key: str, **extra: str) -> dict[str, str]:
    return {"apikey": key, "Authorization": f"Bearer {key}", **extra}


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_rca_post_as_written_gets_201_and_the_row(rest, tls: bool) -> None:
    """The bar of issue 3: the RCA's own function, unmodified, against the stand-in."""
    client = HttpxPerCall(rest, tls)

    async def go():  # type: ignore[no-untyped-def]
        await client.open()
        return await client.insert({"payload": f"rca-as-written-{tls}"})

    reply = asyncio.run(go())
    assert reply.ok is True and reply.status == 201
    assert isinstance(reply.body, list) and len(reply.body) == 1
    row = reply.body[0]
    assert row["payload"] == f"rca-as-written-{tls}" and isinstance(row["id"], int)
    # PostgREST's per-request transaction: the role switched and the claims published
    assert row["inserted_by"] == "anon" and row["jwt_role"] == "anon"


def test_service_role_key_switches_role(rest) -> None:
    r = httpx.post(
        f"{rest.url()}/rest/v1/lab_items",
        json={"payload": "svc"},
        headers=_headers(rest.keys["service_role"], Prefer="return=representation"),
    )
    assert r.status_code == 201 and r.json()[0]["inserted_by"] == "service_role"


def test_array_body_and_return_minimal(rest) -> None:
    r = httpx.post(
        f"{rest.url()}/rest/v1/lab_items",
        json=[{"payload": "a1"}, {"payload": "a2"}],
        headers=_headers(rest.keys["anon"], Prefer="return=minimal"),
    )
    assert r.status_code == 201 and r.content == b""
    r = httpx.post(
        f"{rest.url()}/rest/v1/lab_items",
        json=[{"payload": "b1"}, {"payload": "b2"}],
        headers=_headers(rest.keys["anon"], Prefer="return=representation"),
    )
    assert r.status_code == 201 and [x["payload"] for x in r.json()] == ["b1", "b2"]


def test_get_with_select_and_eq(rest) -> None:
    created = httpx.post(
        f"{rest.url()}/rest/v1/lab_items",
        json={"payload": "find-me"},
        headers=_headers(rest.keys["anon"], Prefer="return=representation"),
    ).json()[0]
    r = httpx.get(
        f"{rest.url()}/rest/v1/lab_items",
        params={"select": "id,payload", "id": f"eq.{created['id']}"},
        headers=_headers(rest.keys["anon"]),
    )
    assert r.status_code == 200 and r.json() == [{"id": created["id"], "payload": "find-me"}]


def test_supabase_client_inserts_and_selects(rest) -> None:
    async def go():  # type: ignore[no-untyped-def]
        client = SupabasePy(rest, tls=True)
        await client.open()
        try:
            reply = await client.insert({"payload": "via-supabase-py"})
            found = await client.client.table("lab_items").select("payload").eq("id", reply.body[0]["id"]).execute()
            return reply, found.data
        finally:
            await client.close()

    reply, found = asyncio.run(go())
    assert reply.body[0]["payload"] == "via-supabase-py" and found == [{"payload": "via-supabase-py"}]


@pytest.mark.parametrize(
    "what, kwargs, status, code",
    [
        ("invalid json", {"content": b"{", "path": "lab_items"}, 400, "PGRST102"),
        ("unknown column", {"json": {"nope": 1}, "path": "lab_items"}, 400, "PGRST204"),
        ("unknown table", {"json": {"payload": "x"}, "path": "no_such_table"}, 404, "PGRST205"),
        ("not-null violation", {"json": {"payload": None}, "path": "lab_items"}, 400, "23502"),
    ],
)
def test_postgrest_shaped_errors(rest, what: str, kwargs: dict, status: int, code: str) -> None:
    path = kwargs.pop("path")
    r = httpx.post(f"{rest.url()}/rest/v1/{path}", headers=_headers(rest.keys["anon"]), **kwargs)
    assert r.status_code == status, (what, r.text)
    body = r.json()
    assert set(body) == {"code", "details", "hint", "message"} and body["code"] == code


def test_jwt_checks(rest) -> None:
    url = f"{rest.url()}/rest/v1/lab_items"
    assert httpx.post(url, json={"payload": "x"}).status_code == 401  # no apikey at all
    forged = jwt.encode({"role": "service_role"}, "not-the-secret-but-as-long-as-a-real-one", algorithm="HS256")
    r = httpx.post(url, json={"payload": "x"}, headers=_headers(forged))
    assert r.status_code == 401 and r.json()["code"] == "PGRST301"
    # an expired token signed with the right secret: only the secret's holder can make one,
    # so take it from a key the topology issued
    secret_claims = jwt.decode(rest.keys["anon"], options={"verify_signature": False})
    assert secret_claims["role"] == "anon"


def _jwt_secret(topology) -> str:  # type: ignore[no-untyped-def]
    """The JWT secret is only in the run's process environment; read it from the stand-in's record."""
    from lab.topology.runstate import all_runs

    state = next(r for r in all_runs() if r.topology and r.topology["run_id"] == topology.run_id)
    pid = next(p.pid for p in state.processes if p.name == "postgrest")
    env = dict(kv.split("=", 1) for kv in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in kv)
    return env["PGRST_JWT_SECRET"]


def test_expired_token_is_refused(topology, rest) -> None:
    expired = jwt.encode({"role": "anon", "exp": int(time.time()) - 60}, _jwt_secret(topology), algorithm="HS256")
    r = httpx.post(
        f"{rest.url()}/rest/v1/lab_items",
        json={"payload": "x"},
        headers=_headers(rest.keys["anon"]) | {"Authorization": f"Bearer {expired}"},
    )
    assert r.status_code == 401 and r.json()["code"] == "PGRST303"


@pytest.mark.parametrize("name", ["direct", "pgbouncer-transaction", "pgbouncer-session"])
def test_postgres_paths_offer_tls(topology, name: str) -> None:
    ep = topology.endpoint(name)
    with psycopg.connect(ep.dsn(tls=True), connect_timeout=5) as conn:
        assert conn.pgconn.ssl_in_use
    with psycopg.connect(ep.dsn(tls=False), connect_timeout=5) as conn:
        assert not conn.pgconn.ssl_in_use


def test_bad_limit_is_a_postgrest_error(rest) -> None:
    r = httpx.get(
        f"{rest.url()}/rest/v1/lab_items", params={"select": "id", "limit": "ten"}, headers=_headers(rest.keys["anon"])
    )
    assert r.status_code == 400 and r.json()["code"] == "PGRST100"


def _assert_postgrest_error(r: httpx.Response, status: int, code: str | None = None) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"code", "details", "hint", "message"}, body
    assert code is None or body["code"] == code, body


@pytest.mark.parametrize("role, status, code", [("no_such_role", 400, "22023"), ("postgres", 403, "42501")])
def test_a_role_it_cannot_switch_to_is_a_client_error(topology, rest, role: str, status: int, code: str) -> None:
    token = jwt.encode({"role": role}, _jwt_secret(topology), algorithm="HS256")
    r = httpx.post(
        f"{rest.url()}/rest/v1/lab_items",
        json={"payload": "x"},
        headers=_headers(rest.keys["anon"]) | {"Authorization": f"Bearer {token}"},
    )
    _assert_postgrest_error(r, status, code)


def test_odd_bodies_and_parameters_get_postgrest_errors(rest) -> None:
    url, headers = f"{rest.url()}/rest/v1/lab_items", _headers(rest.keys["anon"])
    _assert_postgrest_error(httpx.get(url, params={"limit": "\u00b2"}, headers=headers), 400, "PGRST100")
    nested = ("[" * 100_000 + "]" * 100_000).encode()
    _assert_postgrest_error(
        httpx.post(url, content=nested, headers=headers | {"Content-Type": "application/json"}), 400, "PGRST102"
    )
    _assert_postgrest_error(
        httpx.post(url, json=[{"payload": "a"}, {"payload": "b", "id": 9}], headers=headers), 400, "PGRST102"
    )
    empty = httpx.post(
        url, json={}, headers=headers
    )  # a row of defaults: payload has none, and anon may insert only payload
    assert 400 <= empty.status_code < 500 and set(empty.json()) == {"code", "details", "hint", "message"}, empty.text


def test_clients_cannot_write_the_audit_columns(rest) -> None:
    url = f"{rest.url()}/rest/v1/lab_items"
    for key in ("anon", "service_role"):
        r = httpx.post(url, json={"payload": "x", "inserted_by": "someone-else"}, headers=_headers(rest.keys[key]))
        _assert_postgrest_error(r, 401 if key == "anon" else 403, "42501")
