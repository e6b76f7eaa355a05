"""How long each experiment's cells took per topology, kept beside the results (`results/times.json`) so that the
next run can split its topologies into parts of equal measured cost (lab.parallel.split) instead of guessing.

A timing never decides an outcome: it only balances the parts. Each session adds what it measured to the file,
replacing the averages of the (experiment, topology) pairs it ran and keeping the others, so a narrowed run does
not forget what a full one measured.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

FILE = "times.json"


@dataclass
class CellTimes:
    """(experiment, topology) -> (seconds in all, cells)."""

    spent: dict[tuple[str, str], tuple[float, int]] = field(default_factory=dict)

    def add(self, experiment: str, topology: str, seconds: float) -> None:
        total, cells = self.spent.get((experiment, topology), (0.0, 0))
        self.spent[(experiment, topology)] = (total + seconds, cells + 1)

    def per_cell(self, experiment: str, topology: str) -> float | None:
        total, cells = self.spent.get((experiment, topology), (0.0, 0))
        return total / cells if cells else None

    def update(self, newer: CellTimes) -> None:
        """The pairs `newer` measured replace these; the others stay."""
        self.spent.update(newer.spent)

    @classmethod
    def read(cls, results: Path) -> CellTimes | None:
        """The times kept in `results`, or None where there are none (or none this lab can read)."""
        try:
            doc = json.loads((results / FILE).read_text())
            return cls(
                {
                    (str(e), str(t)): (float(v["seconds"]), int(v["cells"]))
                    for e, topologies in doc.items()
                    for t, v in topologies.items()
                }
            )
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return None

    def write(self, results: Path) -> None:
        """Merged into what `results` kept, written whole (a reader never sees half a file)."""
        kept = CellTimes.read(results) or CellTimes()
        kept.update(self)
        doc: dict[str, dict[str, dict[str, float | int]]] = {}
        for (experiment, topology), (seconds, cells) in sorted(kept.spent.items()):
            doc.setdefault(experiment, {})[topology] = {"seconds": round(seconds, 3), "cells": cells}
        results.mkdir(parents=True, exist_ok=True)
        tmp = results / f".{FILE}.{os.getpid()}"
        tmp.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, results / FILE)

    @classmethod
    def merged(cls, sources: Iterable[Path]) -> CellTimes:
        """What several results directories kept (the parts of one run), as one."""
        out = cls()
        for path in sources:
            out.update(cls.read(path) or cls())
        return out
