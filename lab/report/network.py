"""REST overhead per round-trip time, measured and as the round-trip model predicts it (claim C8)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.report.rtt_model import DIRECT_REFERENCE, trips
from lab.report.text import code, text
from lab.results.rows import Row

Key = tuple[str, str, bool]  # client, topology, tls


@dataclass(frozen=True)
class OverheadPoint:
    client: str
    tls: bool
    rtt_ms: float
    rest_ms: float
    direct_ms: float
    predicted_ms: float | None  # predicted overhead

    @property
    def measured_ms(self) -> float:
        return self.rest_ms - self.direct_ms

    @property
    def error(self) -> float | None:
        """Relative difference of measured from predicted overhead."""
        if self.predicted_ms is None or self.predicted_ms == 0:
            return None
        return (self.measured_ms - self.predicted_ms) / abs(self.predicted_ms)


def medians(rows: list[Row], stat: str = "median") -> dict[Key, dict[float, float]]:
    """Latency per path and RTT; stat "min" is the run's best round: network delay is fixed, CPU noise only adds."""
    out: dict[Key, dict[float, float]] = defaultdict(dict)
    for r in rows:
        if r.outcome.kind == "ok" and r.latency_ms:
            out[(r.client["name"], r.topology["name"], bool(r.m.tls))][float(r.m.rtt_ms)] = r.latency_ms[stat]
    return out


def tls_version(rows: list[Row]) -> str | None:
    return next((r.topology.get("tls_version") for r in rows if r.topology.get("tls_version")), None)


def overhead_points(rows: list[Row], stat: str = "min") -> list[OverheadPoint]:
    """REST minus direct per RTT, measured and predicted. The model is held against the fastest
    round of each benchmark: the per-call client spends 20-60 ms of CPU per call building a client
    and CA store, noise the model does not try to predict."""
    m = medians(rows, stat)
    version = tls_version(rows)
    points = []
    rest_clients = sorted({r.client["name"] for r in rows if r.m.path == "rest"})
    for tls in (False, True):
        direct = m.get((*DIRECT_REFERENCE, tls), {})
        direct_trips = trips("pg", DIRECT_REFERENCE[0], tls, version)
        for client in rest_clients:
            rest = m.get((client, "rest", tls), {})
            rest_trips = trips("rest", client, tls, version)
            for rtt in sorted(set(rest) & set(direct)):
                predicted = None
                if 0.0 in rest and 0.0 in direct and rest_trips and direct_trips:
                    predicted = (rest[0.0] + rest_trips.total * rtt) - (direct[0.0] + direct_trips.total * rtt)
                points.append(OverheadPoint(client, tls, rtt, rest[rtt], direct[rtt], predicted))
    return points


def slope_table(rows: list[Row]) -> list[tuple[str, str, bool, float | None, int | None, str]]:
    """Per path: round trips measured (slope of median latency over RTT) beside the model's count."""
    m = medians(rows)
    version = tls_version(rows)
    kinds = {r.client["name"]: r.m.path for r in rows}
    out = []
    for (client, topology, tls), by_rtt in sorted(m.items()):
        rtts = sorted(by_rtt)
        slope = (
            (by_rtt[rtts[-1]] - by_rtt[rtts[0]]) / (rtts[-1] - rtts[0])
            if len(rtts) > 1 and rtts[-1] > rtts[0]
            else None
        )
        model = trips(kinds.get(client, "pg"), client, tls, version)
        out.append(
            (client, topology, tls, slope, model.total if model else None, model.explain() if model else "not modelled")
        )
    return out


