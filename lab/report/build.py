"""Assembling the report: Markdown first, HTML rendered from it, plots beside both."""

from __future__ import annotations

import time
from pathlib import Path

import markdown

from lab.report.data import Rows, load_rows, versions_of
from lab.report.matrix import matrix_markdown
from lab.report.network import network_markdown, plot_latency, plot_overhead, target_overhead_markdown, where_100_200_comes_from


def build_markdown(data: Rows, out_dir: Path) -> str:
    matrix = data.of("matrix")
    all_network = data.of("network")
    network = [r for r in all_network if not r.topology.get("target")]
    target_network = [r for r in all_network if r.topology.get("target")]
    rest = data.of("rest")
    runs = sorted({r.run_id for r in data.rows})
    parts = [
        "# pooler-lab report",
        "",
        f"Built {time.strftime('%Y-%m-%d %H:%M:%S %Z')} from {len(data.rows)} result rows of run(s) {', '.join(runs) or '—'} "
        f"({', '.join(str(p) for p in data.sources)}). Every number and verdict below is computed from those rows.",
        "",
        _covers(data),
        "",
    ]
    from lab.report.claims import claims_markdown, opening_markdown

    parts += [opening_markdown(data), "", "## Claims", "", claims_markdown(data), ""]
    parts += ["## The compatibility matrix", "", matrix_markdown(matrix) if matrix else "_No matrix rows._", ""]
    parts += ["Versions: " + "; ".join(versions_of(matrix)), ""]
    if rest:
        parts += ["## The REST tier (C7)", "", matrix_markdown(rest), "Versions: " + "; ".join(versions_of(rest)), ""]
    overhead_png = plot_overhead(network, out_dir / "rest-overhead.png") if network else None
    latency_png = plot_latency(data.of("latency"), out_dir / "latency.png")
    parts += ["## REST overhead vs network round-trip time (C8)", "", network_markdown(network, overhead_png)]
    if network:
        parts += ["Where 100–200 ms can come from, by this run's model:", "", where_100_200_comes_from(network)]
        parts += ["Versions: " + "; ".join(versions_of(network)), ""]
    if target_network:
        parts += ["## REST overhead on the target's own network (C8)", "", target_overhead_markdown(target_network),
                  "Versions: " + "; ".join(versions_of(target_network)), ""]
    if latency_png:
        parts += ["## Insert latency by client and topology (RTT 0)", "", f"![latency]({latency_png.name})", "",
                  "A missing bar is a configuration that fails through that topology (see the matrix): its latency is not measured. "
                  "sqlalchemy-asyncpg-pgbouncer pays a new connection, with its SCRAM exchange, on every checkout (NullPool).", ""]
    return "\n".join(parts)


def _covers(data: Rows) -> str:
    """Which system the rows measured: the lab's local topology (which backend), or a target the lab did not start."""
    targets = sorted({str(r.topology["target"]) for r in data.rows if r.topology.get("target")})
    backends = sorted({str(r.topology.get("backend")) for r in data.rows if r.topology.get("backend") and not r.topology.get("target")})
    parts = []
    if targets:
        declared = sorted({f"{r.topology['name']}: {r.topology.get('pooler') or 'no pooler'} {r.topology.get('pool_mode') or ''} "
                           f"{r.topology.get('pooler_version') or '(version not declared)'}".strip() for r in data.rows if r.topology.get("target")})
        parts.append(f"**Target:** {', '.join(targets)}, endpoints the lab did not start (as their file declares them: {'; '.join(declared)}).")
    if backends:
        parts.append(f"**Local topology** started by the lab ({', '.join(backends)} backend).")
    return " ".join(parts)


def write_report(sources: list[Path], out_dir: Path) -> tuple[Path, Path]:
    data = load_rows(sources)
    out_dir.mkdir(parents=True, exist_ok=True)
    md = build_markdown(data, out_dir)
    md_path, html_path = out_dir / "report.md", out_dir / "report.html"
    md_path.write_text(md)
    body = markdown.markdown(md, extensions=["tables"])
    html_path.write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>pooler-lab report</title>"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;font-size:90%}td,th{border:1px solid #ccc;padding:3px 6px}"
        "img{max-width:100%}</style></head><body>" + body + "</body></html>"
    )
    return md_path, html_path
