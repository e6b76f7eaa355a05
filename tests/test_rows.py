"""The result-row format: what every row must carry, and that writing it loses nothing."""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path

import pytest

from lab.clients.registry import configuration
from lab.plan import Cell
from lab.results.expectations import Expectation
from lab.results.measures import MatrixMeasures
from lab.results.outcome import OK, Outcome
from lab.results.recorder import Recorder, Unexpected
from lab.results.rows import Row, RowWriter, latency_stats, read_rows
from lab.topology.model import EndpointFacts

MEASURES = MatrixMeasures(
    repeats=1, iterations_run=1, cell_timeout_s=10, workers=4, ops_per_worker=15, client_pool_size=4, elapsed_s=0.1
)


def _row(outcome: Outcome = OK) -> Row:
    rows: list[Row] = []
    cell = Cell("matrix", configuration("asyncpg-default"), "direct", "repeated-query")
    record = Recorder(
        cell,
        "r1",
        [Expectation(outcome="ok", reason="because")],
        rows.append,
        EndpointFacts(backend="native", server_version="15.18"),
    )
    try:
        record(outcome, MEASURES, [0.001, 0.002, 0.003])
    except Unexpected:
        pass  # the row is written before the outcome is held to the rule
    return rows[0]


def test_row_carries_versions_expectation_and_latency() -> None:
    row = _row()
    data = row.to_dict()
    assert data["cell"] == "asyncpg-default-direct-repeated-query"
    assert data["client"]["packages"] == {"asyncpg": version("asyncpg")}
    assert data["topology"] == {
        "name": "direct",
        "server_version": "15.18",
        "pooler": None,
        "pool_mode": None,
        "backend": "native",
    }
    assert data["expected"]["reason"] == "because" and data["matches"] is True
    assert data["latency_ms"]["n"] == 3 and data["latency_ms"]["min"] == 1.0
    assert _row(Outcome("error", sqlstate="26000")).matches is False


def test_writer_appends_jsonl_and_points_latest_at_it(tmp_path: Path) -> None:
    w = RowWriter("r1", tmp_path)
    w.write(_row())
    w.write(_row(Outcome("timeout")))
    lines = (tmp_path / "runs" / "r1.jsonl").read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[1])["outcome"]["kind"] == "timeout"
    assert (tmp_path / "latest.jsonl").resolve() == (tmp_path / "runs" / "r1.jsonl").resolve()
    assert [r.outcome.kind for r in read_rows(tmp_path / "latest.jsonl")] == ["ok", "timeout"]


def test_reader_rejects_rows_without_required_fields(tmp_path: Path) -> None:
    bad = _row().to_dict()
    del bad["client"]
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(bad) + "\n")
    with pytest.raises(ValueError, match=r"bad\.jsonl:1: result row lacks client"):
        list(read_rows(path))
    bad = {**_row().to_dict(), "schema": 99}
    path.write_text(json.dumps(bad) + "\n")
    with pytest.raises(ValueError, match="schema 99"):
        list(read_rows(path))


def test_measures_are_typed_and_schema_1_rows_still_read(tmp_path: Path) -> None:
    data = _row().to_dict()
    assert data["schema"] == 2 and data["measures"]["workers"] == 4
    old = {k: v for k, v in data.items() if k not in ("measures", "selection")}
    old.update(schema=1, params=data["measures"])
    path = tmp_path / "old.jsonl"
    path.write_text(json.dumps(old) + "\n")
    (row,) = read_rows(path)
    assert row.measures == MEASURES
    path.write_text(json.dumps({**data, "measures": {**data["measures"], "wokers": 4}}) + "\n")
    with pytest.raises(ValueError, match=r"no field.*wokers"):
        list(read_rows(path))


def test_latency_stats() -> None:
    assert latency_stats([]) is None
    stats = latency_stats([i / 1000 for i in range(1, 101)])
    assert stats == {"n": 100, "min": 1.0, "median": 51.0, "p95": 96.0, "max": 100.0}
