"""The client x topology matrix per scenario, as Markdown."""

from __future__ import annotations

from collections import defaultdict

from lab.rows import Row
from lab.summary import short


def matrix_markdown(rows: list[Row]) -> str:
    by_scenario: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        by_scenario[r.scenario].append(r)
    out = []
    for scenario, srows in by_scenario.items():
        topologies = list(dict.fromkeys(r.topology["name"] for r in srows))
        out.append(f"### {scenario}\n")
        out.append("| client | " + " | ".join(topologies) + " |")
        out.append("|---|" + "---|" * len(topologies))
        cells: dict[str, dict[str, Row]] = defaultdict(dict)
        for r in srows:
            cells[r.client["name"]][r.topology["name"]] = r
        for client, by_topo in cells.items():
            row = []
            for t in topologies:
                r = by_topo.get(t)
                text = "" if r is None else short(r.outcome) + (" ⚠ unexpected" if r.matches is False else "")
                row.append(text)
            out.append(f"| {client} | " + " | ".join(row) + " |")
        out.append("")
    return "\n".join(out)
