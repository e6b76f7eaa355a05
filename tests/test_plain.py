"""The latency experiment's reference loop (lab.workloads.plain): for every configuration the latency cells measure,
the plain driver call exists and inserts through a real server, on the configuration's own opened driver object."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from lab.clients.registry import client_class
from lab.plan import workload_runners
from lab.workloads.plain import insert_call

TABLE = "lab_plain_check"
MEASURED = [c.name for c in workload_runners(in_process=True)]


@pytest.fixture(scope="module")
def table(topology):  # type: ignore[no-untyped-def]
    with psycopg.connect(topology.admin_dsn(), autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
        conn.execute(f"CREATE TABLE {TABLE} (id serial PRIMARY KEY, payload text NOT NULL)")
        conn.execute(f"GRANT ALL ON {TABLE}, {TABLE}_id_seq TO {topology.endpoint('direct').user}")
    yield TABLE
    with psycopg.connect(topology.admin_dsn(), autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {TABLE}")


@pytest.mark.parametrize("name", MEASURED)
def test_every_measured_configuration_has_a_plain_driver_call_that_inserts(topology, table: str, name: str) -> None:  # type: ignore[no-untyped-def]
    """The plain call returns the row it inserted, twice (a driver that prepares on the second call must too), and
    leaves it committed: the server sees it from another connection."""
    client = client_class(name)(topology.endpoint("direct").dsn(), 1, timeout=5.0)

    async def go() -> list[str]:
        await client.open()
        try:
            call = insert_call(client, table)
            assert call is not None, f"{name}: no plain driver call for {type(client).__name__}"
            got = []
            for i in range(2):
                got.append((await call(f"{name}-{i}"))[1])  # (id, payload)
            return got
        finally:
            await client.close()

    assert asyncio.run(go()) == [f"{name}-0", f"{name}-1"]
    with psycopg.connect(topology.admin_dsn()) as conn:
        seen = conn.execute(f"SELECT count(*) FROM {table} WHERE payload LIKE %s", [f"{name}-%"]).fetchone()
    assert seen == (2,)
