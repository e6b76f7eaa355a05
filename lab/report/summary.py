"""A run's matrix at a glance, printed after `lab run` from the rows it wrote."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from lab.report.grid import grids, short
from lab.results.rows import Row, read_rows


def matrix_tables(rows: list[Row]) -> list[Table]:
    tables = []
    for g in grids([r for r in rows if r.experiment == "matrix"]):
        table = Table(title=f"scenario: {g.scenario}", title_justify="left")
        table.add_column("client")
        for t in g.topologies:
            table.add_column(t)
        for client, by_topo in g.cells.items():
            out: list[str | Text] = []
            for t in g.topologies:
                r = by_topo.get(t)
                if r is None:
                    out.append("")
                    continue
                style = "bold red" if r.matches is False else "green" if r.outcome.kind == "ok" else "yellow"
                out.append(Text(f"{short(r.outcome)}{' (unexpected)' if r.matches is False else ''}", style=style))
            table.add_row(client, *out)
        tables.append(table)
    return tables


def print_summary(path: Path, console: Console | None = None, tables: bool = True) -> int:
    """Print the run's matrix and counts; returns how many rows the run recorded."""
    console = console or Console(markup=False, highlight=False)
    if not console.is_terminal:
        console.width = max(console.width, 120)
    if not path.exists():
        console.print(f"no rows were written ({path} does not exist)")
        return 0
    rows = list(read_rows(path))
    for table in matrix_tables(rows) if tables else []:
        console.print(table)
    held = [r for r in rows if r.matches is not None]
    unexpected = [r for r in held if r.matches is False]
    uncovered = sum(1 for r in unexpected if r.expected is None)
    counts = Counter(r.experiment for r in rows)
    console.print(
        f"{len(held)} cells held to the rules, {len(unexpected)} unexpected"
        + (f" ({uncovered} with no rule)" if uncovered else "")
        + f"; {len(rows)} rows in all ({', '.join(f'{k} {v}' for k, v in counts.items())}) in {path}"
    )
    for r in unexpected[:10]:
        console.print(f"  unexpected: {r.cell}: {r.outcome.summary()}")
    return len(rows)
