"""The claim rules: verdicts follow the rows, and a claim without rows is never given a verdict."""

from __future__ import annotations

from types import SimpleNamespace

from lab.report.claims import CLAIMS, FAILS, HOLDS, LOCAL, MISSING, c1, c3, c5, verdicts
from lab.report.data import Rows
from lab.results.outcome import Outcome
from lab.results.rows import Row


def _row(
    experiment: str, client: str, topology: str, scenario: str, outcome: Outcome, pool_mode: str | None = None, **params
) -> Row:  # type: ignore[no-untyped-def]
    return Row(
        run_id="r",
        experiment=experiment,
        cell=f"{client}-{topology}-{scenario}",
        client={"name": client, "packages": {"x": "1"}},
        topology={"name": topology, "pool_mode": pool_mode, "pooler": "pgbouncer" if pool_mode else None},
        scenario=scenario,
        outcome=outcome,
        measures=SimpleNamespace(**params),
    )  # type: ignore[arg-type]


def test_every_claim_without_rows_is_not_measured_except_c14() -> None:
    vs = verdicts(Rows([], []))
    assert [v.claim for v in vs] == list(CLAIMS) and len(vs) == 14
    assert all(v.verdict == MISSING for v in vs if v.claim != "C14")
    assert next(v for v in vs if v.claim == "C14").verdict == LOCAL


def test_c3_follows_the_authentication_counts() -> None:
    once = _row(
        "wire",
        "asyncpg-default",
        "direct",
        "wire-count",
        Outcome("ok"),
        queries=20,
        client_connections=1,
        authentication_requests=3,
    )
    assert c3(Rows([once], [])).verdict == FAILS
    every = _row(
        "wire",
        "asyncpg-default",
        "direct",
        "wire-count",
        Outcome("ok"),
        queries=20,
        client_connections=20,
        authentication_requests=60,
    )
    assert c3(Rows([every], [])).verdict == HOLDS


def test_c1_depends_on_where_the_tenant_error_appears() -> None:
    tenant_error = Outcome(
        "error", "asyncpg.InternalServerError", "XX000", "(ENOTFOUND) tenant/user a.b not found", "connect"
    )
    wrong = _row(
        "tenant", "asyncpg-default", "tenant-proxy-transaction", "tenant-wrong-ref", tenant_error, "transaction"
    )
    right = _row(
        "tenant",
        "asyncpg-default",
        "tenant-proxy-transaction",
        "tenant-right-user",
        Outcome("error", "x", "26000", "prepared statement does not exist", "later query"),
        "transaction",
    )
    assert c1(Rows([wrong, right], [])).verdict == FAILS
    # were the tenant error to appear with the right user in transaction mode, the claim would stand on these rows
    right_tenant = _row(
        "tenant",
        "asyncpg-default",
        "tenant-proxy-transaction",
        "tenant-right-user",
        Outcome("error", "x", "XX000", "Tenant or user not found", "later query"),
        "transaction",
    )
    assert c1(Rows([wrong, right_tenant], [])).verdict != FAILS


def test_attempt_verdict_reads_the_transaction_cell() -> None:
    ok = _row("matrix", "rca-attempt-1", "pgbouncer-transaction", "repeated-query", Outcome("ok"), "transaction")
    assert c5(Rows([ok], [])).verdict == FAILS
    err = _row(
        "matrix",
        "rca-attempt-1",
        "pgbouncer-transaction",
        "repeated-query",
        Outcome("error", "asyncpg.ProtocolViolationError", "08P01", "unsupported startup parameter: jit", "connect"),
        "transaction",
    )
    v = c5(Rows([err], []))
    assert v.verdict == HOLDS and "never with 'Tenant or user not found'" in v.finding
