"""A run split into sessions side by side (`run --jobs`, lab.parallel): the same cells, the same outcomes as one
session, one row file, and nothing of the parts left behind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from lab.options import LabOptions
from lab.parallel import split
from lab.plan import Plan
from lab.results.diff import diff_files
from lab.results.rows import read_rows
from lab.results.timings import CellTimes

ROOT = Path(__file__).resolve().parent.parent
NARROW = [
    "--experiments",
    "matrix",
    "--scenarios",
    "crossover,server-side-cursor",
    "--topologies",
    "direct,pgbouncer-transaction,pgbouncer-session",
    "--clients",
    "psycopg-sync,psycopg-sync-no-prepare,django-default,node-pg-named",
]


def _run(results: Path, jobs: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lab", "run", "--jobs", jobs, "--results", str(results), *NARROW],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_split_puts_every_topology_in_exactly_one_part() -> None:
    plan = Plan.build(LabOptions())
    groups = split(plan, 3)
    flat = [t for g in groups for t in g]
    assert len(groups) == 3 and sorted(flat) == sorted(set(flat))
    assert set(flat) == {c.topology for cells in plan.cells.values() for c in cells}


def test_parts_side_by_side_give_the_serial_runs_outcomes(tmp_path: Path) -> None:
    serial, side = tmp_path / "serial", tmp_path / "side"
    one = _run(serial, "1")
    assert one.returncode == 0, one.stdout[-3000:] + one.stderr[-2000:]
    two = _run(side, "3")
    assert two.returncode == 0, two.stdout[-3000:] + two.stderr[-2000:]
    assert "[part 3]" in two.stdout + two.stderr  # three sessions, their output relayed with their names
    rows = list(read_rows(side / "latest.jsonl"))
    assert {r.topology["name"] for r in rows} == {"direct", "pgbouncer-transaction", "pgbouncer-session"}
    assert len({r.run_id for r in rows}) == 1 and rows[0].run_id in str((side / "latest.jsonl").resolve())
    diff = diff_files(serial / "latest.jsonl", side / "latest.jsonl")
    assert diff.compared == len(rows) and not diff.changes and not diff.only_before and not diff.only_after, diff
    assert not (side / "parts").exists(), "the parts' directories outlived the merge"


def test_measured_times_balance_the_parts_and_survive_a_narrowed_run(tmp_path: Path) -> None:
    """What a run measured decides the next split: a topology whose cells took far longer than the static weights
    say gets a part of its own; a narrowed run's times replace only the pairs it ran."""
    plan = Plan.build(LabOptions())
    topologies = sorted({c.topology for cells in plan.cells.values() for c in cells})
    heavy = topologies[0]
    times = CellTimes()
    for name, cells in plan.cells.items():
        for c in cells:
            times.add(name, c.topology, 10.0 if c.topology == heavy else 0.1)
    times.write(tmp_path)
    groups = split(plan, 3, CellTimes.read(tmp_path))
    assert (heavy,) in groups, groups
    narrowed = CellTimes()
    narrowed.add("matrix", heavy, 0.2)
    narrowed.write(tmp_path)
    kept = CellTimes.read(tmp_path)
    assert kept is not None and kept.per_cell("matrix", heavy) == 0.2
    assert kept.per_cell("apps", heavy) == 10.0  # not measured this time: kept
    (tmp_path / "times.json").write_text("not json")
    assert CellTimes.read(tmp_path) is None  # an unreadable file is no times, not an error
