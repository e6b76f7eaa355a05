"""The client x topology grid per scenario, for the terminal summary and the report alike."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from lab.results.outcome import Outcome
from lab.results.rows import Row


def short(outcome: Outcome) -> str:
    if outcome.kind == "error":
        code = outcome.sqlstate or (outcome.error_class or "error").rsplit(".", 1)[-1]
        return f"{code} @{outcome.phase}" if outcome.phase else code
    return outcome.kind


@dataclass
class Grid:
    scenario: str
    topologies: list[str]
    cells: dict[str, dict[str, Row]]  # client -> topology -> row


def grids(rows: list[Row]) -> list[Grid]:
    """One grid per scenario, clients and topologies in the order the rows met them."""
    by_scenario: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        by_scenario[row.scenario].append(row)
    out = []
    for scenario, srows in by_scenario.items():
        cells: dict[str, dict[str, Row]] = defaultdict(dict)
        for r in srows:
            cells[r.client["name"]][r.topology["name"]] = r
        out.append(Grid(scenario, list(dict.fromkeys(r.topology["name"] for r in srows)), dict(cells)))
    return out
