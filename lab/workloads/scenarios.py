"""The matrix's workloads, written once as data (lab.clients.contract) so a runner in any language runs the same SQL.

Pooler failures are timing-dependent: one client on a quiet pool passes by luck. So every
workload runs several workers at once over a pool of several client connections, which the
transaction pooler maps onto fewer server connections (compose/.env), and every cell repeats
the workload. Every returned value is checked against what the worker asked for.

Three shapes:
- one SQL text for every worker (`repeated-query`, `insert-returning`, `transaction`), as an
  application's hot statement: a statement run on another client's server connection is the
  same statement, so what fails, fails loudly;
- a text of each worker's own (`crossover`, `many-statements`), as an application has many
  queries: a statement run under another connection's name is another query, and its answer
  is a wrong one. `crossover` orders the crossing (an open transaction pins a server
  connection; who commits last decides which one the pooler hands out next), so its outcome
  is the same on every run; `many-statements` runs free and counts how often each outcome
  occurred;
- batches sent the driver's own way (`batch-insert`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from lab.clients.configuration import Configuration
from lab.clients.contract import PER_WORKER, POOL, CellSpec, Operation, Statement

#: A fixed, uneven pause before each operation: without it the workers fall into a steady cycle in which each
#: client connection happens to get the same server connection every time, and a transaction-mode failure appears
#: or not depending on that start-up accident.
STAGGER_S = (0.0, 0.002, 0.0005, 0.003, 0.001)

#: (worker, op, table) -> the operation
OperationMaker = Callable[[int, int, str], Operation]


#: table -> per worker, its operations in order (a scenario that orders its workers' operations itself)
Plan = Callable[[str], tuple[tuple[Operation, ...], ...]]


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    operation: OperationMaker
    workers: int = 4
    ops_per_worker: int = 25
    #: the fixed, uneven stagger (STAGGER_S); off where the scenario orders its operations itself
    stagger: bool = True
    #: the operations, where the scenario orders them itself (then `operation` is not used)
    plan: Plan | None = None
    connections: str = POOL  # POOL | PER_WORKER (lab.clients.contract)
    #: run every repeat and count outcomes (free-running); its own number of repeats, whatever the run's
    keep_going: bool = False
    repeats: int | None = None
    #: it needs the driver's batch API (Configuration.batch): not run for a configuration without one
    batch: bool = False
    #: the named operation it is made of (the contract's `call`): run only by configurations whose runner has it
    call: str | None = None
    #: the outcome is decided by the order the scenario sets, not by timing: held to its rule on every run
    ordered: bool = False
    #: its own cell limit where a healthy run takes milliseconds and a pooler is known to leave the client waiting
    #: (a pipeline): a hang is called after this, not after the run's whole cell limit
    limit_s: float | None = None

    def runs_for(self, configuration: Configuration) -> bool:
        if self.batch and configuration.batch is None:
            return False
        return self.call is None or self.call in configuration.calls

    def operations(self, table: str) -> tuple[tuple[Operation, ...], ...]:
        """Per worker, its operations in order, each with its pause before it."""
        if self.plan is not None:
            return self.plan(table)
        out = []
        for w in range(self.workers):
            ops = []
            for i in range(self.ops_per_worker):
                op = self.operation(w, i, table)
                pause = STAGGER_S[(w * 7 + i * 3) % len(STAGGER_S)] if self.stagger else 0.0
                ops.append(replace(op, pause_s=pause))
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
            pool_size=self.workers if self.connections == PER_WORKER else pool_size,
            repeats=self.repeats or repeats,
            cell_timeout_s=cell_timeout_s,
            op_timeout_s=op_timeout_s,
            workers=self.operations(table),
            connections=self.connections,
            keep_going=self.keep_going,
        )


# Every worker sends the same SQL text, as an application's hot statements are: psycopg prepares a statement at its
# 5th execution on a connection.


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


def own_statement(worker: int, op: int, text: int = 0) -> Statement:
    """A query of this worker's own (its `text`-th): its number is a constant and an alias in the SQL, and the answer
    carries it back, so another query run under the same statement name shows as a wrong value, not a plausible
    one."""
    mark = worker * 10 + text
    n = worker * 1000 + op
    return Statement(
        f"SELECT CAST(:n AS integer) * 2 + {mark} AS doubled_{mark}",
        {"n": n},
        [[2 * n + mark]],
        f"worker {worker}'s query {text} (n * 2 + {mark})",
    )


#: psycopg prepares a query at its 5th execution on a connection (prepare_threshold=5): six rounds reach it on
#: every driver that prepares at all
CROSSOVER_ROUNDS = 6


def crossover(table: str) -> tuple[tuple[Operation, ...], ...]:
    """Two workers of one process, a client connection each (as two threads' connections), each its own query, in
    explicit transactions, through a pool of two server connections. In every round worker 0's transaction runs
    first and stays open until worker 1's has committed (so worker 1 runs on the other server connection) and
    commits last; a transaction pooler that hands out the most recently released server connection first
    (PgBouncer's default, server_round_robin = 0) gives each worker its own server connection round after round,
    and each driver prepares its query there. In the crossing round worker 1 goes first, onto the server connection
    worker 0 released last, and runs its query there as its driver has cached it."""
    w0: list[Operation] = []
    w1: list[Operation] = []
    for r in range(CROSSOVER_ROUNDS):
        w0.append(Operation((own_statement(0, r),), True, after=((1, r - 1),) if r else (), hold=((1, r),)))
        w1.append(Operation((own_statement(1, r),), True, during=((0, r),)))
    last = CROSSOVER_ROUNDS
    w1.append(Operation((own_statement(1, last),), True, after=((0, last - 1),)))
    w0.append(Operation((own_statement(0, last),), True, after=((1, last),)))
    return (tuple(w0), tuple(w1))


def many_statements(worker: int, op: int, table: str) -> Operation:
    """Each worker alternates two queries of its own on its own client connection, as a thread of an application
    does: each text is run six times per connection, so a driver that prepares after five executions does."""
    return Operation((own_statement(worker, op, op % 2),))


BATCH_SIZE = 5


def batch_insert(worker: int, op: int, table: str) -> Operation:
    """One INSERT ... RETURNING text with BATCH_SIZE parameter sets, sent as one batch the driver's own way."""
    payloads = [f"batch-w{worker}-op{op}-{k}" for k in range(BATCH_SIZE)]
    sql = f"INSERT INTO {table} (payload) VALUES (:payload) RETURNING id, payload"
    return Operation(
        tuple(
            Statement(sql, {"payload": p}, [[{"type": "integer"}, p]], f"worker {worker}'s batch row {k}")
            for k, p in enumerate(payloads)
        ),
        batch=True,
    )


#: rows the iterator walks, in chunks of ITERATOR_CHUNK (so it FETCHes more than once)
ITERATOR_ROWS, ITERATOR_CHUNK = 10, 2


def server_side_cursor(table: str) -> tuple[tuple[Operation, ...], ...]:
    """A framework's server-side cursor (Django's QuerySet.iterator()), and another request between two of its
    FETCHes: worker 0 walks pg_type in chunks; after its first chunk, worker 1 opens a transaction (on the server
    connection worker 0's cursor was declared on, the one the pooler released last) and holds it until worker 0
    is done; worker 0's next FETCH then runs on another server connection, where no such cursor exists."""
    walk = Operation(
        (Statement("SELECT oid, typname FROM pg_type ORDER BY oid", {}, None, "QuerySet.iterator() over pg_type"),),
        call="iterator",
        args={"chunk_size": ITERATOR_CHUNK, "rows": ITERATOR_ROWS, "between_chunks": [[1, 0]]},
    )
    other = Operation(
        (Statement("SELECT 1 AS one", {}, [[1]], "another request's transaction"),),
        True,
        during=((0, 0),),
        hold=((0, 0),),
    )
    return ((walk,), (other,))


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
        Scenario(
            "crossover",
            f"2 workers, a connection and a query each, {CROSSOVER_ROUNDS} ordered rounds, then worker 1 takes the "
            "server connection worker 0 released last",
            many_statements,
            workers=2,
            ops_per_worker=CROSSOVER_ROUNDS + 1,
            stagger=False,
            plan=crossover,
            connections=PER_WORKER,
            ordered=True,
        ),
        Scenario(
            "many-statements",
            "4 workers, a connection and two queries each, alternating, 12 each, free-running; 5 repeats counted",
            many_statements,
            ops_per_worker=12,
            connections=PER_WORKER,
            keep_going=True,
            repeats=5,
        ),
        Scenario(
            "server-side-cursor",
            f"QuerySet.iterator() over {ITERATOR_ROWS} rows in chunks of {ITERATOR_CHUNK}, another request's "
            "transaction between its first and second FETCH",
            many_statements,
            workers=2,
            ops_per_worker=1,
            stagger=False,
            plan=server_side_cursor,
            connections=PER_WORKER,
            call="iterator",
            ordered=True,
        ),
        Scenario(
            "batch-insert",
            f"INSERT ... RETURNING with {BATCH_SIZE} parameter sets per batch, the driver's batch API, 4 workers x 4",
            batch_insert,
            ops_per_worker=4,
            batch=True,
            limit_s=3.0,
        ),
    )
}
