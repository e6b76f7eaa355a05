"""One run as several pytest sessions side by side, each on a topology of its own.

A cell spends most of its time waiting for the server and the pooler, not on the CPU, so independent topologies
are measured side by side: the plan's topologies are split into `jobs` groups of about equal cost, and each group
runs in a session of its own that starts its own PostgreSQL and poolers (nothing is shared between sessions, so no
cell's server connections, prepared statements or locks meet another session's), with the same options otherwise.
Every cell stays deterministic under load (each orders what it claims), so its outcome is the serial run's.

The parts' rows are merged into the run's one row file (results/runs/<run id>.jsonl, results/latest.jsonl), their
benchmark JSON into one, and the exit status is the worst part's. Ctrl-C (or SIGTERM) interrupts every part, each
of which stops its own servers.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from lab.options import LabOptions, to_pytest_args
from lab.paths import EXPERIMENTS_DIR, ROOT
from lab.plan import Plan
from lab.results.rows import RowWriter
from lab.results.timings import CellTimes

#: what a cell of each experiment costs against a matrix cell, roughly (measured on the reference machine): used only
#: to balance the parts, never to decide anything
WEIGHTS = {
    "apps": 2.0,
    "session-state": 3.0,
    "limits": 8.0,
    "latency": 3.0,
    "price": 4.0,
    "auth": 1.0,
    "network": 3.0,
    "rest": 2.0,
}


@dataclass
class Part:
    index: int
    topologies: tuple[str, ...]
    run_id: str
    results: Path
    process: subprocess.Popen[str] | None = None

    @property
    def rows(self) -> Path:
        return self.results / "runs" / f"{self.run_id}.jsonl"


def split(plan: Plan, jobs: int, times: CellTimes | None = None) -> list[tuple[str, ...]]:
    """The plan's topologies in `jobs` groups of about equal cost (largest first, each to the lightest group).

    A cell's cost is what its experiment's cells took through its topology in the runs `times` kept (seconds per
    cell), and otherwise its experiment's WEIGHTS against a matrix cell, turned into seconds by what the measured
    pairs took per unit of their weights: one pooler's cells may take ten times another's (pgagroal's session-state
    probes wait out its blocking_timeout), which no static weight per experiment can know."""
    # seconds per unit of WEIGHTS, from every pair measured (a narrowed run may have timed no matrix cell)
    known = [(s / WEIGHTS.get(e, 1.0), n) for (e, _), (s, n) in (times.spent.items() if times else ()) if n]
    unit = sum(s for s, _ in known) / sum(n for _, n in known) if known else 1.0
    cost: dict[str, float] = {}
    for name, cells in plan.cells.items():
        for c in cells:
            measured = times.per_cell(name, c.topology) if times else None
            cost[c.topology] = cost.get(c.topology, 0.0) + (
                measured if measured is not None else WEIGHTS.get(name, 1.0) * unit
            )
    groups: list[list[str]] = [[] for _ in range(max(1, min(jobs, len(cost))))]
    loads = [0.0] * len(groups)
    for topology, weight in sorted(cost.items(), key=lambda kv: -kv[1]):
        lightest = loads.index(min(loads))
        groups[lightest].append(topology)
        loads[lightest] += weight
    return [tuple(g) for g in groups if g]


def _relay(part: Part, say: Callable[[str], None]) -> None:
    assert part.process is not None and part.process.stdout is not None
    for line in part.process.stdout:
        say(f"[part {part.index}] {line.rstrip()}")


def run_parts(
    opts: LabOptions, plan: Plan, backend: str, jobs: int, extra: list[str], say: Callable[[str], None]
) -> tuple[list[Part], list[int]]:
    """Run the parts side by side; their exit codes (pytest's), in part order."""
    assert opts.run_id is not None
    results = Path(opts.results)
    parts = [
        Part(i + 1, group, f"{opts.run_id}-p{i + 1}", results / "parts" / opts.run_id / str(i + 1))
        for i, group in enumerate(split(plan, jobs, CellTimes.read(results)))
    ]
    for part in parts:
        part.results.mkdir(parents=True, exist_ok=True)
        part_opts = replace(
            opts, topologies=part.topologies, run_id=part.run_id, results=part.results, sampled=tuple(plan.sampled)
        )
        argv = [
            sys.executable,
            "-m",
            "pytest",
            str(EXPERIMENTS_DIR),
            "-q",
            f"--benchmark-json={part.results / 'benchmark.json'}",
            *to_pytest_args(part_opts),
            f"--lab-backend={backend}",
            "-rfE",
            *extra,
        ]
        say(f"part {part.index}: topologies {', '.join(part.topologies)}")
        part.process = subprocess.Popen(
            argv,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,  # Ctrl-C reaches the parts through us, once, in order
        )
    relays = [threading.Thread(target=_relay, args=(p, say), daemon=True) for p in parts]
    for t in relays:
        t.start()
    try:
        codes = [p.process.wait() for p in parts if p.process is not None]
    except KeyboardInterrupt:
        for p in parts:
            if p.process is not None and p.process.poll() is None:
                os.killpg(p.process.pid, signal.SIGINT)  # each part stops its own servers
        codes = [p.process.wait() for p in parts if p.process is not None]
        for t in relays:
            t.join(5)
        merge(opts, parts)
        raise
    for t in relays:
        t.join(5)
    merge(opts, parts)
    return parts, codes


def merge(opts: LabOptions, parts: list[Part]) -> Path:
    """The parts' rows as the run's one row file (the run's id and selection on every row), latest.jsonl pointing at
    it, and one benchmark JSON."""
    assert opts.run_id is not None
    results = Path(opts.results)
    target = RowWriter(opts.run_id, results).path  # the run's row file, latest.jsonl pointing at it
    selection = opts.selection()
    with open(target, "w") as out:
        for part in parts:
            if not part.rows.exists():
                continue
            for line in part.rows.read_text().splitlines():
                if not line.strip():
                    continue
                row = json.loads(line)
                row["run_id"] = opts.run_id
                not_run = (row.get("selection") or {}).get("not_run")
                row["selection"] = {**(selection or {}), **({"not_run": not_run} if not_run else {})} or None
                out.write(json.dumps(row, sort_keys=True) + "\n")
    benchmarks: list[object] = []
    head: dict[str, object] = {}
    for part in parts:
        path = part.results / "benchmark.json"
        if path.exists():
            doc = json.loads(path.read_text())
            head = head or {k: v for k, v in doc.items() if k != "benchmarks"}
            benchmarks += doc.get("benchmarks", [])
    (results / "benchmark.json").write_text(json.dumps({**head, "benchmarks": benchmarks}, indent=1))
    measured = CellTimes.merged(part.results for part in parts)
    if measured.spent:
        measured.write(results)  # what the next run splits by
    shutil.rmtree(results / "parts" / opts.run_id, ignore_errors=True)  # every row is in the run's file now
    with contextlib.suppress(OSError):
        (results / "parts").rmdir()  # only when no other run's parts are there
    return target
