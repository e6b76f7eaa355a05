"""Workloads every client configuration runs, written once against the Client interface.

Pooler failures are timing-dependent: one client on a quiet pool passes by luck. So
every workload runs several workers at once over a pool of several client
connections, which the transaction pooler maps onto fewer server connections
(compose/.env), and every cell repeats the workload.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass

from lab.clients.base import Client, Rows
from lab.results.outcome import WrongResult

Operation = Callable[[Client, int, int], Awaitable[None]]

#: The table the writing workloads use: lab_items in the local topology, the run's own schema's on a
#: target (lab.topology.backends.target). Set once per session; every event loop's tasks inherit it.
TABLE: ContextVar[str] = ContextVar("lab_table", default="lab_items")


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    operation: Operation  # (client, worker, op) -> None; raises WrongResult
    workers: int = 4
    ops_per_worker: int = 25
    #: a fixed, uneven pause before each operation (lab.workloads.harness); off where the scenario orders
    #: its operations itself (the apps experiment's turns)
    stagger: bool = True


def _expect(what: str, got: object, want: object) -> None:
    if got != want:
        raise WrongResult(what, got, want)


# Every worker sends the same SQL text, as an application's hot statements are: psycopg
# prepares a statement at its 5th execution on a connection, and a text per worker keeps it
# under that threshold (tried: the psycopg cells then passed, failed with 42P05 or 26000, or
# returned a wrong answer from run to run). Statements of their own per process, with every
# value checked, are the apps experiment's (lab.workloads.apps), where turns make them
# deterministic. Every returned value is still checked against what the worker asked.


async def repeated_query(client: Client, worker: int, op: int) -> None:
    n = worker * 1000 + op
    rows = await client.fetch("SELECT CAST(:n AS integer) * 2 AS doubled", {"n": n})
    _expect(f"worker {worker}'s SELECT n * 2", rows, [(2 * n,)])


async def insert_returning(client: Client, worker: int, op: int) -> None:
    # The RCA's insert: one SQL text that every worker sends, as an application's hot
    # statement is (psycopg prepares it after 5 executions on a connection; a text per
    # worker would keep it under that threshold and hide the failure).
    payload = f"insert-w{worker}-op{op}"
    rows = await client.fetch(
        f"INSERT INTO {TABLE.get()} (payload) VALUES (:payload) RETURNING id, payload", {"payload": payload}
    )
    if len(rows) != 1 or not isinstance(rows[0][0], int):
        raise WrongResult(f"worker {worker}'s INSERT ... RETURNING", rows, "one row with an integer id")
    _expect(f"worker {worker}'s returned payload", rows[0][1], payload)


async def transaction(client: Client, worker: int, op: int) -> None:
    payload = f"tx-w{worker}-op{op}"
    table = TABLE.get()  # read here: the steps may run in an executor thread, which does not inherit the context

    def insert(_: list[Rows]) -> tuple[str, dict]:
        return f"INSERT INTO {table} (payload) VALUES (:payload) RETURNING id", {"payload": payload}

    def update(done: list[Rows]) -> tuple[str, dict]:
        return f"UPDATE {table} SET payload = :payload WHERE id = :id RETURNING id", {
            "payload": payload + "-updated",
            "id": done[0][0][0],
        }

    def read_back(done: list[Rows]) -> tuple[str, dict]:
        return f"SELECT payload, txid_current() = txid_current() FROM {table} WHERE id = :id", {"id": done[0][0][0]}

    results = await client.transaction([insert, update, read_back])
    _expect("UPDATE in the same transaction", results[1], [(results[0][0][0],)])
    _expect("SELECT after UPDATE", results[2], [(payload + "-updated", True)])


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
