"""psycopg2 and the event loop (claim C11): loop lag while a 200 ms query runs, called straight
from a coroutine, through the RCA's thread-pool executor, and with asyncpg for comparison."""

from __future__ import annotations

import pytest

from lab.plan import Cell
from lab.results.measures import LoopLagMeasures
from lab.results.outcome import OK
from lab.results.recorder import Recorder
from lab.topology.model import Topology
from lab.workloads.loop_lag import QUERY_S, measure


@pytest.mark.experiment("loop-lag")
def test_loop_lag(cell: Cell, lab_topology: Topology, record: Recorder) -> None:
    result = measure(cell.client.name, lab_topology.endpoint(cell.topology).dsn())
    record(OK, LoopLagMeasures(max_lag_ms=result.max_lag_ms, query_ms=result.query_ms, query_sleep_ms=QUERY_S * 1000))
