"""The round-trip model's counts, and the overhead arithmetic the report does with them."""

from __future__ import annotations

from lab.report.network import overhead_points, slope_table
from lab.report.rtt_model import rest_trips, tls_handshake_trips, trips
from lab.results.measures import NetworkMeasures
from lab.results.outcome import Outcome
from lab.results.rows import Row


def test_counts() -> None:
    assert tls_handshake_trips("TLSv1.3") == 1 and tls_handshake_trips("TLSv1.2") == 2
    assert rest_trips("httpx-per-call", True, "TLSv1.3").total == 3
    assert rest_trips("httpx-per-call", False, None).total == 2
    assert rest_trips("httpx-shared", True, "TLSv1.3").total == 1
    assert trips("pg", "asyncpg-default", True, None).total == 2
    assert trips("pg", "sqlalchemy-psycopg", False, None) is None  # not counted: reported as such


def _row(client: str, topology: str, rtt: float, tls: bool, median: float, path: str) -> Row:
    return Row(
        run_id="r",
        experiment="network",
        cell=f"{client}-{topology}-{rtt}-{tls}",
        client={"name": client, "packages": {}},
        topology={"name": topology, "tls_version": "TLSv1.3"},
        scenario="single-insert",
        outcome=Outcome("ok"),
        latency_ms={"n": 5, "min": median, "median": median, "p95": median, "max": median},
        measures=NetworkMeasures(rtt_ms=rtt, tls=tls, rounds=5, warmup_rounds=1, path=path),
    )


def test_overhead_and_prediction() -> None:
    rows = []
    for rtt in (0.0, 20.0):
        rows.append(_row("asyncpg-default", "direct", rtt, True, 0.5 + 2 * rtt, "pg"))
        rows.append(_row("httpx-per-call", "rest", rtt, True, 30 + 3 * rtt + (2 if rtt else 0), "rest"))
    points = overhead_points(rows)
    at20 = next(p for p in points if p.rtt_ms == 20)
    assert at20.measured_ms == (30 + 60 + 2) - (0.5 + 40)
    assert at20.predicted_ms == (30 + 60) - (0.5 + 40)
    assert round(at20.error, 3) == round(2 / 49.5, 3)
    slopes = {(c, t): s for c, t, _, s, _, _ in slope_table(rows)}
    assert slopes[("asyncpg-default", "direct")] == 2.0


def test_the_latency_plot_gives_every_topology_a_colour_of_its_own(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Eleven topologies (more than matplotlib's default cycle of ten): every one drawn, each in its own colour."""
    from lab.report.network import distinct_colours

    names = [f"topology-{i}" for i in range(11)]
    colours = distinct_colours(names)
    assert set(colours) == set(names)
    assert len({str(c) for c in colours.values()}) == len(names)
