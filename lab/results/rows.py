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

from lab.errors import ConfigError
from lab.paths import RESULTS_DIR
from lab.results import measures as measures_of
from lab.results.measures import Measures
from lab.results.outcome import Outcome

SCHEMA = 2
READABLE = (1, 2)  # schema 1 kept the measures as a free-form "params" object
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
    measures: Measures | None = None  # the experiment's own measurements (lab.results.measures)
    selection: dict[str, list[str]] | None = None  # the names the run was narrowed to, if it was
    recorded_at: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    host: dict[str, Any] = field(
        default_factory=lambda: {
            "python": platform.python_version(),
            "machine": platform.machine(),
            "load_1m": round(os.getloadavg()[0], 2),
            "cpus": os.cpu_count(),
        }
    )
    schema: int = SCHEMA

    @property
    def m(self) -> Any:
        """The experiment's measures, as its own class (lab.results.measures): a reader that picked rows of one
        experiment reads that class's fields (a misspelt one fails where it is read; unknown ones where a row is
        read back). Typed Any because the class follows from the experiment, which is data."""
        if self.measures is None:
            raise ValueError(f"row {self.cell} of {self.experiment} has no measures")
        return self.measures

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["outcome"] = self.outcome.to_dict()
        data["measures"] = self.measures.to_dict() if self.measures is not None else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Row:
        if not isinstance(data, dict):
            raise ValueError("a result row is a JSON object")
        missing = [k for k in REQUIRED if k not in data]
        if missing:
            raise ValueError(f"result row lacks {', '.join(missing)}")
        for key in ("outcome", "client", "topology"):
            if not isinstance(data[key], dict):
                raise ValueError(f"result row's {key} is not an object")
        if data["schema"] not in READABLE:
            raise ValueError(
                f"result row has schema {data['schema']!r}, this lab reads {', '.join(map(str, READABLE))}"
            )
        data = dict(data)
        if data["schema"] == 1:
            data["measures"] = data.pop("params", None) or None
        return cls(
            **{
                **data,
                "schema": SCHEMA,
                "outcome": Outcome.from_dict(data["outcome"]),
                "measures": measures_of.read(data["experiment"], data.get("measures")),
            }
        )


def latency_stats(samples_s: list[float]) -> dict[str, float] | None:
    if not samples_s:
        return None
    ms = sorted(s * 1000 for s in samples_s)
    pick = lambda q: ms[min(len(ms) - 1, int(q * len(ms)))]  # noqa: E731
    return {
        "n": len(ms),
        "min": round(ms[0], 3),
        "median": round(pick(0.5), 3),
        "p95": round(pick(0.95), 3),
        "max": round(ms[-1], 3),
    }


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


class BadRows(ConfigError, ValueError):
    """A result file the lab cannot read: one line naming the file and the line, exit status 2."""


def read_rows(path: Path) -> Iterator[Row]:
    try:
        f = open(path, encoding="utf-8")  # noqa: SIM115 - closed by the with below; open's own failure is one line
    except OSError as exc:
        raise BadRows(f"{path}: cannot read it ({exc.strerror})") from None
    with f:
        n = 0
        try:
            for n, line in enumerate(f, 1):  # noqa: B007 - n names the line a failure is on
                if line.strip():
                    yield Row.from_dict(json.loads(line))
        except UnicodeDecodeError:
            raise BadRows(f"{path}: not a text file of result rows (JSON lines)") from None
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            raise BadRows(f"{path}:{n}: {exc}") from None
