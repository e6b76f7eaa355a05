"""The client x topology matrix per scenario, as Markdown with coloured cells (inline HTML: the error on hover)."""

from __future__ import annotations

from html import escape

from lab.report.grid import grids, short
from lab.results.rows import Row


def cell(r: Row | None) -> str:
    """One cell: ok / fails / wrong result / unexpected, coloured by class; the full error in its title."""
    if r is None:
        return '<span class="k-none" title="not run">not run</span>'
    kind = {"ok": "k-ok", "wrong-result": "k-wrong"}.get(r.outcome.kind, "k-fail")
    if r.matches is False:
        kind += " k-unexpected"
    o = r.outcome
    title = escape(
        f"{o.error_class or ''} {o.sqlstate or ''} {o.message or ''} {('cause: ' + o.detail) if o.detail else ''}".strip()
        or o.kind,
        quote=True,
    )
    text = escape(short(o)) + (" ⚠ unexpected" if r.matches is False else "")
    return f'<span class="{kind}" title="{title}">{text}</span>'


def matrix_markdown(rows: list[Row]) -> str:
    out = []
    for g in grids(rows):
        out.append(f"### {g.scenario}\n")
        out.append("| client | " + " | ".join(g.topologies) + " |")
        out.append("|---|" + "---|" * len(g.topologies))
        for client, by_topo in g.cells.items():
            texts = [cell(by_topo.get(t)) for t in g.topologies]
            out.append(f"| {client} | " + " | ".join(texts) + " |")
        out.append("")
    return "\n".join(out)
