"""A server's error text is written by whoever runs that server: the report shows it as text, never as markup or HTML.
The hostile message comes from a real PostgreSQL (a function raising it), through a real driver, into a row."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import psycopg
import pytest
from markdown_it import MarkdownIt

from lab.clients.registry import configuration
from lab.plan import Cell
from lab.report.build import write_report
from lab.results.expectations import Expectation
from lab.results.measures import MatrixMeasures
from lab.results.outcome import WrongResult, classify
from lab.results.recorder import Recorder, Unexpected
from lab.results.rows import RowWriter
from lab.topology.model import EndpointFacts

HOSTILE = "<script>alert(1)</script> <img src=x onerror=alert(2)> `tick` [click](javascript:alert(3)) **bold**"
MEASURES = MatrixMeasures(
    repeats=1, iterations_run=1, cell_timeout_s=1, workers=1, ops_per_worker=1, client_pool_size=1, elapsed_s=0
)


class Tags(HTMLParser):
    """Every tag and every URL-bearing attribute the HTML really has."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.urls: list[str] = []
        self.handlers: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("href", "src"):
                self.urls.append(value or "")
            if name.startswith("on"):
                self.handlers.append(name)


def _live(html: str) -> Tags:
    parser = Tags()
    parser.feed(html)
    return parser


def _hostile_outcome(topology) -> object:  # type: ignore[no-untyped-def]
    """The message, raised by the server itself (as a target's trigger could)."""
    with (
        psycopg.connect(topology.endpoint("direct").dsn(), autocommit=True) as conn,
        pytest.raises(psycopg.Error) as info,
    ):
        conn.execute(
            "DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = 'P0001', MESSAGE = %s; END $$".replace("%s", _literal(HOSTILE))
        )
    return classify(info.value)


def _literal(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def test_a_hostile_server_message_is_text_in_both_reports(topology, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    outcome = _hostile_outcome(topology)
    assert outcome.message == HOSTILE  # type: ignore[attr-defined]
    wrong = classify(WrongResult("worker 0's SELECT", [[HOSTILE]], [[1]]))
    writer = RowWriter("hostile", tmp_path)
    rule = Expectation(outcome="ok", reason=HOSTILE, docs=("javascript:alert(4)", "https://example.org/<b>"))
    for name, observed in (("asyncpg-default", outcome), ("psycopg-sync", wrong)):
        cell = Cell("matrix", configuration(name), "pgbouncer-transaction", "repeated-query")
        facts = EndpointFacts(backend="native", pooler="pgbouncer", pool_mode="transaction", server_version=HOSTILE)
        try:
            Recorder(cell, "hostile", [rule], writer.write, facts)(observed, MEASURES)  # type: ignore[arg-type]
        except Unexpected:
            pass
    md, html = write_report([writer.path], tmp_path / "report")
    page = _live(html.read_text())
    assert "script" not in page.tags and "img" not in page.tags and not page.handlers
    assert all(u.startswith(("http://", "https://", "#", "rest-overhead", "latency")) for u in page.urls), page.urls
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html.read_text()  # shown, as text
    # report.md stays text even for a renderer that lets raw HTML through (what some viewers do)
    permissive = _live(MarkdownIt("commonmark", {"html": True}).enable("table").render(md.read_text()))
    assert "script" not in permissive.tags and "img" not in permissive.tags and not permissive.handlers
    assert not [u for u in permissive.urls if u.lower().startswith("javascript:")]
    assert "alert(1)" in md.read_text()


def test_a_crafted_row_cannot_break_out_of_its_code_span(tmp_path: Path) -> None:
    base = {
        "schema": 2,
        "run_id": "crafted",
        "recorded_at": "2026-12-07T00:00:00+0000",
        "experiment": "matrix",
        "cell": "asyncpg-default-pgbouncer-transaction-repeated-query",
        "scenario": "repeated-query",
        "client": {"name": "asyncpg-default", "packages": {"asyncpg": "0.32.0"}, "description": "d"},
        "topology": {"name": "pgbouncer-transaction", "pooler": "pgbouncer", "pool_mode": "transaction"},
        "outcome": {"kind": "ok"},
        "measures": None,
    }
    crafted = {
        **base,
        "cell": "x`</code><script>alert(5)</script>",
        "client": {
            **base["client"],
            "name": "<img src=x onerror=alert(6)>",
            "fixes": {"asyncpg-default": "``<script>alert(7)</script>"},
            "change": "`;<b>",
        },
        "outcome": {
            "kind": "error",
            "sqlstate": "26000",
            "error_class": "``<b>x</b>``",
            "message": "`` ` <script>alert(8)</script>",
            "phase": "first query",
        },
        "expected": {"outcome": "ok", "reason": "<script>alert(9)</script>", "docs": ["javascript:alert(10)"]},
    }
    path = tmp_path / "crafted.jsonl"
    path.write_text(json.dumps(crafted) + "\n")
    md, html = write_report([path], tmp_path / "report")
    page = _live(html.read_text())
    assert "script" not in page.tags and "img" not in page.tags and "b" not in page.tags and not page.handlers
    permissive = _live(MarkdownIt("commonmark", {"html": True}).enable("table").render(md.read_text()))
    assert "script" not in permissive.tags and "img" not in permissive.tags and not permissive.handlers
