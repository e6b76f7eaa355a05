"""The matrix's workloads, written once as data (lab.clients.contract) so a runner in any language runs the same SQL.

Pooler failures are timing-dependent: one client on a quiet pool passes by luck. So every
workload runs several workers at once over a pool of several client connections, which the
transaction pooler maps onto fewer server connections (compose/.env), and every cell repeats
the workload. Every returned value is checked against what the worker asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lab.clients.contract import CellSpec, Operation, Statement

#: A fixed, uneven pause before each operation: without it the workers fall into a steady cycle in which each
#: client connection happens to get the same server connection every time, and a transaction-mode failure appears
#: or not depending on that start-up accident.
STAGGER_S = (0.0, 0.002, 0.0005, 0.003, 0.001)

#: (worker, op, table) -> the operation
OperationMaker = Callable[[int, int, str], Operation]


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    operation: OperationMaker
    workers: int = 4
    ops_per_worker: int = 25
    #: the fixed, uneven stagger (STAGGER_S); off where the scenario orders its operations itself
    stagger: bool = True

    def operations(self, table: str) -> tuple[tuple[Operation, ...], ...]:
        """Per worker, its operations in order, each with its pause before it."""
        out = []
        for w in range(self.workers):
            ops = []
            for i in range(self.ops_per_worker):
                op = self.operation(w, i, table)
                pause = STAGGER_S[(w * 7 + i * 3) % len(STAGGER_S)] if self.stagger else 0.0
                ops.append(Operation(op.statements, op.transaction, pause, op.call, op.args))
            out.append(tuple(ops))
        return tuple(out)

    def spec(
        self,
        configuration: str,
        dsn: str,
        table: str,
        pool_size: int,
        repeats: int,
        cell_timeout_s: float,
        op_timeout_s: float,
    ) -> CellSpec:
        return CellSpec(
            configuration=configuration,
            scenario=self.name,
            dsn=dsn,
            pool_size=pool_size,
            repeats=repeats,
            cell_timeout_s=cell_timeout_s,
            op_timeout_s=op_timeout_s,
            workers=self.operations(table),
        )


# Every worker sends the same SQL text, as an application's hot statements are: psycopg prepares a statement at its
# 5th execution on a connection. Statements of their own per worker, with every value checked, are the apps
# experiment's (lab.workloads.apps), where turns make the crossing deterministic.


def repeated_query(worker: int, op: int, table: str) -> Operation:
    n = worker * 1000 + op
    return Operation(
        (
            Statement(
                "SELECT CAST(:n AS integer) * 2 AS doubled", {"n": n}, [[2 * n]], f"worker {worker}'s SELECT n * 2"
            ),
        )
    )


def insert_returning(worker: int, op: int, table: str) -> Operation:
    """The RCA's insert: one SQL text that every worker sends, as an application's hot statement is."""
    payload = f"insert-w{worker}-op{op}"
    return Operation(
        (
            Statement(
                f"INSERT INTO {table} (payload) VALUES (:payload) RETURNING id, payload",
                {"payload": payload},
                [[{"type": "integer"}, payload]],
                f"worker {worker}'s INSERT ... RETURNING",
            ),
        )
    )


def transaction(worker: int, op: int, table: str) -> Operation:
    payload = f"tx-w{worker}-op{op}"
    inserted = {"ref": [0, 0, 0]}
    return Operation(
        (
            Statement(
                f"INSERT INTO {table} (payload) VALUES (:payload) RETURNING id",
                {"payload": payload},
                [[{"type": "integer"}]],
                f"worker {worker}'s INSERT",
            ),
            Statement(
                f"UPDATE {table} SET payload = :payload WHERE id = :id RETURNING id",
                {"payload": payload + "-updated", "id": inserted},
                [[inserted]],
                "UPDATE in the same transaction",
            ),
            Statement(
                f"SELECT payload, txid_current() = txid_current() FROM {table} WHERE id = :id",
                {"id": inserted},
                [[payload + "-updated", True]],
                "SELECT after UPDATE",
            ),
        ),
        transaction=True,
    )


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "repeated-query",
            "SELECT CAST($n AS integer) * 2, 4 workers x 15 on a pool of 4: each connection reuses the statement",
            repeated_query,
            ops_per_worker=15,
        ),
        Scenario(
            "insert-returning",
            "INSERT ... RETURNING id, payload, one SQL text for all workers, 4 workers x 10",
            insert_returning,
            ops_per_worker=10,
        ),
        Scenario(
            "transaction", "INSERT, UPDATE, SELECT in one transaction, 4 workers x 16", transaction, ops_per_worker=16
        ),
    )
}
