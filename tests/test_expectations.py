"""The expectation table: it covers the whole matrix, and malformed rules are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.errors import ConfigError
from lab.options import LabOptions
from lab.plan import Plan
from lab.results.expectations import load, lookup
from lab.results.outcome import Outcome
from lab.topology.services.pgbouncer import prepared_statements


def pgbouncer(**facts: object) -> dict[str, object]:
    """An endpoint's facts as the PgBouncer kind writes them: whether it tracks prepared statements follows from its
    version and settings."""
    version, settings = facts.get("pooler_version"), facts.get("pooler_settings")
    return {"pooler": "pgbouncer", **facts, "prepared_statements": prepared_statements(version, settings)}  # type: ignore[arg-type]


TABLE = Path(__file__).resolve().parent.parent / "experiments" / "expectations.toml"
FACTS = {
    "direct": {"pool_mode": None, "pooler_version": None},
    "pgbouncer-transaction": pgbouncer(pool_mode="transaction", pooler_version="1.18.0"),
    "pgbouncer-session": pgbouncer(pool_mode="session", pooler_version="1.18.0"),
    "pgbouncer-transaction-ignoring": pgbouncer(
        pool_mode="transaction", pooler_version="1.18.0", pooler_settings="ignore_startup_parameters = jit, options"
    ),
    "pgbouncer-prepared-transaction": pgbouncer(
        pool_mode="transaction", pooler_version="1.24.1", pooler_settings="track_extra_parameters = search_path"
    ),
    "pgbouncer-prepared-off-transaction": pgbouncer(
        pool_mode="transaction", pooler_version="1.24.1", pooler_settings="max_prepared_statements = 0"
    ),
    **{
        f"supavisor-model{ps}-{mode}": {
            "pooler": "supavisor-model",
            "pooler_version": "2.9",
            "pool_mode": mode,
            "prepared_statements": "tracked" if ps else "not tracked",
        }
        for ps, mode in (("", "transaction"), ("", "session"), ("-ps", "transaction"))
    },
    # the facts lab.topology.services.pgpool and .pgagroal write: neither tracks protocol-level prepared statements
    "pgpool-session": {
        "pooler": "pgpool",
        "pooler_version": "4.3.5",
        "pool_mode": "session",
        "prepared_statements": "not tracked",
    },
    **{
        f"pgagroal-{mode}": {
            "pooler": "pgagroal",
            "pooler_version": "1.6.0",
            "pool_mode": mode,
            "prepared_statements": "not tracked",
        }
        for mode in ("transaction", "session")
    },
}


def test_every_cell_has_a_rule_with_reason_and_docs() -> None:
    rules = load(TABLE)
    for cell in Plan.build(LabOptions()).of("matrix"):
        rule = lookup(
            rules, cell.client.name, cell.topology, cell.scenario, FACTS[cell.topology], cell.client.versions()
        )
        assert rule.reason and rule.docs, cell.id


def test_known_failures_are_expected_on_pgbouncer_118_only() -> None:
    rules = load(TABLE)
    tx = lookup(rules, "asyncpg-default", "pgbouncer-transaction", "repeated-query", FACTS["pgbouncer-transaction"])
    assert (tx.outcome, tx.sqlstate) == ("error", "26000")
    # PgBouncer 1.21+ tracks prepared statements: the 1.18 failure is not expected of it
    newer = lookup(
        rules,
        "asyncpg-default",
        "pgbouncer-prepared-transaction",
        "repeated-query",
        pgbouncer(pool_mode="transaction", pooler_version="1.24.1"),
    )
    assert newer.outcome == "ok" and "max_prepared_statements" in newer.reason
    # the same binary with the setting at 0 is held to 1.18's rules: the setting, not the version, decides
    off = lookup(
        rules,
        "asyncpg-default",
        "pgbouncer-prepared-off-transaction",
        "repeated-query",
        pgbouncer(pool_mode="transaction", pooler_version="1.24.1", pooler_settings="max_prepared_statements = 0"),
    )
    assert (off.outcome, off.sqlstate) == ("error", "26000")
    # and a pooler version nobody has looked at in a mode nobody has described fails loudly
    with pytest.raises(LookupError):
        lookup(
            rules,
            "asyncpg-default",
            "pgbouncer-statement",
            "repeated-query",
            pgbouncer(pool_mode="statement", pooler_version="1.24.1"),
        )


def test_mismatches_name_each_difference() -> None:
    rule = next(r for r in load(TABLE) if r.scenario == "tenant-wrong-ref")
    assert rule.mismatches(Outcome("error", "asyncpg.ProtocolViolationError", "08P01", "m", "connect")) == []
    diffs = rule.mismatches(Outcome("ok"))
    assert diffs[0] == "outcome 'ok', expected 'error'"


@pytest.mark.parametrize(
    "body, message",
    [
        ('[[rule]]\noutcome = "fine"\nreason = "r"\n', "outcome must be one of"),
        ('[[rule]]\noutcome = "ok"\nreason = ""\n', "needs a one-line reason"),
        ('[[rule]]\noutcome = "ok"\nreason = "r"\nclinet = "x"\n', "unknown field"),
        ('[[rule]]\noutcome = "ok"\nreason = "r"\npooler_version = "new"\n', "is not a version range"),
        ('[[rule]]\noutcome = "error"\nreason = "r"\nphase = "later"\n', "phase must be one of"),
        ("", "no \\[\\[rule\\]\\] entries"),
        ('[[rule]]\noutcome = "ok"\nreason = "r"\nclient_versions = {asyncpg = 5}\n', "is not a version range"),
        ('title = "x"\n[[rule]]\noutcome = "ok"\nreason = "r"\n', "unknown top-level key"),
        ("\udcff\udcfe", "not a text file"),
        ('[[rule]]\noutcome = "ok"\nreason = "r"\nclient = []\n', "must be a glob or a list of globs"),
        ('[[rule]]\noutcome = "ok"\nreason = "r"\nscenario = ["a", 1]\n', "must be a glob or a list of globs"),
        ('[[rule]]\noutcome = "ok"\nreason = "r"\nserver_connections = "old"\n', 'fresh" or "inherited'),
    ],
)
def test_malformed_rules_are_refused(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "e.toml"
    path.write_bytes(body.encode("utf-8", "surrogateescape"))
    with pytest.raises(ConfigError, match=message):
        load(path)


def test_cell_without_rule_is_an_error() -> None:
    rules = load(TABLE)
    with pytest.raises(LookupError, match="no expectation covers"):
        lookup(
            rules,
            "asyncpg-default",
            "some-new-topology",
            "repeated-query",
            pgbouncer(pool_mode="statement"),
        )


def test_a_rule_may_allow_several_phases(tmp_path: Path) -> None:
    path = tmp_path / "e.toml"
    path.write_text(
        '[[rule]]\noutcome = "error"\nreason = "r"\nphase = ["first query", "later query"]\nsqlstate = "26000"\n'
    )
    rule = load(path)[0]
    assert rule.mismatches(Outcome("error", sqlstate="26000", phase="first query")) == []
    assert rule.mismatches(Outcome("error", sqlstate="26000", phase="later query")) == []
    assert rule.mismatches(Outcome("error", sqlstate="26000", phase="connect")) == [
        "phase 'connect', expected 'first query' or 'later query'"
    ]
    assert rule.to_dict()["phase"] == ["first query", "later query"]


def test_a_rule_may_allow_several_sqlstates_and_refuses_a_malformed_one(tmp_path: Path) -> None:
    path = tmp_path / "e.toml"
    path.write_text('[[rule]]\noutcome = "error"\nreason = "r"\nsqlstate = ["42P05", "26000"]\n')
    rule = load(path)[0]
    assert rule.mismatches(Outcome("error", sqlstate="26000", phase="later query")) == []
    assert rule.mismatches(Outcome("error", sqlstate="42P05", phase="later query")) == []
    assert rule.mismatches(Outcome("error", sqlstate="08P01", phase="later query")) == [
        "sqlstate '08P01', expected '42P05' or '26000'"
    ]
    assert rule.to_dict()["sqlstate"] == ["42P05", "26000"]
    for bad in ('"4P05"', '["42P05"]', "[42]"):
        path.write_text(f'[[rule]]\noutcome = "error"\nreason = "r"\nsqlstate = {bad}\n')
        with pytest.raises(ConfigError, match="sqlstate"):
            load(path)


def test_a_target_pooler_chooses_its_rules() -> None:
    rules = load(TABLE)
    supavisor = {"pooler": "supavisor", "pool_mode": "transaction", "pooler_version": None}
    assert lookup(rules, "asyncpg-default", "transaction", "repeated-query", supavisor).outcome == "any"
    assert lookup(rules, "asyncpg-default", "tx", "tenant-wrong-ref", supavisor).phase == "connect"
    undeclared = pgbouncer(pool_mode="transaction", pooler_version=None)
    assert lookup(rules, "asyncpg-default", "pgbouncer-transaction", "repeated-query", undeclared).outcome == "any"
    # only the prepared-statement cells: state probes are held whatever the version
    declared = pgbouncer(pool_mode="transaction", pooler_version="1.18.0")
    for facts in (undeclared, declared):
        assert lookup(rules, "state-probe", "pgbouncer-transaction", "state-set", facts).outcome == "wrong-result"
    assert lookup(rules, "asyncpg-default", "pgbouncer-transaction", "repeated-query", declared).sqlstate == "26000"


def test_a_rule_may_list_several_clients_and_scenarios(tmp_path: Path) -> None:
    path = tmp_path / "e.toml"
    path.write_text(
        '[[rule]]\nclient = ["a-*", "b"]\nscenario = ["s1", "s2"]\noutcome = "error"\nreason = "r"\n'
        '[[rule]]\noutcome = "ok"\nreason = "the rest"\n'
    )
    rules = load(path)
    assert [
        lookup(rules, c, "t", s, {}).outcome for c, s in [("a-1", "s2"), ("b", "s1"), ("bb", "s1"), ("b", "s3")]
    ] == [
        "error",
        "error",
        "ok",
        "ok",
    ]


def test_no_rule_holds_a_pooler_to_another_poolers_behaviour() -> None:
    """Every rule that can meet a pooler names the pooler families it was observed on: a new pooler (or one a target
    declares) meets no rule written for another, and its cells say loudly that no rule covers them."""
    for rule in load(TABLE):
        topologies = rule.topology if isinstance(rule.topology, tuple) else (rule.topology,)
        if all(t in ("direct", "rest") for t in topologies) or rule.scenario == "loop-lag":
            continue
        assert rule.pooler != "*", f"rule {rule.index} ({rule.reason[:60]}...) names no pooler"
    newcomer = pgbouncer(pool_mode="transaction", pooler_version="1.0") | {"pooler": "newpooler"}
    with pytest.raises(LookupError):
        lookup(load(TABLE), "asyncpg-no-cache", "newpooler-transaction", "repeated-query", newcomer)


def test_a_targets_inherited_server_connections_record_what_their_history_decides_and_hold_the_fixes() -> None:
    """On the lab's own PgBouncer each cell starts on fresh server connections and fetchmany's batch is held to 26000;
    on a target's, which the lab neither ends nor orders, a client that names statements is recorded (loaded test runs
    saw ok, 42P05 and 26000 there), while the fixes, which name nothing that outlives a transaction, stay held."""
    rules = load(Path("experiments/expectations.toml"))
    facts = {"pool_mode": "transaction", "pooler": "pgbouncer", "pooler_version": "1.18.0"}
    facts["prepared_statements"] = "not tracked"
    for client in ("asyncpg-default", "asyncpg-unique-names"):
        own = lookup(rules, client, "pgbouncer-transaction", "batch-insert", {**facts, "backend": "native"})
        target = lookup(rules, client, "pgbouncer-transaction", "batch-insert", {**facts, "backend": "target"})
        assert (own.outcome, own.sqlstate) == ("error", "26000"), own.describe()
        assert target.outcome == "any", target.describe()
    for client in ("sqlalchemy-asyncpg-default", "psycopg-async-default", "node-postgres-js-default"):
        for scenario in ("repeated-query", "transaction", "crossover"):
            target = lookup(rules, client, "pgbouncer-transaction", scenario, {**facts, "backend": "target"})
            assert target.outcome == "any", (client, scenario, target.describe())
    for client in ("asyncpg-no-cache", "psycopg-async-no-prepare", "sqlalchemy-asyncpg-pgbouncer"):
        target = lookup(rules, client, "pgbouncer-transaction", "repeated-query", {**facts, "backend": "target"})
        assert target.outcome == "ok", (client, target.describe())
