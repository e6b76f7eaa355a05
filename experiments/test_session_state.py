"""Session state through every topology (claims C2, C10): SET, named prepared statements,
temporary tables, advisory locks and LISTEN/NOTIFY, set in one transaction and looked for in
a later one on the same client connection while other clients keep the pooler busy."""

from __future__ import annotations

import psycopg
import pytest

from lab.cells import topology_names
from lab.clients.base import package_versions
from lab.expectations import Expectation
from lab.judge import record_and_judge
from lab.session_state import KINDS, BusyPool, probe
from lab.topology import Topology

CELLS = [(t, k) for t in topology_names() for k in KINDS]


class StateProbe:
    """The client of this experiment: one psycopg connection, never preparing on its own."""

    description = "psycopg 3 connection (prepare_threshold=None), explicit transactions"

    @staticmethod
    def versions() -> dict[str, str]:
        return package_versions(("psycopg",))


@pytest.mark.parametrize("topology, kind", CELLS, ids=[f"state-probe-{t}-{k}" for t, k in CELLS])
def test_session_state(topology: str, kind: str, lab_topology: Topology, expectations: list[Expectation], record_row, run_id: str) -> None:
    endpoint = lab_topology.endpoint(topology)
    pooled = endpoint.facts.get("pool_mode") == "transaction"
    direct = lab_topology.endpoint("direct")
    with BusyPool(endpoint.dsn()):
        result = probe(KINDS[kind], endpoint.dsn(), direct.dsn(), pooled)
    # what a probe leaves on a server connection (locks, temp tables, listeners) must not reach
    # later cells: end the backends it used
    admin = direct.dsn(user=lab_topology.superuser, password=lab_topology.superuser_password)
    with psycopg.connect(admin, autocommit=True) as conn:
        for pid in set(result.pids):
            conn.execute("SELECT pg_terminate_backend(%s)", [pid])
    record_and_judge(
        expectations, record_row, run_id=run_id, experiment="session-state", cell_id=f"state-probe-{topology}-{kind}",
        client="state-probe", client_cls=StateProbe, topology=topology, facts=endpoint.facts, scenario=f"state-{kind}",
        outcome=result.outcome,
        params={"state": "kept" if result.kept else "lost", "seen": result.seen, "backend_pids": result.pids,
                "same_backend": len(set(result.pids)) == 1, "attempts_to_move": result.attempts},
    )
