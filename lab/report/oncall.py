"""The report's first screen, for the engineer on call: per failure the rows show, what the application printed,
why, the change for each affected configuration as code, what the change costs, and the pooler-side alternative.

Everything is computed from rows of the same run: the symptom is the error the application saw (verbatim, escaped:
a target's error text is written by whoever runs that server), the cause is the first sentence of the rule the cell
was held to, a fix is shown only where a cell of the same rows shows it working, and its price comes from the
rows' latency (or cost) cells. Cell ids go into a details block.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field

from lab.report.cost import Price, price_of
from lab.report.data import Rows
from lab.report.fixes import Fix, fixes
from lab.report.serverside import leak_of
from lab.report.text import Fragments, attr, code, text
from lab.results.rows import Row

#: what Supabase calls the lab's topologies (its connection strings: port 6543 and 5432 on the pooler's host, 5432
#: on the database's own host)
SUPABASE_NAMES = {
    "pgbouncer-transaction": "Supabase's transaction pooler (port 6543)",
    "pgbouncer-session": "Supabase's session pooler (port 5432)",
    "direct": "a direct connection (db.<ref>.supabase.co:5432)",
}


@dataclass
class Failure:
    """One failure the rows show, grouped by what the application saw."""

    title: str  # the symptom's kind, short: the SQLSTATE and the error
    symptom: str  # what the application printed, verbatim
    cause: str
    rows: list[Row]
    fixes: list[tuple[Fix, list[Row], Price | None]] = field(default_factory=list)
    alternatives: list[str] = field(default_factory=list)  # escaped Markdown
    plain_alternatives: list[str] = field(default_factory=list)  # the same, as plain text (the site escapes it)
    note: str = ""  # escaped Markdown


def _symptom(r: Row) -> tuple[str, str]:
    """(a short title, the text the application printed)."""
    o = r.outcome
    if o.kind == "wrong-result":
        return "a wrong answer, silently", f"expected {o.expected}, got {o.received}" if o.expected else (
            o.detail or ""
        )
    if o.kind in ("hang", "timeout"):
        return ("no answer (hang)" if o.kind == "hang" else "a timeout"), o.detail or ""
    head = " ".join(p for p in (o.sqlstate, o.error_class) if p)
    message = o.message or ""
    if o.detail and "PoolTimeout" in (o.error_class or ""):  # the pool's wrapper, and what it wrapped
        message = f"{message} (cause: {o.detail})"
    return head, message


def _cause(r: Row) -> str:
    reason = str((r.expected or {}).get("reason") or "")
    return reason.split(". ")[0].rstrip(".") + "." if reason else "No rule explains it (an unexpected outcome)."


def _passing(rows: list[Row], client: str, where: set[tuple[str, str, str]]) -> list[Row] | None:
    """The rows in which `client` passes at every (experiment, topology, scenario) of `where`: the same work, where
    the failing configuration failed; None unless it passes at all of them."""
    ok = [r for r in rows if r.client["name"] == client and r.outcome.kind == "ok"]
    found = [r for r in ok if (r.experiment, r.topology["name"], r.scenario) in where]
    return found if {(r.experiment, r.topology["name"], r.scenario) for r in found} == where else None


def _normalized(message: str) -> str:
    """Messages that differ only in a per-run name or number group together."""
    return re.sub(r"\d+", "N", message)


def failures(data: Rows) -> list[Failure]:
    """The failures of the matrix, the application processes and the tenant routing, each with what fixes it."""
    out: list[Failure] = []
    tenant = [r for r in data.of("tenant") if r.scenario == "tenant-right-user"]
    judged = [*data.of("matrix"), *data.of("apps"), *tenant]
    groups: dict[tuple[str, str, str], list[Row]] = defaultdict(list)
    for r in judged:
        if r.outcome.kind != "ok":
            title, message = _symptom(r)
            groups[(r.outcome.kind, title, _normalized(message) if r.outcome.kind == "error" else "")].append(r)
    relations = fixes(judged)
    for (_kind, title, _), rows in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        _, symptom = _symptom(rows[0])
        failure = Failure(title, symptom, _cause(rows[0]), rows)
        clients = dict.fromkeys(r.client["name"] for r in rows)
        for client in clients:
            where = {(r.experiment, r.topology["name"], r.scenario) for r in rows if r.client["name"] == client}
            for relation in relations.get(client, ()):
                backing = _passing(judged, relation.by, where)
                if backing:
                    failure.fixes.append((relation, backing, price_of(data, client, relation.by)))
        same = set(clients)
        for name, fact, value in (
            (
                "PgBouncer 1.21+ with max_prepared_statements > 0 (pooler side, no client change)",
                "prepared_statements",
                "tracked",
            ),
            (
                "the session pooler (Supabase: port 5432), which pins a server connection per client",
                "pool_mode",
                "session",
            ),
        ):
            there = [
                r
                for r in judged
                if r.topology.get(fact) == value and r.client["name"] in same and r.outcome.kind == "ok"
            ]
            if there and any(r.topology.get("pool_mode") == "transaction" for r in rows):
                topologies = sorted({r.topology["name"] for r in there})
                failure.alternatives.append(
                    f"{text(name)}: {len(there)} cells of the same configurations pass on {', '.join(code(t) for t in topologies)}"
                )
                failure.plain_alternatives.append(
                    f"{name}: {len(there)} cells of the same configurations pass on {', '.join(topologies)}"
                )
        out.append(failure)
    return out


def _short_symptom(symptom: str) -> str:
    return symptom.splitlines()[0] if symptom else ""


def _price(p: Price | None) -> str:
    if p is None:
        return "price not measured in these rows (`pooler-lab run` measures it in its latency cells)"
    return text(p.describe())


def _fence(body: str) -> str:
    """A fenced code block no content can close."""
    longest = max((len(m) for m in re.findall(r"`+", body)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}\n{body}\n{fence}"


def _cells(fragments: Fragments, rows: list[Row], label: str) -> str:
    ids = [r.cell for r in rows]
    html = (
        f"<details><summary>{attr(label)}: {len(ids)}</summary><p>"
        + ", ".join(f"<code>{attr(i)}</code>" for i in ids)
        + "</p></details>"
    )
    return fragments.add(html, f"{text(label)}: " + ", ".join(code(i) for i in ids))


def oncall_markdown(data: Rows, fragments: Fragments) -> str:
    found = failures(data)
    out = ["## On call: what broke, why, what to change, and what it costs", ""]
    topologies = {r.topology["name"] for r in data.rows}
    names = [f"{code(t)} is {text(SUPABASE_NAMES[t])}" for t in SUPABASE_NAMES if t in topologies]
    if names:
        out += [
            "Supabase's names for these topologies: " + "; ".join(names) + ". Locally the poolers are PgBouncer "
            "(and a model of Supavisor, named as such in its rows): `pooler-lab run --target FILE` runs the same cells "
            "against your own project.",
            "",
        ]
    if not found:
        return "\n".join([*out, "No cell of these rows failed.", ""])
    glance = []
    for f in found[:8]:
        if not f.fixes:
            continue
        seen: set[str] = set()
        for fix, _backing, p in f.fixes:
            if fix.fixed in seen or len(seen) >= 2:
                continue
            seen.add(fix.fixed)
            glance.append(
                f"- {code(_short_symptom(f.symptom), 70)} ({code(fix.fixed)}): {fix.markdown()}; "
                f"price {text(p.short()) if p is not None else 'not measured here'}"
            )
    if glance:
        out += [
            "**At a glance** (the error as printed, the configuration, the change, and its price):",
            "",
            *glance,
            "",
        ]
    for f in found:
        clients = sorted({r.client["name"] for r in f.rows})
        where = sorted({r.topology["name"] for r in f.rows})
        out += [f"### {text(f.title)}", "", "What the application printed:", "", _fence(f.symptom), ""]
        out += [
            f"**Why:** {text(f.cause)} Seen in {len(f.rows)} cells: {', '.join(code(c) for c in clients)} through "
            f"{', '.join(code(t) for t in where)}.",
            "",
        ]
        if f.fixes:
            out += ["**Change, per configuration** (each shown working in a cell of these rows):", ""]
            for fix, backing, p in f.fixes:
                out.append(
                    f"- {code(fix.fixed)}: {fix.markdown()} (as {code(fix.by)}; passes in {len(backing)} cells). "
                    f"Price: {_price(p)}."
                )
                leak = leak_of(backing, fix.by)
                if leak:
                    out.append(
                        f"  It passes, but leaves {text('/'.join(map(str, leak.per_repeat)))} more prepared statements on "
                        "the pooler's server connections with each repeat."
                    )
                if fix.snippet:
                    out += ["", _indent(_fence(fix.snippet)), ""]
        else:
            out += [
                "**Change:** no configuration measured in these rows fixes it (a narrowed run may have left the fix "
                "out: `pooler-lab list` shows every configuration).",
                "",
            ]
        for alternative in f.alternatives:
            out.append(f"- Or, without changing the client: {alternative}.")
        out += ["", _cells(fragments, f.rows, "cells"), ""]
    return "\n".join(out) + "\n"


def _indent(block: str) -> str:
    return "\n".join("  " + line for line in block.splitlines())
