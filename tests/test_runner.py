"""The cell runners against the real server: nothing back within the limit is a `hang`, a wrong answer a
`wrong-result`, a pooler's refusal an error at the right phase, in the lab's own process and in a runner process
that speaks the contract."""

from __future__ import annotations

from lab.clients.contract import Operation, Statement
from lab.clients.registry import configuration
from lab.clients.runner import Runners
from lab.workloads.harness import run_scenario
from lab.workloads.scenarios import SCENARIOS, Scenario


def _once(name: str, sql: str, expect: list[list[object]] | None = None, workers: int = 1) -> Scenario:
    return Scenario(name, sql, lambda w, i, table: Operation((Statement(sql, {}, expect, sql),)), workers, 1)


def test_nothing_back_within_the_limit_is_a_hang_naming_what_was_outstanding(topology) -> None:  # type: ignore[no-untyped-def]
    runners = Runners()
    hang = _once("hang", "SELECT pg_sleep(30)")
    result = run_scenario(
        runners.in_process,
        configuration("asyncpg-default"),
        topology.endpoint("direct").dsn(),
        hang,
        "lab_items",
        1,
        1.5,
    )
    assert result.outcome.kind == "hang" and result.outcome.iteration == 0
    assert "worker 0's operation 1 of 1" in (result.outcome.detail or "")


def test_a_wrong_answer_is_a_wrong_result_with_both_values(topology) -> None:  # type: ignore[no-untyped-def]
    wrong = _once("wrong", "SELECT 41", [[42]], workers=2)
    result = run_scenario(
        Runners().in_process,
        configuration("psycopg-async-no-prepare"),
        topology.endpoint("pgbouncer-session").dsn(),
        wrong,
        "lab_items",
        1,
        5,
    )
    assert result.outcome.kind == "wrong-result" and result.outcome.phase == "first query"
    assert (result.outcome.expected, result.outcome.received) == ("[[42]]", "[[41]]")


def test_a_refused_startup_is_an_error_at_connect(topology) -> None:  # type: ignore[no-untyped-def]
    result = run_scenario(
        Runners().in_process,
        configuration("rca-attempt-1"),
        topology.endpoint("pgbouncer-transaction").dsn(),
        SCENARIOS["repeated-query"],
        "lab_items",
        1,
        5,
    )
    assert (result.outcome.kind, result.outcome.phase, result.outcome.sqlstate) == ("error", "connect", "08P01")
    assert result.outcome.message == "unsupported startup parameter: jit"


def test_a_runner_process_speaks_the_contract_on_the_system_libpq(topology) -> None:  # type: ignore[no-untyped-def]
    """psycopg's pure-Python implementation on Debian's libpq, in a runner process of its own: the same cells, the
    same outcomes as in process, and the rows name the libpq that really ran."""
    runners = Runners()
    try:
        through = topology.endpoint("pgbouncer-transaction").dsn()
        workload = SCENARIOS["repeated-query"]
        failing = configuration("psycopg-system-async-default")
        fixed = configuration("psycopg-system-async-no-prepare")
        broken = run_scenario(runners.for_(failing), failing, through, workload, "lab_items", 2, 10)
        assert (broken.outcome.kind, broken.outcome.phase) == ("error", "later query")
        assert broken.outcome.sqlstate in ("42P05", "26000")
        assert broken.versions is not None and broken.versions["psycopg-impl"] == "python"
        assert broken.versions["libpq"].startswith("15.")
        works = run_scenario(runners.for_(fixed), fixed, through, workload, "lab_items", 2, 10)
        assert works.outcome.kind == "ok" and len(works.latencies_s) == 2 * 4 * workload.ops_per_worker
    finally:
        runners.close()


def _held_then_looked_at(table: str) -> tuple[tuple[Operation, ...], ...]:
    """Worker 0 holds a transaction open until worker 1 is done; worker 1 runs during it and sees it open."""
    held = Statement("SELECT 1 AS one", {}, [[1]], "worker 0's held transaction")
    look = Statement(
        "SELECT count(*) > 0 AS seen FROM pg_stat_activity WHERE state = 'idle in transaction' AND pid <> pg_backend_pid()",
        {},
        [[True]],
        "worker 1 sees worker 0's transaction open",
    )
    return (
        (Operation((held,), True, hold=((1, 0),)),),
        (Operation((look,), True, during=((0, 0),)),),
    )


