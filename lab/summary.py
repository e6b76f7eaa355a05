"""A run's matrix at a glance, printed after `lab run` from the rows it wrote."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from rich.console import Console
from rich.table import Table

from lab.outcome import Outcome
from lab.rows import Row, read_rows


def short(outcome: Outcome) -> str:
    if outcome.kind == "error":
        code = outcome.sqlstate or (outcome.error_class or "error").rsplit(".", 1)[-1]
        return f"{code} @{outcome.phase}" if outcome.phase else code
    return outcome.kind


def matrix_tables(rows: list[Row]) -> list[Table]:
    by_scenario: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        if row.experiment == "matrix":
            by_scenario[row.scenario].append(row)
    tables = []
    for scenario, srows in by_scenario.items():
        topologies = list(dict.fromkeys(r.topology["name"] for r in srows))
        table = Table(title=f"scenario: {scenario}", title_justify="left")
        table.add_column("client")
        for t in topologies:
            table.add_column(t)
        cells: dict[str, dict[str, Row]] = defaultdict(dict)
        for r in srows:
            cells[r.client["name"]][r.topology["name"]] = r
        for client, by_topo in cells.items():
            out = []
            for t in topologies:
                r = by_topo.get(t)
                if r is None:
                    out.append("")
                    continue
                style = "green" if r.outcome.kind == "ok" else "yellow"
                if r.matches is False:
                    style = "bold red"
                mark = "" if r.matches is not False else " (unexpected)"
                out.append(f"[{style}]{short(r.outcome)}{mark}[/]")
            table.add_row(client, *out)
        tables.append(table)
    return tables


def print_summary(path: Path, console: Console | None = None) -> None:
    console = console or Console()
    if not console.is_terminal:
        console.width = max(console.width, 120)
    if not path.exists():
        console.print(f"no rows were written ({path} does not exist)")
        return
    rows = list(read_rows(path))
    for table in matrix_tables(rows):
        console.print(table)
    matrix = [r for r in rows if r.experiment == "matrix"]
    unexpected = [r for r in matrix if r.matches is False]
    console.print(f"{len(matrix)} matrix cells, {len(unexpected)} unexpected; rows in {path}")
