"""The one result-row format: every experiment, benchmark and report reads or writes this.

A row is one JSON object per line in results/runs/<run_id>.jsonl. It names the cell
(experiment, client, topology, scenario), the outcome, the expectation it was held to,
the latencies observed, and the versions of every component that produced it, so a
row read a year later still says what was measured on what.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lab import RESULTS_DIR
from lab.outcome import Outcome

SCHEMA = 1
REQUIRED = ("schema", "run_id", "recorded_at", "experiment", "cell", "client", "topology", "scenario", "outcome")


@dataclass
class Row:
    run_id: str
    experiment: str  # "matrix", "latency", ...
    cell: str  # the pytest id part: client-topology-scenario
    client: dict[str, Any]  # {"name": ..., "packages": {dist: version}}
    topology: dict[str, Any]  # {"name": ..., **endpoint facts}
    scenario: str
    outcome: Outcome
    expected: dict[str, Any] | None = None
    matches: bool | None = None
    latency_ms: dict[str, float] | None = None  # min/median/p95/max/n of operations
    params: dict[str, Any] = field(default_factory=dict)
    recorded_at: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    host: dict[str, str] = field(default_factory=lambda: {"python": platform.python_version(), "machine": platform.machine()})
    schema: int = SCHEMA

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["outcome"] = self.outcome.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Row":
        missing = [k for k in REQUIRED if k not in data]
        if missing:
            raise ValueError(f"result row lacks {', '.join(missing)}")
        if data["schema"] != SCHEMA:
            raise ValueError(f"result row has schema {data['schema']}, this lab reads {SCHEMA}")
        return cls(**{**data, "outcome": Outcome.from_dict(data["outcome"])})


def latency_stats(samples_s: list[float]) -> dict[str, float] | None:
    if not samples_s:
        return None
    ms = sorted(s * 1000 for s in samples_s)
    pick = lambda q: ms[min(len(ms) - 1, int(q * len(ms)))]  # noqa: E731
    return {"n": len(ms), "min": round(ms[0], 3), "median": round(pick(0.5), 3), "p95": round(pick(0.95), 3), "max": round(ms[-1], 3)}


class RowWriter:
    """Appends rows to results/runs/<run_id>.jsonl as they happen: a Ctrl-C loses nothing recorded."""

    def __init__(self, run_id: str, results_dir: Path = RESULTS_DIR) -> None:
        self.path = results_dir / "runs" / f"{run_id}.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        latest = results_dir / "latest.jsonl"
        tmp = latest.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        os.symlink(os.path.relpath(self.path, results_dir), tmp)
        tmp.replace(latest)

    def write(self, row: Row) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(row.to_dict(), sort_keys=True) + "\n")
            f.flush()


def read_rows(path: Path) -> Iterator[Row]:
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield Row.from_dict(json.loads(line))
                except (ValueError, TypeError) as exc:
                    raise ValueError(f"{path}:{n}: {exc}") from None


def cell_row(
    *,
    run_id: str,
    experiment: str,
    cell_id: str,
    client: str,
    client_versions: dict[str, str],
    client_description: str,
    topology: str,
    facts: dict[str, Any],
    scenario: str,
    outcome: Outcome,
    expected: Any | None,
    latencies_s: list[float] | None = None,
    params: dict[str, Any] | None = None,
) -> Row:
    """The row of one cell; `expected` is the expectation rule (with .to_dict/.mismatches) or None."""
    return Row(
        run_id=run_id,
        experiment=experiment,
        cell=cell_id,
        client={"name": client, "packages": client_versions, "description": client_description},
        topology={"name": topology, **facts},
        scenario=scenario,
        outcome=outcome,
        expected=expected.to_dict() if expected is not None else None,
        matches=(not expected.mismatches(outcome)) if expected is not None else None,
        latency_ms=latency_stats(latencies_s or []),
        params=params or {},
    )
