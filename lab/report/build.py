"""Assembling the report: Markdown first, HTML rendered from it, plots beside both."""

from __future__ import annotations

import time
from pathlib import Path

from lab.report.cost import cost_markdown, prices_markdown, versus_markdown
from lab.report.data import Rows, load_rows, versions_of
from lab.report.matrix import matrix_markdown
from lab.report.network import (
    network_markdown,
    plot_latency,
    plot_overhead,
    target_overhead_markdown,
    where_100_200_comes_from,
)
from lab.report.oncall import oncall_markdown
from lab.report.serverside import serverside_markdown
from lab.report.text import Fragments, code, text, to_html


def build_markdown(data: Rows, out_dir: Path, fragments: Fragments) -> str:
    matrix = data.of("matrix")
    all_network = data.of("network")
    network = [r for r in all_network if not r.topology.get("target")]
    target_network = [r for r in all_network if r.topology.get("target")]
    rest = data.of("rest")
    runs = sorted({r.run_id for r in data.rows})
    parts = [
        "# pooler-lab report",
        "",
        f"Built {time.strftime('%Y-%m-%d %H:%M:%S %Z')} from {len(data.rows)} result rows of run(s) "
        f"{text(', '.join(runs) or '—')} ({text(', '.join(p.name for p in data.sources))}). Every number and verdict below "
        "is computed from those rows.",
        "",
        _covers(data),
        "",
        oncall_markdown(data, fragments),
        _load(data),
        "",
    ]
    from lab.report.claims import claims_markdown, opening_markdown

    parts += [opening_markdown(data), "", "## Claims", "", claims_markdown(data), ""]
    parts += [
        "## The compatibility matrix",
        "",
        matrix_markdown(matrix, fragments) if matrix else "_No matrix rows._",
        "",
    ]
    parts += [versions_line(versions_of(matrix)), ""]
    if matrix:
        parts += ["### What the server and the pooler saw", "", serverside_markdown(matrix)]
    apps = data.of("apps")
    if apps:
        parts += [
            "## Two application processes",
            "",
            "Each client configuration as two OS processes on one topology, each a lone client (one connection) with SQL of its own: "
            "alive at once (`apps-at-once`: their first queries in transactions that overlap, so each prepares on a server "
            "connection of its own, then one query each in turn), or the second started after the first exited (`app-restart`). "
            "A wrong result is process 1 given process 2's answer; an error is process 2's (the row's measures name the process).",
            "",
            matrix_markdown(apps, fragments),
            versions_line(versions_of(apps)),
            "",
        ]
    auth = data.of("auth")
    if auth:
        parts += [
            "## Logins that fail",
            "",
            "What the application sees for a wrong password, an unknown user, and the right user at a pooler of another "
            "region, per way of connecting (hover a cell for the full message). asyncpg reports the SQLSTATE; libpq-based "
            "clients report none during start-up, so their message is the server's or pooler's text.",
            "",
            matrix_markdown(auth, fragments),
            versions_line(versions_of(auth)),
            "",
        ]
    if rest:
        parts += ["## The REST tier (C7)", "", matrix_markdown(rest, fragments), versions_line(versions_of(rest)), ""]
    overhead_png = plot_overhead(network, out_dir / "rest-overhead.png") if network else None
    latency_png = plot_latency(data.of("latency"), out_dir / "latency.png", matrix)
    parts += ["## REST overhead vs network round-trip time (C8)", "", network_markdown(network, overhead_png)]
    if network:
        parts += ["Where 100–200 ms can come from, by this run's model:", "", where_100_200_comes_from(network)]
        parts += [versions_line(versions_of(network)), ""]
    if target_network:
        parts += [
            "## REST overhead on the target's own network (C8)",
            "",
            target_overhead_markdown(target_network),
            versions_line(versions_of(target_network)),
            "",
        ]
    cost, prices = data.of("cost"), data.of("price")
    if prices or cost:
        parts += ["## The price of each fix", ""]
    if prices:
        parts += [prices_markdown(prices), ""]
    if cost:
        parts += ["Under concurrency (`--cost`):", "", cost_markdown(cost), ""]
        versus = versus_markdown(cost)
        if versus:
            parts += [versus, ""]
    overhead = [r for r in data.of("latency") if getattr(r.measures, "harness_overhead_pct", None) is not None]
    if latency_png:
        parts += [
            "## Insert latency by client and topology (RTT 0)",
            "",
            f"![latency]({latency_png.name})",
            "",
            "A hatched bar marked `fails` is a configuration that fails through that topology (see the matrix): its latency is not measured. "
            "sqlalchemy-asyncpg-pgbouncer pays a new connection, with its SCRAM exchange, on every checkout (NullPool).",
            "",
        ]
    if overhead:
        parts += ["### The lab's own overhead on these figures", "", _overhead_markdown(overhead), ""]
    return "\n".join(parts)


