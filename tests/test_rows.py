"""The result-row format: what every row must carry, and that writing it loses nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.expectations import Expectation
from lab.outcome import Outcome
from lab.rows import Row, RowWriter, cell_row, latency_stats, read_rows


def _row(outcome: Outcome = Outcome("ok")) -> Row:
    rule = Expectation(outcome="ok", reason="because")
    return cell_row(
        run_id="r1", experiment="matrix", cell_id="asyncpg-default-direct-repeated-query", client="asyncpg-default",
        client_versions={"asyncpg": "0.32.0"}, client_description="d", topology="direct",
        facts={"server_version": "15.18", "pooler": None, "backend": "native"}, scenario="repeated-query",
        outcome=outcome, expected=rule, latencies_s=[0.001, 0.002, 0.003],
    )


def test_row_carries_versions_expectation_and_latency() -> None:
    row = _row()
    data = row.to_dict()
    assert data["client"]["packages"] == {"asyncpg": "0.32.0"}
    assert data["topology"] == {"name": "direct", "server_version": "15.18", "pooler": None, "backend": "native"}
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


def test_latency_stats() -> None:
    assert latency_stats([]) is None
    stats = latency_stats([i / 1000 for i in range(1, 101)])
    assert stats == {"n": 100, "min": 1.0, "median": 51.0, "p95": 96.0, "max": 100.0}
