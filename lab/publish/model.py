"""What the published site shows, computed from rows: one JSON document the page renders and searches.

Everything comes from the rows of the runs it is built from (one run, a sweep's runs, several machines' runs
merged): the cells with their evidence (outcome, error text in full, versions, the rule and its reason and
documentation), the failures with their fixes and prices (lab.report.oncall, as the report's first screen has
them), the claims' verdicts (lab.report.claims), and each cell's history across the runs. Text here is data, never
markup: the page's template escapes it (a target's error text is written by whoever runs that server).
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from typing import Any

from lab.report.claims import CLAIMS, verdicts
from lab.report.data import Rows, versions_of
from lab.report.grid import short
from lab.report.oncall import SUPABASE_NAMES, failures
from lab.results.rows import Row

#: the experiments whose cells the matrix shows (the others are on the page as claims' evidence)
MATRIX_EXPERIMENTS = ("matrix", "apps", "session-state", "auth", "tenant", "wire")


def anchor(r: Row) -> str:
    """A stable id for a cell's evidence: its experiment and cell id, in the characters an id may hold."""
    return "c-" + re.sub(r"[^A-Za-z0-9_-]", "-", f"{r.experiment}-{r.cell}")


def normalize(message: str) -> str:
    """An error text as the search compares it: a statement name, a number, a pid or a run's own name in it is
    whatever the user's application printed there (__asyncpg_stmt_1__ and __asyncpg_stmt_b4__ are one error)."""
    text = message.lower()
    text = re.sub(r'"[^"]*"', '"?"', text)
    text = re.sub(r"\b(?:0x)?[0-9a-f]*\d[0-9a-f]*\b", "n", text)
    return re.sub(r"\s+", " ", text).strip()


def topology_label(t: dict[str, Any]) -> str:
    """A column's name: the pooler family, version and setting (or the model it is), or the server itself."""
    if t.get("model"):
        return str(t["model"]) + (f", {t.get('pool_mode')} mode" if t.get("pool_mode") else "")
    if not t.get("pooler"):
        return "PostgreSQL, direct" if t.get("name") == "direct" else str(t.get("name"))
    parts = [f"{t['pooler']} {t.get('pooler_version') or ''}".strip(), f"{t.get('pool_mode')} mode"]
    if t.get("prepared_statements") == "tracked":
        parts.append("prepared statements tracked")
    if t.get("pooler_settings"):
        parts.append(str(t["pooler_settings"]))
    return ", ".join(parts)


def _cell(r: Row) -> dict[str, Any]:
    o = r.outcome
    rule = r.expected or {}
    return {
        "anchor": anchor(r),
        "id": r.cell,
        "experiment": r.experiment,
        "scenario": r.scenario,
        "client": r.client["name"],
        "client_description": r.client.get("description", ""),
        "topology": r.topology["name"],
        "short": short(o),
        "kind": o.kind,
        "sqlstate": o.sqlstate,
        "phase": o.phase,
        "error_class": o.error_class,
        "message": o.message,
        "detail": o.detail,
        "expected": o.expected,
        "received": o.received,
        "packages": r.client.get("packages", {}),
        "pooler": r.topology.get("pooler"),
        "pooler_version": r.topology.get("pooler_version"),
        "server_version": r.topology.get("server_version"),
        "model": r.topology.get("model"),
        "matches": r.matches,
        "rule": {k: rule.get(k) for k in ("index", "outcome", "sqlstate", "phase", "reason", "docs")} if rule else None,
        "run_id": r.run_id,
        "recorded_at": getattr(r, "recorded_at", None),
    }


def _history(all_rows: list[Row]) -> dict[str, list[dict[str, str]]]:
    """Per cell seen in more than one run, its outcome in each run, oldest first; only cells whose outcome changed."""
    runs: dict[str, dict[str, Row]] = defaultdict(dict)
    for r in all_rows:
        runs[anchor(r)][r.run_id] = r
    out = {}
    for key, by_run in runs.items():
        if len(by_run) < 2:
            continue
        ordered = sorted(by_run.values(), key=lambda r: (getattr(r, "recorded_at", "") or "", r.run_id))
        if len({short(r.outcome) for r in ordered}) > 1:
            out[key] = [
                {
                    "run_id": r.run_id,
                    "recorded_at": str(getattr(r, "recorded_at", "") or ""),
                    "short": short(r.outcome),
                    "versions": ", ".join(f"{k} {v}" for k, v in r.client.get("packages", {}).items()),
                    "pooler": f"{r.topology.get('pooler') or 'none'} {r.topology.get('pooler_version') or ''}".strip(),
                }
                for r in ordered
            ]
    return out


def site_model(data: Rows, every_row: list[Row] | None = None) -> dict[str, Any]:
    """The whole page as data. `data`: the latest row of each cell; `every_row`: all rows of all runs (history)."""
    cells = [r for r in data.rows if r.experiment in MATRIX_EXPERIMENTS]
    by_anchor = {anchor(r): r for r in cells}
    topologies: dict[str, dict[str, Any]] = {}
    for r in cells:
        t = r.topology
        topologies.setdefault(
            t["name"],
            {
                "name": t["name"],
                "label": topology_label(t),
                "supabase": SUPABASE_NAMES.get(t["name"]),
                "model": t.get("model"),
                "stand_in": bool(t.get("model") or t.get("stand_in")),
            },
        )
    found = []
    for f in failures(data):
        found.append(
            {
                "title": f.title,
                "symptom": f.symptom,
                "pattern": normalize(f.symptom),
                "sqlstates": sorted({r.outcome.sqlstate for r in f.rows if r.outcome.sqlstate}),
                "cause": f.cause,
                "clients": sorted({r.client["name"] for r in f.rows}),
                "topologies": sorted({r.topology["name"] for r in f.rows}),
                "cells": [anchor(r) for r in f.rows if anchor(r) in by_anchor],
                "fixes": [
                    {
                        "fixed": fix.fixed,
                        "by": fix.by,
                        "setting": fix.setting,
                        "extra": fix.extra,
                        "snippet": fix.snippet,
                        "docs": list(fix.docs),
                        "price": price.describe() if price is not None else None,
                        "cells": [anchor(r) for r in backing if anchor(r) in by_anchor][:20],
                    }
                    for fix, backing, price in f.fixes
                ],
                "alternatives": f.plain_alternatives,
            }
        )
    claims = [
        {"id": v.claim, "text": CLAIMS.get(v.claim, ""), "verdict": v.verdict, "finding": v.finding}
        for v in verdicts(data)
    ]
    scenarios: dict[str, list[str]] = defaultdict(list)
    for r in cells:
        if r.scenario not in scenarios[r.experiment]:
            scenarios[r.experiment].append(r.scenario)
    return {
        "built": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "runs": sorted({r.run_id for r in data.rows}),
        "sources": [p.name for p in data.sources],
        "versions": versions_of(data.rows),
        "topologies": topologies,
        "experiments": {e: scenarios[e] for e in MATRIX_EXPERIMENTS if scenarios.get(e)},
        "clients": list(dict.fromkeys(r.client["name"] for r in cells)),
        "cells": [_cell(r) for r in cells],
        "failures": found,
        "claims": claims,
        "history": _history(every_row or data.rows),
    }
