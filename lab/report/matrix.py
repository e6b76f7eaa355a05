"""The client x topology matrix per scenario, as Markdown."""

from __future__ import annotations

from lab.report.grid import grids, short
from lab.results.rows import Row


def matrix_markdown(rows: list[Row]) -> str:
    out = []
    for g in grids(rows):
        out.append(f"### {g.scenario}\n")
        out.append("| client | " + " | ".join(g.topologies) + " |")
        out.append("|---|" + "---|" * len(g.topologies))
        for client, by_topo in g.cells.items():
            texts = []
            for t in g.topologies:
                r = by_topo.get(t)
                texts.append("" if r is None else short(r.outcome) + (" ⚠ unexpected" if r.matches is False else ""))
            out.append(f"| {client} | " + " | ".join(texts) + " |")
        out.append("")
    return "\n".join(out)
