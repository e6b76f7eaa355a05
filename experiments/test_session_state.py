"""Session state through every topology, in both directions (claims C2, C10): what a client loses between two of
its transactions (state-*), what another client receives on the same server connection (leak-*: settings,
search_path, a temporary table, an advisory lock it can take, a notification it never listened for), and what
another client's DISCARD ALL or RESET ALL takes away from it (discard-all, reset-all). Every name the probes use on
the server is the run's own (lab.workloads.session_state.Names)."""

from __future__ import annotations

import pytest

from lab.plan import Cell
from lab.pytest_plugin import LabRun
from lab.results.measures import StateMeasures
from lab.results.recorder import Recorder
from lab.topology.bounded import bounded
from lab.workloads.session_state import DISCARD_KINDS, BusyPool, Names, discard_probe, leak_probe, probe


@pytest.mark.experiment("session-state")
def test_session_state(cell: Cell[str], lab_run: LabRun, run_id: str, record: Recorder) -> None:
    topology = lab_run.topology
    endpoint = topology.endpoint(cell.topology)
    # notifications are sent from a connection of their own: to the server itself where the topology has it
    direct = topology.endpoints.get("direct", endpoint)
    pooled = endpoint.facts.pool_mode == "transaction"
    names = Names.for_cell(run_id, cell.id)
    if cell.case in DISCARD_KINDS:
        result = discard_probe(DISCARD_KINDS[cell.case], endpoint.dsn(), pooled, names)
        state = "kept" if result.kept else "taken away"
    elif cell.case.startswith("leak-"):  # the second client looks for the first one's server connection itself
        result = leak_probe(cell.case.removeprefix("leak-"), endpoint.dsn(), direct.dsn(), pooled, names)
        state = "leaked" if result.kept else "not leaked"
    else:
        with BusyPool(endpoint.dsn()):
            result = probe(cell.case, endpoint.dsn(), direct.dsn(), pooled, names)
        state = "kept" if result.kept else "lost"
    # what a probe leaves on a server connection (locks, temp tables, listeners) must not reach later cells (never
    # on a target: its other sessions are somebody's; there a probe takes only the run's own lock and channel). Each
    # is waited for until its process is gone: its end has then reached the pooler, which hands the next cell a new
    # server connection, not the ended one (whose FATAL would be that cell's first answer)
    if topology.superuser:
        with bounded(topology.admin_dsn(), 10, "ending the probe's server connections", autocommit=True) as conn:
            for pid in set(result.pids):
                conn.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])
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