def _overhead_markdown(rows: list) -> str:
    """Each latency median beside the same INSERT written with the driver alone (lab.workloads.plain), timed
    interleaved with it on the same driver pool (same run), and the lab's cost (per-round ratios, the two orders'
    medians balanced), which should stay within 5%, with its 95% interval and the rounds it took: a busy machine buys more
    rounds, up to a budget, and a wide interval left says the figure is the machine's, not the lab's."""
    out = [
        "| cell | lab's median (ms) | plain driver loop median (ms) | overhead (95% interval) | rounds |",
        "|---|---|---|---|---|",
    ]
    over = 0
    for r in sorted(rows, key=lambda r: r.cell):
        pct, low, high = r.m.harness_overhead_pct, r.m.harness_overhead_low_pct, r.m.harness_overhead_high_pct
        over += abs(pct) > 5
        flag = " ⚠ above 5%" if abs(pct) > 5 else ""
        interval = f" ({low:+.1f} to {high:+.1f})" if low is not None and high is not None else ""
        out.append(
            f"| {code(r.cell)} | {r.latency_ms.get('median') if r.latency_ms else '—'} | {text(r.m.bare_median_ms)} "
            f"| {pct:+.1f}%{interval}{flag} | {r.m.rounds} |"
        )
    out.append("")
    out.append(
        f"{len(rows) - over} of {len(rows)} within 5%." + (" Treat the others' latency with care." if over else "")
    )
    return "\n".join(out)


STYLE = """
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1b1f24;max-width:1180px;margin:1.5em auto;padding:0 1.2em}
h1{font-size:1.6em;margin:.2em 0}h2{font-size:1.25em;margin-top:1.8em;border-bottom:2px solid #e4e7eb;padding-bottom:.2em}
h3{font-size:1.05em;margin-top:1.2em}code{background:#f3f4f6;padding:0 .25em;border-radius:3px;font-size:.92em}
h2:first-of-type+p+ul{background:#fff8e6;border-left:4px solid #d98e04;padding:.6em 1em .6em 2em}
table{border-collapse:collapse;font-size:.86em;margin:.6em 0}td,th{border:1px solid #d6d9de;padding:3px 7px;vertical-align:top}
th{background:#f3f4f6;text-align:left}img{max-width:100%}
.k-ok{color:#11672b;background:#e3f5e8}.k-fail{color:#8b1a12;background:#fde7e4}.k-wrong{color:#6b3d00;background:#ffe9b8}
.k-none{color:#777;background:#eee}.k-unexpected{outline:2px solid #c00}
span[class^=k-]{padding:1px 5px;border-radius:3px;white-space:nowrap}.msg{font-size:.8em;color:#444;max-width:26em}
pre{background:#f6f8fa;padding:.5em .8em;overflow-x:auto;white-space:pre-wrap}details{margin:.3em 0 1em}
@media print{body{max-width:none;font-size:11px}a{color:inherit}h2{break-after:avoid}table{break-inside:auto}}
"""


def _load(data: Rows) -> str:
    """The machine's load while the rows were recorded: a busy machine makes latencies (not outcomes) less trustworthy."""
    loads = [
        (float(r.host["load_1m"]), int(r.host.get("cpus") or 1)) for r in data.rows if r.host.get("load_1m") is not None
    ]
    if not loads:
        return "_The rows do not record the machine's load (written by an older lab)._"
    worst, cpus = max(loads)
    busy = worst > 0.75 * cpus
    return f"Machine load while these rows were recorded: 1-minute load average up to {worst:.2f} on {cpus} cores" + (
        " — **busy: treat latencies and the model comparison with care**." if busy else " (not busy)."
    )


def _covers(data: Rows) -> str:
    """Which system the rows measured: the lab's local topology (which backend), or a target the lab did not start."""
    targets = sorted({str(r.topology["target"]) for r in data.rows if r.topology.get("target")})
    backends = sorted(
        {
            str(r.topology.get("backend"))
            for r in data.rows
            if r.topology.get("backend") and not r.topology.get("target")
        }
    )
    parts = []
    if targets:
        declared = sorted(
            {
                f"{r.topology['name']}: {r.topology.get('pooler') or 'no pooler'} {r.topology.get('pool_mode') or ''} "
                f"{r.topology.get('pooler_version') or '(version not declared)'}".strip()
                for r in data.rows
                if r.topology.get("target")
            }
        )
        parts.append(
            f"**Target:** {text(', '.join(targets))}, endpoints the lab did not start (as their file declares them: "
            f"{text('; '.join(declared))})."
        )
    if backends:
        parts.append(f"**Local topology** started by the lab ({text(', '.join(backends))} backend).")
    return " ".join(parts)


def versions_line(versions: list[str]) -> str:
    return "Versions: " + text("; ".join(versions))


def write_report(sources: list[Path], out_dir: Path) -> tuple[Path, Path]:
    """report.md and report.html: one Markdown document with the lab's own HTML kept aside, rendered with raw HTML
    off (lab.report.text), so nothing a row carries can become live HTML in either."""
    data = load_rows(sources)
    out_dir.mkdir(parents=True, exist_ok=True)
    fragments = Fragments()
    md = build_markdown(data, out_dir, fragments)
    md_path, html_path = out_dir / "report.md", out_dir / "report.html"
    md_path.write_text(fragments.as_markdown(md))
    body = fragments.as_html(to_html(md))
    html_path.write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>pooler-lab report</title>"
        f"<style>{STYLE}</style></head><body>" + body + "</body></html>"
    )
    return md_path, html_path
