"""Session state through every topology (claims C2, C10): SET, named prepared statements,
temporary tables, advisory locks and LISTEN/NOTIFY, set in one transaction and looked for in
a later one on the same client connection while other clients keep the pooler busy; and
settings one client makes, looked for by another client (`leak-*`)."""

from __future__ import annotations

import psycopg
import pytest

from lab.plan import Cell
from lab.results.measures import StateMeasures
from lab.results.recorder import Recorder
from lab.topology.model import Topology
from lab.workloads.session_state import BusyPool, leak_probe, probe


@pytest.mark.experiment("session-state")
def test_session_state(cell: Cell, lab_topology: Topology, record: Recorder) -> None:
    endpoint = lab_topology.endpoint(cell.topology)
    direct = lab_topology.endpoint("direct")
    pooled = endpoint.facts.pool_mode == "transaction"
    leak = cell.scenario.startswith("leak-")
    if leak:  # the second client looks for the first one's server connection itself: no other traffic needed
        result = leak_probe(cell.case, endpoint.dsn(), pooled)
    else:
        with BusyPool(endpoint.dsn()):
            result = probe(cell.case, endpoint.dsn(), direct.dsn(), pooled=pooled)
    # what a probe leaves on a server connection (locks, temp tables, listeners) must not reach later cells
    with psycopg.connect(lab_topology.admin_dsn(), autocommit=True) as conn:
        for pid in set(result.pids):
            conn.execute("SELECT pg_terminate_backend(%s)", [pid])
    state = ("leaked" if result.kept else "not leaked") if leak else ("kept" if result.kept else "lost")
    record(
        result.outcome,
        StateMeasures(
            state=state,
            seen=result.seen,
            backend_pids=result.pids,
            same_backend=len(set(result.pids)) == 1,
            attempts_to_move=result.attempts,
        ),
    )
