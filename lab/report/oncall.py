"""The report's first lines, for the engineer on call: for every failure the rows show, symptom -> cause -> fix.

Each line is computed from rows: the symptom is what the application saw (SQLSTATE and
message), the cause is the first sentence of the expectation rule the cell was held to,
and a fix is named only where a cell of the same run shows it working (its cell id is
given). No fix that no cell tested.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from lab.report.cost import price
from lab.report.data import Rows
from lab.report.fixes import fixes
from lab.report.serverside import leak_of
from lab.results.rows import Row


@dataclass(frozen=True)
class Line:
    symptom: str
    cause: str
    fix: str
    failing: tuple[str, ...]  # the cells that show the symptom


def _symptom(r: Row) -> str:
    o = r.outcome
    if o.kind == "wrong-result":
        got = (
            f"expected {o.expected}, got {o.received}"
            if o.expected is not None
            else (o.detail or "the value another statement returned")
        )
        return f"a wrong result, silently ({got})"
    if o.kind == "timeout":
        return "no answer within the cell's time limit"
    where = f" at {o.phase}" if o.phase else ""
    if o.detail and "PoolTimeout" in (o.error_class or ""):  # the pool's wrapper, and what it wrapped
        return f"`{o.error_class}` (its cause: {o.detail.split(': ', 1)[-1][:120]}){where}"
    return f"`{o.sqlstate or o.error_class} {(o.message or '')[:140]}`{where}"


def _cause(r: Row) -> str:
    reason = str((r.expected or {}).get("reason") or "")
    return reason.split(". ")[0].rstrip(".") + "." if reason else "no rule explains it (an unexpected outcome)."


def _ok_cells(rows: list[Row], client: str, topology: str) -> list[Row]:
    return [r for r in rows if r.client["name"] == client and r.topology["name"] == topology and r.outcome.kind == "ok"]


def lines(data: Rows) -> list[Line]:
    matrix, tenant = data.of("matrix"), data.of("tenant")
    out: list[Line] = []
    # the tenant error: the user name, not the driver
    refused = [r for r in tenant if r.outcome.kind == "error" and r.scenario != "tenant-right-user"]
    working = [r for r in tenant if r.scenario == "tenant-right-user" and r.outcome.kind == "ok"]
    if refused:
        fix = (
            (
                f"connect as `<role>.<project-ref>`, the pooler's user name format: with it, `{working[0].client['name']}` works "
                f"(cell {working[0].cell})"
            )
            if working
            else "connect as `<role>.<project-ref>` (no cell here shows it working)"
        )
        out.append(Line(_symptom(refused[0]), _cause(refused[0]), fix, tuple(r.cell for r in refused)))
    # the same tenant error with the right user name: the address is another region's pooler
    elsewhere = [r for r in data.of("auth") if r.scenario == "auth-wrong-region" and r.outcome.kind == "error"]
    if elsewhere:
        fix = (
            f"connect to the pooler address your project is hosted on (the same user works there: cell {working[0].cell})"
            if working
            else "connect to the pooler address your project is hosted on (no cell here shows it working)"
        )
        out.append(
            Line(
                "with the right `<role>.<project-ref>` and password: " + _symptom(elsewhere[0]),
                _cause(elsewhere[0]),
                fix,
                tuple(r.cell for r in elsewhere),
            )
        )
    # the matrix's failures, then the second application's, grouped by what the application saw
    out += _grouped(matrix, matrix, "", data.of("cost"))
    out += _grouped(
        data.of("apps"), data.of("apps"), "in the second of two application processes (at once or after a restart): "
    )
    # a pool exhausted by a burst
    pool_only = [r for r in data.of("limits") if r.client["name"] == "pool-only" and r.outcome.kind != "ok"]
    hybrid = [r for r in data.of("limits") if r.client["name"] == "rca-hybrid" and r.outcome.kind == "ok"]
    if pool_only:
        fix = (
            f"a REST fallback when the pool is exhausted completed every insert (cell {hybrid[0].cell}), or a larger pool"
            if hybrid
            else "a larger pool (no cell here shows a fallback working)"
        )
        out.append(Line(_symptom(pool_only[0]), _cause(pool_only[0]), fix, tuple(r.cell for r in pool_only)))
    return out


def _grouped(
    failing_in: list[Row], backing_in: list[Row], prefix: str, cost_rows: list[Row] | None = None
) -> list[Line]:
    """One line per (outcome, SQLSTATE) among `failing_in`'s failures; a fix only where `backing_in` shows it passing."""
    relations = fixes(backing_in)
    out: list[Line] = []
    groups: dict[tuple[str, str], list[Row]] = defaultdict(list)
    for r in failing_in:
        if r.outcome.kind != "ok":
            key = r.outcome.sqlstate or r.outcome.error_class or r.outcome.kind
            groups[(r.outcome.kind, key)].append(r)
    for (_, _), rows in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        found = []
        for client in dict.fromkeys(r.client["name"] for r in rows):
            topologies = {r.topology["name"] for r in rows if r.client["name"] == client}
            for relation in relations.get(client, ()):
                fix, how = relation.by, relation.change
                backing = [c for t in sorted(topologies) for c in _ok_cells(backing_in, fix, t)]
                if backing and len({c.topology["name"] for c in backing}) == len(topologies):
                    leak = leak_of(backing_in, fix)
                    cost = price(cost_rows, fix, sorted(topologies)[0], client) if cost_rows else None
                    found.append(
                        f"{client}: {how} (`{fix}` passes there: {backing[0].cell}"
                        + (f" and {len(backing) - 1} more cells" if len(backing) > 1 else "")
                        + ")"
                        + (f"; cost {cost}" if cost else "")
                        + (
                            f", but leaves {'/'.join(map(str, leak.per_repeat))} more prepared statements on the pooler's "
                            f"server connections with each repeat"
                            if leak
                            else ""
                        )
                    )
        fix = "; ".join(found) or "no configuration of this run fixes it"
        first = rows[0].client["name"]
        same = {x.client["name"] for x in rows}
        # the same clients unchanged, through another pooler: the session pooler, or one that tracks prepared statements
        for pooler, fact, value, passing in (
            ("the session pooler", "pool_mode", "session", "cells of the same clients pass there"),
            (
                "PgBouncer 1.21+ with max_prepared_statements > 0",
                "prepared_statements",
                "tracked",
                "cells pass on {where}",
            ),
        ):
            there = [
                r
                for r in backing_in
                if r.topology.get(fact) == value and r.client["name"] in same and r.outcome.kind == "ok"
            ]
            if there and not first.startswith("rca"):
                where = there[0].topology["name"]
                cost = price(cost_rows, first, where, first) if cost_rows else None
                fix += (
                    f"; or {pooler} ({len(there)} {passing.format(where=where)}"
                    + (f"; cost for {first} {cost}" if cost else "")
                    + ")"
                )
        out.append(Line(prefix + _symptom(rows[0]), _cause(rows[0]), fix, tuple(r.cell for r in rows)))
    return out


def oncall_markdown(data: Rows) -> str:
    found = lines(data)
    if not found:
        return "## What broke, why, and what to change\n\nNo cell of these rows failed.\n"
    out = [
        "## What broke, why, and what to change",
        "",
        "One line per failure these rows show: what the application saw → why → what fixes it, with the cell that shows the fix working.",
        "",
    ]
    for line in found:
        out.append(f"- **{line.symptom}** ({len(line.failing)} cells) → {line.cause} → **Fix:** {line.fix}.")
    return "\n".join(out) + "\n"