ORDERED = Scenario("ordered", "during and hold", _once("x", "SELECT 1").operation, 2, 1, plan=_held_then_looked_at)


def test_every_runner_keeps_the_order_a_spec_sets(topology) -> None:  # type: ignore[no-untyped-def]
    """`during` starts an operation while another holds its transaction open, and `hold` keeps it open until that
    operation is done: in the lab's process, in a Python runner process and in the Node.js runner alike."""
    runners = Runners()
    try:
        for name in ("psycopg-async-no-prepare", "psycopg2-executor", "psycopg-system-sync", "node-pg-default"):
            config = configuration(name)
            result = run_scenario(
                runners.for_(config), config, topology.endpoint("direct").dsn(), ORDERED, "lab_items", 2, 10
            )
            assert result.outcome.kind == "ok" and result.iterations == 2, (name, result.outcome)
    finally:
        runners.close()


def test_a_free_running_cell_reports_every_iteration(topology) -> None:  # type: ignore[no-untyped-def]
    """keep_going: a failure does not end the cell; every iteration's outcome comes back to be counted."""
    wrong = Scenario("free", "", _once("x", "SELECT 41", [[42]]).operation, 1, 1, keep_going=True, repeats=3)
    runners = Runners()
    try:
        for name in ("asyncpg-default", "node-postgres-js-default", "psycopg-system-async-default"):
            config = configuration(name)
            result = run_scenario(runners.for_(config), config, topology.endpoint("direct").dsn(), wrong, "t", 1, 10)
            assert [o.kind for o in result.outcomes] == ["wrong-result"] * 3, (name, result.outcomes)
    finally:
        runners.close()


def test_parts_that_need_a_runner_at_once_install_it_once(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A run's parts start side by side on a fresh machine: each may be first to need the Node.js runner.

    Two threads stand for two parts (the lock is a file's, so threads meet it as processes do); the
    install is a real `npm ci` of an empty lock file into a cache of the test's own.
    """
    import json
    import threading

    from lab.clients import runtimes

    folder = tmp_path / "tiny"
    folder.mkdir()
    (folder / "package.json").write_text(json.dumps({"name": "tiny", "version": "1.0.0"}))
    lock = {"name": "tiny", "version": "1.0.0", "lockfileVersion": 3, "requires": True, "packages": {}}
    lock["packages"] = {"": {"name": "tiny", "version": "1.0.0"}}
    (folder / "package-lock.json").write_text(json.dumps(lock))
    monkeypatch.setattr(runtimes, "CACHE_DIR", tmp_path / "cache")
    tiny = runtimes.Runtime("tiny", folder, "javascript", "", (), "npm", ("node", "-e", "0"), {})
    said: list[str] = []
    homes: list[object] = []
    parts = [threading.Thread(target=lambda: homes.append(tiny.ensure(said.append))) for _ in range(2)]
    for part in parts:
        part.start()
    for part in parts:
        part.join(120)
    assert len(homes) == 2 and homes[0] == homes[1] == tiny.home
    assert [m for m in said if m.startswith("installing the tiny runner")] == [said[0]] and len(said) == 1
    assert (tiny.home / ".installed").read_text() == tiny.digest and (tiny.home / "package.json").exists()


def test_pg8000_takes_the_urls_sslmode_as_libpq_does(topology) -> None:  # type: ignore[no-untyped-def]
    """pg8000 reads ssl_context=None as "prefer": the lab's disable must reach it as False, or a cell through a
    server that offers TLS (PostgreSQL and PgBouncer here do) is encrypted while its row says it is not."""
    import pg8000.native

    from lab.clients.python.pg8000_client import connect_args

    endpoint = topology.endpoint("direct")
    for tls, encrypted in ((False, False), (True, True)):
        conn = pg8000.native.Connection(**connect_args(endpoint.dsn(tls=tls), 5.0))
        try:
            assert conn.run("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()") == [[encrypted]]
        finally:
            conn.close()
