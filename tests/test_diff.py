"""`python -m lab diff`: a changed cell is printed and fails the command, in either direction; identical files pass."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from lab.results.diff import diff_rows
from lab.results.measures import CostMeasures
from lab.results.outcome import Outcome
from lab.results.rows import Row, RowWriter

ROOT = Path(__file__).resolve().parent.parent


def _row(cell: str, outcome: Outcome, asyncpg: str = "0.32.0") -> Row:
    return Row(
        run_id="r",
        experiment="matrix",
        cell=cell,
        client={"name": "asyncpg-default", "packages": {"asyncpg": asyncpg}},
        topology={"name": "pgbouncer-transaction", "pooler_version": "1.18.0"},
        scenario="repeated-query",
        outcome=outcome,
    )


FAIL = Outcome(
    "error",
    "asyncpg.InvalidSQLStatementNameError",
    "26000",
    'prepared statement "__asyncpg_stmt_1__" does not exist',
    "later query",
)


def _write(tmp: Path, name: str, rows: list[Row]) -> Path:
    writer = RowWriter(name, tmp / name)
    for r in rows:
        writer.write(r)
    return writer.path


def _diff(a: Path, b: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lab", "diff", str(a), str(b)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def test_identical_files_exit_0(tmp_path: Path) -> None:
    rows = [_row("a", Outcome("ok")), _row("b", FAIL)]
    done = _diff(_write(tmp_path, "base", rows), _write(tmp_path, "cur", rows))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 cells compared, 0 changed" in done.stdout


def test_one_changed_cell_is_printed_and_fails(tmp_path: Path) -> None:
    base = _write(tmp_path, "base", [_row("a", Outcome("ok")), _row("b", FAIL)])
    cur = _write(tmp_path, "cur", [_row("a", Outcome("ok")), _row("b", Outcome("ok"), asyncpg="0.33.0")])
    done = _diff(base, cur)
    assert done.returncode == 1
    assert "now passes" in done.stdout and "matrix/b" in done.stdout and "asyncpg 0.32.0 → 0.33.0" in done.stdout
    assert "matrix/a" not in done.stdout
    back = _diff(cur, base)  # the other direction is as loud
    assert back.returncode == 1 and "now fails" in back.stdout


def test_message_text_and_latency_do_not_count() -> None:
    other_name = Outcome(
        "error", FAIL.error_class, "26000", 'prepared statement "__asyncpg_stmt_9__" does not exist', "later query"
    )
    assert diff_rows([_row("b", FAIL)], [_row("b", other_name)]).changes == []


def test_missing_files_are_a_clear_error(tmp_path: Path) -> None:
    done = _diff(tmp_path / "nope.jsonl", tmp_path / "nope2.jsonl")
    assert done.returncode == 2 and "no such result file" in done.stderr


def test_unreadable_files_exit_2_with_one_line(tmp_path: Path) -> None:
    good = _write(tmp_path, "base", [_row("a", Outcome("ok"))])
    whole = good.read_text()
    for name, text in (
        ("truncated", whole[: len(whole) // 2]),
        ("garbage", "\x00\x01 not json\n"),
        ("empty", ""),
        ("schema", whole.replace('"schema": 2', '"schema": 7')),
        (
            "outcome-a-string",
            whole.replace(
                whole[whole.index('"outcome": {') : whole.index("}", whole.index('"outcome": {')) + 1],
                '"outcome": "ok"',
            ),
        ),
        ("binary", "\udcff\udcfe"),
    ):
        bad = tmp_path / f"{name}.jsonl"
        bad.write_bytes(text.encode("utf-8", "surrogateescape"))
        for args in ((good, bad), (bad, good)):
            done = _diff(*args)
            assert done.returncode == 2, (name, done.stdout, done.stderr)
            assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, (name, done.stderr)


def test_cells_missing_from_the_current_run_count_unless_it_was_narrowed(tmp_path: Path) -> None:
    base = _write(tmp_path, "base", [_row("a", Outcome("ok")), _row("b", FAIL)])
    partial = _write(tmp_path, "partial", [_row("a", Outcome("ok"))])
    done = _diff(base, partial)
    assert done.returncode == 1 and "1 missing from the current run" in done.stdout
    narrowed = _row("a", Outcome("ok"))
    narrowed.selection = {"clients": ["asyncpg-default"]}
    done = _diff(base, _write(tmp_path, "narrowed", [narrowed]))
    assert done.returncode == 0 and "the run was narrowed" in done.stdout
    # what every default run leaves out (a sampled topology's other clients) narrows nothing: a lost cell still counts
    sampled = _row("a", Outcome("ok"))
    sampled.selection = {"not_run": ["pgagroal-session: only the clients psycopg-async-default (its lab.sample)"]}
    done = _diff(base, _write(tmp_path, "sampled", [sampled]))
    assert done.returncode == 1 and "1 missing from the current run" in done.stdout


def test_what_a_rule_leaves_open_is_not_a_change() -> None:
    """A rule that names no SQLSTATE (psycopg's 26000 or 42P05, by the server connection a query got) holds the
    failure, not its code: a different code is no change. A rule that names one still catches a different one."""
    from dataclasses import replace

    open_rule = {"outcome": "error", "sqlstate": None, "error_class": None, "phase": "later query"}
    other = Outcome(
        "error",
        "psycopg.DuplicatePreparedStatement",
        "42P05",
        'prepared statement "_pg3_0" already exists',
        "later query",
    )
    before = replace(_row("a", FAIL), expected=open_rule)
    after = replace(_row("a", other), expected=open_rule)
    assert not diff_rows([before], [after]).changes
    held = {**open_rule, "sqlstate": "26000"}
    assert diff_rows([replace(before, expected=held)], [replace(after, expected=held)]).changes
    either = {**open_rule, "sqlstate": ["42P05", "26000"]}  # a rule that allows several: which one came is no change
    assert not diff_rows([replace(before, expected=held)], [replace(after, expected=either)]).changes
    assert diff_rows(
        [replace(before, expected=either)], [replace(after, expected=either, outcome=Outcome("ok"))]
    ).changes


def _cost(low: float, high: float) -> Row:
    versus = {"fixed": "asyncpg-default", "ratio": (low + high) / 2, "low": low, "high": high, "pairs": 6}
    versus |= {"measurable": True, "stopped": "width", "fix_ops_per_s": 900.0, "fixed_ops_per_s": 1000.0}
    return Row(
        run_id="r",
        experiment="cost",
        cell="asyncpg-no-cache-direct-select-by-key-c8",
        client={"name": "asyncpg-no-cache", "packages": {"asyncpg": "0.32.0"}},
        topology={"name": "direct"},
        scenario="select-by-key",
        outcome=Outcome("ok"),
        measures=CostMeasures(8, 4, 0.5, 450, 900.0, [880.0, 920.0], 1.0, [0.9, 1.1], 2.0, [1.8, 2.2], [versus]),
    )


def test_two_cost_runs_prices_are_compared_by_their_intervals(tmp_path: Path) -> None:
    """The fix's price under concurrency in two runs: overlapping intervals agree, apart ones are named; a timing
    never fails the diff."""
    first = _write(tmp_path, "a.jsonl", [_cost(1.05, 1.15)])
    done = _diff(first, _write(tmp_path, "b.jsonl", [_cost(1.10, 1.20)]))
    assert done.returncode == 0 and "1 fix prices under concurrency compared, 0 whose" in done.stdout, done.stdout
    done = _diff(first, _write(tmp_path, "c.jsonl", [_cost(1.20, 1.30)]))
    assert done.returncode == 0 and ", 1 whose 95% intervals do not overlap" in done.stdout, done.stdout
    assert "asyncpg-no-cache vs asyncpg-default through direct at 8: 1.050–1.150 and 1.200–1.300" in done.stdout
