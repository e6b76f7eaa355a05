"""The client x topology matrix per scenario: coloured cells in the HTML (the failure's text under its code, readable
without hovering), a plain table in report.md. Every text comes from rows, so both are escaped (lab.report.text)."""

from __future__ import annotations

from lab.report.grid import grids, short
from lab.report.text import Fragments, attr, code, text
from lab.results.rows import Row


def _message(r: Row) -> str:
    o = r.outcome
    if o.kind == "wrong-result":
        return f"expected {o.expected}, got {o.received}" if o.expected else (o.detail or "")
    if o.kind != "error":
        return o.detail or ""
    return (o.message or "") + (f" (cause: {o.detail})" if o.detail and o.detail != o.message else "")


def cell_html(r: Row | None) -> str:
    """One cell: ok / fails / wrong result / unexpected, coloured by class, the error's text under it."""
    if r is None:
        return '<td><span class="k-none">not run</span></td>'
    kind = {"ok": "k-ok", "wrong-result": "k-wrong"}.get(r.outcome.kind, "k-fail")
    if r.matches is False:
        kind += " k-unexpected"
    label = short(r.outcome) + (" ⚠ unexpected" if r.matches is False else "")
    message = _message(r)
    detail = f'<div class="msg">{attr(message[:160])}</div>' if message and r.outcome.kind != "ok" else ""
    return f'<td id="{attr(r.experiment + "/" + r.cell)}"><span class="{kind}">{attr(label)}</span>{detail}</td>'


def cell_markdown(r: Row | None) -> str:
    if r is None:
        return "not run"
    label = text(short(r.outcome) + (" (unexpected)" if r.matches is False else ""))
    message = _message(r)
    return label + (f" {code(message, 120)}" if message and r.outcome.kind != "ok" else "")


def matrix_markdown(rows: list[Row], fragments: Fragments) -> str:
    out = []
    for g in grids(rows):
        out.append(f"### {text(g.scenario)}\n")
        html = ["<table><tr><th>client</th>" + "".join(f"<th>{attr(t)}</th>" for t in g.topologies) + "</tr>"]
        md = ["| client | " + " | ".join(text(t) for t in g.topologies) + " |", "|---|" + "---|" * len(g.topologies)]
        for client, by_topo in g.cells.items():
            html.append(
                f"<tr><th>{attr(client)}</th>" + "".join(cell_html(by_topo.get(t)) for t in g.topologies) + "</tr>"
            )
            md.append(f"| {code(client)} | " + " | ".join(cell_markdown(by_topo.get(t)) for t in g.topologies) + " |")
        html.append("</table>")
        out += [fragments.add("".join(html), "\n".join(md)), ""]
    return "\n".join(out)