def network_markdown(rows: list[Row], plot: Path | None) -> str:
    if not rows:
        return "_No network rows in these results: run the experiments with `--lab-network` other than `none`._\n"
    points = overhead_points(rows)
    typical = {(p.client, p.tls, p.rtt_ms): p for p in overhead_points(rows, "median")}
    version = tls_version(rows)
    out = [
        f"REST overhead = insert latency through the REST client minus through `{DIRECT_REFERENCE[0]}` on "
        f"`{DIRECT_REFERENCE[1]}` at the same injected round-trip time, TLS on both or neither "
        f"(TLS negotiated by the gateway: {text(version or 'unknown')}). Predicted = measured at RTT 0 plus the model's round trips x RTT. "
        "The model is held against each benchmark's fastest round (network delay is fixed; the CPU a call spends, "
        "20-60 ms for the per-call client, only adds noise); the median overhead is shown beside it.\n",
        "| REST client | TLS | RTT ms | REST ms (min) | direct ms (min) | overhead measured ms | overhead predicted ms | difference | median overhead ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for p in points:
        diff = f"{p.error:+.0%}" if p.error is not None else "—"
        if p.error is not None and abs(p.error) > 0.10:
            diff += " ⚠ model and measurement differ by more than 10%"
        pred = f"{p.predicted_ms:.1f}" if p.predicted_ms is not None else "—"
        med = typical.get((p.client, p.tls, p.rtt_ms))
        out.append(
            f"| {code(p.client)} | {'on' if p.tls else 'off'} | {p.rtt_ms:g} | {p.rest_ms:.1f} | {p.direct_ms:.1f} | {p.measured_ms:.1f} | {pred} | {diff} | "
            f"{med.measured_ms:.1f} |"
            if med
            else "— |"
        )
    out += [
        "",
        "Round trips per insert, measured (slope of the median over RTT) and counted by the model:\n",
        "| client | topology | TLS | measured round trips | model | model's count |",
        "|---|---|---|---|---|---|",
    ]
    for client, topology, tls, slope, model_total, explain in slope_table(rows):
        out.append(
            f"| {code(client)} | {code(topology)} | {'on' if tls else 'off'} | {slope:.2f} | {model_total if model_total is not None else '—'} | {text(explain)} |"
            if slope is not None
            else f"| {code(client)} | {code(topology)} | {'on' if tls else 'off'} | — | {model_total or '—'} | {text(explain)} |"
        )
    if plot is not None:
        out += ["", f"![REST overhead vs RTT]({plot.name})"]
    return "\n".join(out) + "\n"


def where_100_200_comes_from(rows: list[Row]) -> str:
    """From the model fitted to this run (typical, median, costs): what RTT each REST client needs for 100 and 200 ms of overhead."""
    m = medians(rows)
    version = tls_version(rows)
    lines = []
    for client in sorted({r.client["name"] for r in rows if r.m.path == "rest"}):
        for tls in (False, True):
            rest, direct = m.get((client, "rest", tls), {}), m.get((*DIRECT_REFERENCE, tls), {})
            rt, dt = trips("rest", client, tls, version), trips("pg", DIRECT_REFERENCE[0], tls, version)
            if 0.0 not in rest or 0.0 not in direct or rt is None or dt is None:
                continue
            base, extra = rest[0.0] - direct[0.0], rt.total - dt.total
            sign = "+" if extra >= 0 else "−"
            where = f"{code(client)}, TLS {'on' if tls else 'off'}: overhead = {base:.0f} ms {sign} {abs(extra)} × RTT"
            if extra > 0:
                needs = [max(0.0, (target - base) / extra) for target in (100, 200)]
                where += f" → 100 ms at RTT ≈ {needs[0]:.0f} ms, 200 ms at RTT ≈ {needs[1]:.0f} ms"
            else:
                where += " → never 100 ms: it does not grow with distance"
            lines.append(f"- {where}")
    return "\n".join(lines) + "\n"


def plot_overhead(rows: list[Row], path: Path, reach_ms: float = 200.0) -> Path | None:
    """REST overhead per insert against the injected RTT: measured medians (the statistic the claim quotes) as
    points with their fastest-to-p95 spread, and the round-trip model as a line out to `reach_ms` of RTT, so the
    RCA's 60-160 ms range is on the chart. One colour per REST client, TLS as the line style."""
    points = overhead_points(rows, "median")
    if not points:
        return None
    fastest = {(p.client, p.tls, p.rtt_ms): p for p in overhead_points(rows, "min")}
    slow = {(p.client, p.tls, p.rtt_ms): p for p in overhead_points(rows, "p95")}
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    fig, ax = plt.subplots(figsize=(8.5, 5))
    version = tls_version(rows)
    clients = sorted({p.client for p in points})
    colours = distinct_colours(clients)
    for client in clients:
        for tls in (False, True):
            pts = sorted((p for p in points if p.client == client and p.tls == tls), key=lambda p: p.rtt_ms)
            if not pts:
                continue
            style = "--" if tls else ":"  # the model: a thin line, never markers
            lows = [
                p.measured_ms - fastest[(client, tls, p.rtt_ms)].measured_ms
                if (client, tls, p.rtt_ms) in fastest
                else 0
                for p in pts
            ]
            highs = [
                slow[(client, tls, p.rtt_ms)].measured_ms - p.measured_ms if (client, tls, p.rtt_ms) in slow else 0
                for p in pts
            ]
            ax.errorbar(
                [p.rtt_ms for p in pts],
                [p.measured_ms for p in pts],
                yerr=[[max(0, x) for x in lows], [max(0, x) for x in highs]],
                fmt="o",
                color=colours[client],
                capsize=3,
                markersize=5,
                markerfacecolor=colours[client] if tls else "white",
            )
            base = next((p for p in pts if p.rtt_ms == 0), None)
            model_rest, model_direct = (
                trips("rest", client, tls, version),
                trips("pg", DIRECT_REFERENCE[0], tls, version),
            )
            if base is not None and model_rest and model_direct:
                extra = model_rest.total - model_direct.total
                xs = [0.0, reach_ms]
                ax.plot(
                    xs,
                    [base.measured_ms + extra * x for x in xs],
                    linestyle=style,
                    color=colours[client],
                    linewidth=0.9,
                    alpha=0.7,
                )
    ax.axhspan(100, 200, color="grey", alpha=0.15)
    ax.axvspan(60, 160, color="#d98e04", alpha=0.08)
    ax.axhline(0, color="black", linewidth=0.5)
    handles: list[Any] = [Line2D([], [], color=colours[c], marker="o", label=c) for c in clients]
    handles += [
        Line2D([], [], color="black", linestyle="--", label="https: modelled (line), measured median (filled)"),
        Line2D(
            [],
            [],
            color="black",
            linestyle=":",
            marker="o",
            markerfacecolor="white",
            label="http: modelled (line), measured median (open)",
        ),
        plt.Rectangle((0, 0), 1, 1, color="grey", alpha=0.15, label="the RCA's claim: 100-200 ms more"),
        plt.Rectangle((0, 0), 1, 1, color="#d98e04", alpha=0.08, label="round trips of 60-160 ms"),
    ]
    ax.legend(handles=handles, fontsize=7, loc="upper left")
    ax.set_xlim(-5, reach_ms + 5)
    ax.set_xlabel("network round-trip time (ms); measured at the points, modelled along the lines")
    ax.set_ylabel(f"REST minus {DIRECT_REFERENCE[0]} direct, median (ms)")
    ax.set_title("REST overhead per insert vs network round-trip time (whiskers: fastest to p95)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_latency(rows: list[Row], path: Path, matrix: list[Row] | None = None) -> Path | None:
    """Insert latency at RTT 0, by client and topology (the 'latency' experiment), as distributions: one row per
    client, one marker per topology at the median, its line from the fastest insert to the 95th percentile, on a log
    axis of milliseconds (NullPool's login per insert is a decade above the rest). A configuration the matrix shows
    failing through a topology is drawn as a failure (a cross at the left edge, labelled), never as a measurement."""
    data = {
        (r.client["name"], r.topology["name"]): r.latency_ms for r in rows if r.latency_ms and r.outcome.kind == "ok"
    }
    if not data:
        return None
    failing = {
        (r.client["name"], r.topology["name"])
        for r in matrix or []
        if r.scenario == "insert-returning" and r.outcome.kind != "ok"
    }
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clients = sorted({c for c, _ in data} | {c for c, _ in failing if any(c == k[0] for k in data)})
    topologies = sorted({t for _, t in data})
    fig, ax = plt.subplots(figsize=(10, 0.35 * len(clients) + 1.8))
    colours = distinct_colours(topologies)
    floor = min(v["min"] for v in data.values()) / 1.6
    offset = 0.6 / max(1, len(topologies))
    for i, t in enumerate(topologies):
        for j, c in enumerate(clients):
            y = j + (i - (len(topologies) - 1) / 2) * offset
            stats = data.get((c, t))
            if stats is None:
                if (c, t) in failing:
                    ax.plot(floor, y, marker="x", color=colours[t], markersize=6, linestyle="none")
                continue
            ax.plot([stats["min"], stats["p95"]], [y, y], color=colours[t], linewidth=1.2)
            ax.plot(stats["median"], y, marker="o", color=colours[t], markersize=5, linestyle="none")
    for t in topologies:
        ax.plot([], [], marker="o", color=colours[t], label=t)
    ax.plot([], [], marker="x", color="black", linestyle="none", label="fails there (not measured)")
    ax.set_xscale("log")
    from matplotlib.ticker import FormatStrFormatter, NullFormatter

    ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_yticks(range(len(clients)), clients, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("single-row insert, ms (log scale): dot the median, line from the fastest to the 95th percentile")
    ax.set_title("Insert latency by client and topology, no injected network delay")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(axis="x", which="both", alpha=0.2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def target_overhead_markdown(rows: list[Row]) -> str:
    """On a target the network is real: REST overhead at its measured round-trip times, beside the model's
    network part (its round trips times the measured round trip of each path). The clients' CPU is not modelled."""
    version = tls_version(rows)
    by: dict[tuple[str, str], Row] = {}
    for r in rows:
        if r.outcome.kind == "ok" and r.latency_ms and r.m.tls:
            by[(r.client["name"], r.topology["name"])] = r
    direct = by.get(DIRECT_REFERENCE)
    if direct is None:
        return (
            "_No direct reference measured on the target (asyncpg-default on an endpoint named `direct`, over TLS)._\n"
        )
    out = [
        f"Measured on the target's own network, TLS on both paths ({text(version or 'TLS version unknown')}). Predicted = the model's "
        "round trips x the measured round trip of each path (the REST tier's: a TCP handshake; the database's: `SELECT 1`); "
        "the clients' CPU is not in it. A difference above 10% is flagged.\n",
        "| REST client | REST ms (median) | direct ms (median) | overhead measured ms | REST RTT ms | DB RTT ms | overhead predicted ms | difference |",
        "|---|---|---|---|---|---|---|---|",
    ]
    d_trips = trips("pg", DIRECT_REFERENCE[0], True, version)
    d_rtt = float(direct.topology.get("measured_rtt_ms") or 0)
    for (client, topology), r in sorted(by.items()):
        if topology != "rest":
            continue
        r_trips = trips("rest", client, True, version)
        r_rtt = float(r.topology.get("measured_rtt_ms") or 0)
        measured = r.latency_ms["median"] - direct.latency_ms["median"]  # type: ignore[index]
        predicted = (r_trips.total * r_rtt - d_trips.total * d_rtt) if r_trips and d_trips else None
        diff = (measured - predicted) / abs(predicted) if predicted else None
        flag = (
            f"{diff:+.0%}" + (" **model and measurement disagree**" if diff is not None and abs(diff) > 0.10 else "")
            if diff is not None
            else "—"
        )
        out.append(
            f"| {code(client)} | {r.latency_ms['median']:.1f} | {direct.latency_ms['median']:.1f} | {measured:.1f} | {r_rtt:.1f} | {d_rtt:.1f} | "  # type: ignore[index]
            f"{predicted:.1f} | {flag} |"
            if predicted is not None
            else f"| {code(client)} | ... | | {measured:.1f} | {r_rtt:.1f} | {d_rtt:.1f} | — | — |"
        )
    return "\n".join(out) + "\n"


def distinct_colours(names: list[str]) -> dict[str, Any]:
    """A colour of its own for each name: matplotlib's default cycle (ten) while it lasts, tab20 beyond it (eleven
    topologies since pgagroal joined the default run: zipping the cycle left the eleventh without one)."""
    import matplotlib.pyplot as plt

    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    if len(names) <= len(cycle):
        return dict(zip(names, cycle, strict=False))
    palette = plt.get_cmap("tab20")
    return {name: palette(i % palette.N) for i, name in enumerate(names)}
