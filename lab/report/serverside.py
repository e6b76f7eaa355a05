"""What the server and the pooler saw, beside each matrix outcome: prepared statements left on the
transaction pooler's server connections per repeat (a leak grows with the repeats), and errors they
logged that the client did not raise (lab.observe.server_view records both)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from lab.report.text import code, text
from lab.results.rows import Row


@dataclass(frozen=True)
class Leak:
    row: Row
    per_repeat: list[int]  # statements added by each repeat


def leaks(rows: list[Row]) -> list[Leak]:
    """Cells that passed and added prepared statements in every repeat."""
    out = []
    for r in rows:
        m = r.m
        before, after = getattr(m, "prepared_before", None), getattr(m, "prepared_after", None)
        if r.outcome.kind != "ok" or before is None or not after or None in after:
            continue
        counts = [before, *after]
        added = [b - a for a, b in itertools.pairwise(counts)]
        if added and all(n > 0 for n in added):
            out.append(Leak(r, added))
    return out


def leak_of(rows: list[Row], client: str) -> Leak | None:
    found = [x for x in leaks(rows) if x.row.client["name"] == client]
    return max(found, key=lambda x: sum(x.per_repeat)) if found else None


def serverside_markdown(rows: list[Row]) -> str:
    pooled = [r for r in rows if getattr(r.measures, "prepared_after", None) is not None]
    logged = [r for r in rows if getattr(r.measures, "server_log", None) is not None]
    if not pooled and not logged:
        return "_No row records what the server saw (a Docker run or a target)._\n"
    out = []
    found = leaks(rows)
    if found:
        out += [
            "Configurations that pass but leave prepared statements on the transaction pooler's server connections, "
            "more with every repeat (nothing deallocates a named statement there; the server keeps each until the "
            "connection closes):",
            "",
            "| cell | statements added per repeat |",
            "|---|---|",
        ]
        out += [f"| {code(x.row.cell)} | {text(', '.join(str(n) for n in x.per_repeat))} |" for x in found]
        out.append("")
    else:
        out += ["No passing configuration left more prepared statements with each repeat.", ""]
    unraised = [r for r in logged if (getattr(r.measures, "unraised_errors", 0) or 0) > 0]
    if unraised:
        out += [
            "Cells in which the server or the pooler logged errors the client did not raise:",
            "",
            "| cell | outcome | logged, not raised |",
            "|---|---|---|",
        ]
        for r in unraised:
            lines = [
                e for e in r.m.server_log or [] if e["level"] != "WARNING" and e.get("sqlstate") != r.outcome.sqlstate
            ]
            shown = "; ".join(
                f"{text(e['source'])} {text(e['sqlstate'] or e['level'])} {code(e['message'], 80)} ×{text(e['count'])}"
                for e in lines[:3]
            )
            out.append(f"| {code(r.cell)} | {text(r.outcome.kind)} | {shown} |")
        out.append("")
    else:
        out += [
            f"In none of the {len(logged)} cells whose logs were read did the server or the pooler log an error the client "
            "did not raise.",
            "",
        ]
    return "\n".join(out)
