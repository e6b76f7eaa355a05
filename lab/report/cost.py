"""The price of each fix (`--cost` rows): queries per second and latency per configuration, topology and client
concurrency, beside pgbench -S on the same topology; and one line per fix for the on-call list."""

from __future__ import annotations

from dataclasses import dataclass

from lab.report.data import Rows
from lab.report.text import code, text
from lab.results.measures import price_verdict
from lab.results.rows import Row


def _cell(r: Row | None) -> str:
    if r is None:
        return "—"
    if r.outcome.kind != "ok":
        return f"{text(r.outcome.kind)}: {code(r.outcome.detail or r.outcome.message or '', 60)}"
    m = r.m
    lo, hi = (m.ops_per_s_ci or [m.ops_per_s, m.ops_per_s])[:2]
    return f"{m.ops_per_s:,.0f}/s (±{(hi - lo) / 2:,.0f}) · p50 {m.p50_ms:g} · p99 {m.p99_ms:g} ms"


def _at(rows: list[Row], client: str, topology: str, concurrency: int) -> Row | None:
    return next(
        (
            r
            for r in rows
            if r.client["name"] == client and r.topology["name"] == topology and r.m.concurrency == concurrency
        ),
        None,
    )


def cost_markdown(rows: list[Row]) -> str:
    levels = sorted({r.m.concurrency for r in rows})
    out = [
        "Each configuration that works through a topology asks pgbench -S's query "
        "(`SELECT abalance FROM pgbench_accounts WHERE aid = $1`) with N concurrent workers over a pool of min(N, 4) "
        "connections for 0.5 s; pgbench -S with min(N, 4) clients is the ceiling. Throughput ± half its 95% confidence "
        "interval; p50 and p99 latency in ms. A configuration that fails through a topology is not measured there.",
        "",
    ]
    for topology in dict.fromkeys(r.topology["name"] for r in rows):
        mine = [r for r in rows if r.topology["name"] == topology]
        out += [
            f"#### {text(topology)}",
            "",
            "| configuration | " + " | ".join(f"concurrency {n}" for n in levels) + " |",
            "|---|" + "---|" * len(levels),
        ]
        for client in dict.fromkeys(r.client["name"] for r in mine):
            out.append(
                f"| {code(client)} | " + " | ".join(_cell(_at(mine, client, topology, n)) for n in levels) + " |"
            )
        out.append("")
    return "\n".join(out)


