"""psycopg2 and the event loop (claim C11): loop lag while a 200 ms query runs, called straight
from a coroutine, through the RCA's thread-pool executor, and with asyncpg for comparison."""

from __future__ import annotations

import pytest

from lab.clients.base import package_versions
from lab.expectations import Expectation
from lab.judge import record_and_judge
from lab.loop_lag import MODES, QUERY_S, measure
from lab.outcome import OK
from lab.topology import Topology

TOPOLOGIES = ("direct", "pgbouncer-transaction")
CELLS = [(m, t) for t in TOPOLOGIES for m in MODES]


class _Mode:
    def __init__(self, mode: str) -> None:
        self.description = {
            "psycopg2-in-loop": "psycopg2.connect + execute called directly inside a coroutine",
            "psycopg2-executor": "the RCA's execute_query: loop.run_in_executor(ThreadPoolExecutor(max_workers=5), ...)",
            "asyncpg": "asyncpg.connect + execute, for comparison",
        }[mode]
        self.dists = ("asyncpg",) if mode == "asyncpg" else ("psycopg2-binary",)

    def versions(self) -> dict[str, str]:
        return package_versions(self.dists)


@pytest.mark.parametrize("mode, topology", CELLS, ids=[f"{m}-{t}-loop-lag" for m, t in CELLS])
def test_loop_lag(mode: str, topology: str, lab_topology: Topology, expectations: list[Expectation], record_row, run_id: str) -> None:
    endpoint = lab_topology.endpoint(topology)
    result = measure(mode, endpoint.dsn())
    record_and_judge(
        expectations, record_row, run_id=run_id, experiment="loop-lag", cell_id=f"{mode}-{topology}-loop-lag", client=mode,
        client_cls=_Mode(mode), topology=topology, facts=endpoint.facts, scenario="loop-lag", outcome=OK,
        params={"max_lag_ms": result.max_lag_ms, "query_ms": result.query_ms, "query_sleep_ms": QUERY_S * 1000},
    )