def versus_markdown(rows: list[Row]) -> str:
    """The cost rows' ratios: each fix against what it fixes under concurrency (throughput.against); empty without."""
    found = [(r, v) for r in rows if r.measures is not None and getattr(r.m, "versus", None) for v in r.m.versus]
    if not found:
        return ""
    out = [
        "Under concurrency, each fix against what it fixes where both work: windows of each, alternately, until the "
        "95% interval of the ratio of times per query (fix / fixed) is narrower than the target or the time allowed "
        "runs out.",
        "",
        "| fix | instead of | topology | concurrency | price | pairs | queries/s (fix / fixed) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r, v in found:
        head = f"| {code(r.client['name'])} | {code(v['fixed'])} | {text(r.topology['name'])} | {r.m.concurrency} "
        if "error" in v:
            out.append(head + f"| {code(v['error'], 60)} | | |")
            continue
        budget = "" if v["stopped"] == "width" else " (time allowed ran out)"
        verdict = price_verdict(v["ratio"], v["low"], v["high"], v["measurable"]) + budget
        out.append(
            head + f"| {text(verdict)} | {v['pairs']} | {v['fix_ops_per_s']:,.0f} / {v['fixed_ops_per_s']:,.0f} |"
        )
    return "\n".join(out) + "\n"


def disagreements(first: list[Row], second: list[Row]) -> tuple[int, list[str]]:
    """Two `--cost` runs' ratios, fix by fix: how many were compared, and each pair whose 95% intervals do not
    overlap (the runs disagree beyond what either measured)."""

    def ratios(rows: list[Row]) -> dict[tuple[str, str, str, int], dict]:
        return {
            (r.client["name"], v["fixed"], r.topology["name"], r.m.concurrency): v
            for r in rows
            if r.experiment == "cost" and r.measures is not None and getattr(r.m, "versus", None)
            for v in r.m.versus
            if "error" not in v
        }

    a, b = ratios(first), ratios(second)
    both = sorted(set(a) & set(b))
    apart = [
        f"{fix} vs {fixed} through {topology} at {n}: {a[k]['low']:.3f}–{a[k]['high']:.3f} "
        f"and {b[k]['low']:.3f}–{b[k]['high']:.3f}"
        for k in both
        for fix, fixed, topology, n in [k]
        if a[k]["high"] < b[k]["low"] or b[k]["high"] < a[k]["low"]
    ]
    return len(both), apart


def prices_markdown(rows: list[Row]) -> str:
    """The `price` rows: each fix against what it fixes, timed alternately (lab.workloads.price)."""
    out = [
        "Each fix against each configuration it fixes, on the server and through the session pooler (where both "
        "work), the same query timed with one and then the other, alternately, until the 95% interval of the ratio "
        "(fix / fixed, a geometric mean over the pairs) is narrower than the target or the time allowed runs out. "
        "Where the interval holds 1, the fix costs nothing this measurement can tell.",
        "",
        "| fix | instead of | topology | price | pairs | medians (ms) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        m = r.m
        if m is None:
            out.append(f"| {code(r.client['name'])} | | {text(r.topology['name'])} | {text(r.outcome.kind)} | | |")
            continue
        budget = "" if m.stopped == "width" else " (time allowed ran out)"
        out.append(
            f"| {code(r.client['name'])} | {code(m.fixed)} | {text(r.topology['name'])} | {text(m.verdict() + budget)} "
            f"| {m.pairs} | {m.fix_median_ms:g} / {m.fixed_median_ms:g} |"
        )
    return "\n".join(out) + "\n"


def price(rows: list[Row], fix: str, topology: str, baseline: str) -> str | None:
    """What `fix` costs through `topology`, against `baseline` (the configuration it replaces) direct: latency at
    concurrency 1 and throughput at 8, as percentages; None without cost rows for both."""
    parts = []
    alone, ref1 = _at(rows, fix, "direct", 1), _at(rows, baseline, "direct", 1)
    if fix != baseline and alone and ref1 and alone.outcome.kind == ref1.outcome.kind == "ok" and ref1.m.p50_ms:
        parts.append(f"the setting alone (direct) {(alone.m.p50_ms / ref1.m.p50_ms - 1) * 100:+.0f}% per query at 1")
    for n, what in ((1, "p50"), (8, "ops/s")):
        mine, ref = _at(rows, fix, topology, n), _at(rows, baseline, "direct", n)
        if not mine or not ref or mine.outcome.kind != "ok" or ref.outcome.kind != "ok":
            continue
        if what == "p50" and ref.m.p50_ms:
            parts.append(
                f"with the pooler's hop {(mine.m.p50_ms / ref.m.p50_ms - 1) * 100:+.0f}% per query at concurrency 1"
            )
        elif ref.m.ops_per_s:
            parts.append(f"{(mine.m.ops_per_s / ref.m.ops_per_s - 1) * 100:+.0f}% queries/s at 8")
    ceiling = _at(rows, "pgbench-S", topology, 8)
    mine8 = _at(rows, fix, topology, 8)
    if ceiling and mine8 and mine8.outcome.kind == "ok" and ceiling.m.ops_per_s:
        parts.append(f"{mine8.m.ops_per_s / ceiling.m.ops_per_s * 100:.0f}% of pgbench -S there")
    return f"through {text(topology)} against {code(baseline)} direct: " + ", ".join(parts) if parts else None


@dataclass(frozen=True)
class Price:
    """What a fix costs, from latency rows of the same run: the fix's insert latency against the configuration it
    fixes, where both work (direct), and the fix through the pooler where the other fails."""

    fix: str
    fixed: str
    fix_direct_ms: float | None
    fixed_direct_ms: float | None
    fix_pooled_ms: float | None
    pooled_topology: str | None

    def describe(self) -> str:
        parts = []
        if self.fix_direct_ms is not None and self.fixed_direct_ms is not None:
            pct = (self.fix_direct_ms / self.fixed_direct_ms - 1) * 100 if self.fixed_direct_ms else 0.0
            parts.append(
                f"a single-row insert takes {self.fix_direct_ms:.2f} ms median direct, against {self.fixed_direct_ms:.2f} ms "
                f"for {self.fixed} ({pct:+.0f}%)"
            )
        if self.fix_pooled_ms is not None:
            parts.append(f"{self.fix_pooled_ms:.2f} ms through {self.pooled_topology}")
        return "; ".join(parts) or "not measured"

    def short(self) -> str:
        """The price in one phrase, for the report's first lines."""
        if self.fix_direct_ms is not None and self.fixed_direct_ms:
            pct = (self.fix_direct_ms / self.fixed_direct_ms - 1) * 100
            return f"{self.fix_direct_ms:.2f} ms per insert direct against {self.fixed_direct_ms:.2f} ms ({pct:+.0f}%)"
        if self.fix_pooled_ms is not None:
            return f"{self.fix_pooled_ms:.2f} ms per insert through {self.pooled_topology}"
        return "not measured"


def price_of(data: Rows, fixed: str, fix: str) -> Price | None:
    """The price of `fix` against `fixed` from the latency cells (None where they were not run)."""
    latency = [r for r in data.of("latency") if r.outcome.kind == "ok" and r.latency_ms]

    def median(client: str, topology: str) -> float | None:
        row = next((r for r in latency if r.client["name"] == client and r.topology["name"] == topology), None)
        return float(row.latency_ms["median"]) if row and row.latency_ms else None

    pooled = next(
        (
            t
            for t in ("pgbouncer-transaction", *sorted({r.topology["name"] for r in latency}))
            if median(fix, t) is not None
            and t != "direct"
            and any(r.topology.get("pool_mode") == "transaction" and r.topology["name"] == t for r in latency)
        ),
        None,
    )
    found = Price(
        fix, fixed, median(fix, "direct"), median(fixed, "direct"), median(fix, pooled) if pooled else None, pooled
    )
    return found if found.fix_direct_ms is not None or found.fix_pooled_ms is not None else None
