"""The published site in a real browser: Debian's Chromium, headless, driven through chromedriver. It loads the page
from disk with no console error, a pasted error text finds its fix and a price, a matrix cell leads to its evidence,
and a row whose message is markup stays text. A screenshot is kept (CI keeps it as an artifact)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.publish.site import publish
from lab.results.outcome import Outcome
from lab.results.rows import Row

SCREENSHOT_DIR = Path(__file__).resolve().parent.parent / "results" / "screenshots"
HOSTILE = '<script>window.PWNED=1</script><img src=x onerror="window.PWNED=2"> `x` [a](javascript:alert(1))'


def _row(cell: str, client: str, topology: str, outcome: Outcome, **topo: object) -> Row:
    return Row(
        run_id="20261207T000000-1",
        experiment="matrix",
        cell=cell,
        client={"name": client, "packages": {"asyncpg": "0.32.0"}, "description": client},
        topology={"name": topology, **topo},
        scenario="repeated-query",
        outcome=outcome,
        expected={
            "index": 1,
            "outcome": outcome.kind,
            "reason": "A reason. And more.",
            "docs": ["https://example.org"],
        },
        matches=True,
    )


@pytest.fixture
def rows_file(tmp_path: Path) -> Path:
    """A few cells as a run writes them: asyncpg's default failing through a transaction pooler, its fix passing
    there, a latency cell for the price, and a cell whose server message is hostile markup."""
    path = tmp_path / "rows.jsonl"
    lines: list[str] = []

    class _Writer:
        def write(self, row: Row) -> None:
            lines.append(json.dumps(row.to_dict(), sort_keys=True))

        def close(self) -> None:
            path.write_text("\n".join(lines) + "\n")

    writer = _Writer()
    pooled = {"pooler": "pgbouncer", "pooler_version": "1.18.0", "pool_mode": "transaction"}
    failed = Outcome(
        "error", "asyncpg.InvalidSQLStatementNameError", "26000", 'prepared statement "__asyncpg_stmt_b4__" does not exist',
        "later query",
    )  # fmt: skip
    writer.write(
        _row(
            "asyncpg-default-pgbouncer-transaction-repeated-query",
            "asyncpg-default",
            "pgbouncer-transaction",
            failed,
            **pooled,
        )
    )
    fix = _row(
        "asyncpg-no-cache-pgbouncer-transaction-repeated-query",
        "asyncpg-no-cache",
        "pgbouncer-transaction",
        Outcome("ok"),
        **pooled,
    )
    fix.client.update(
        fixes={"asyncpg-default": ""},
        change="statement_cache_size=0",
        snippet="create_pool(dsn, statement_cache_size=0)",
    )
    writer.write(fix)
    for client, ms in (("asyncpg-default", 0.17), ("asyncpg-no-cache", 0.28)):
        latency = _row(f"{client}-direct-single-insert", client, "direct", Outcome("ok"))
        writer.write(
            Row(
                **{
                    **latency.__dict__,
                    "experiment": "latency",
                    "latency_ms": {"median": ms},
                    "expected": None,
                    "matches": None,
                }
            )
        )
    hostile = Outcome("error", "psycopg.errors.RaiseException", "P0001", HOSTILE, "first query")
    writer.write(
        _row(
            "psycopg-async-default-pgbouncer-transaction-repeated-query",
            "psycopg-async-default",
            "pgbouncer-transaction",
            hostile,
            **pooled,
        )
    )
    writer.close()
    return path


@pytest.fixture
def browser() -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromedriver = shutil.which("chromedriver")
    if chromedriver is None:
        pytest.fail("chromedriver is missing: ./pooler-lab test installs chromium and chromium-driver with apt")
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1600"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_the_site_answers_the_on_call_question_in_a_real_browser(rows_file: Path, tmp_path: Path, browser) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By

    index = publish([rows_file], tmp_path / "site")
    assert json.loads((tmp_path / "site" / "data.json").read_text())["cells"], "the data goes beside the page"
    browser.get(index.as_uri())
    box = browser.find_element(By.ID, "query")
    box.send_keys('prepared statement "__asyncpg_stmt_1__" does not exist')  # another name than the cell's own
    answer = browser.find_element(By.ID, "answers").text
    assert "statement_cache_size=0" in answer and " ms " in answer, answer
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SCREENSHOT_DIR / "site-search.png"))
    evidence = browser.find_element(By.CSS_SELECTOR, "#matrix td a")
    target = evidence.get_attribute("href").split("#", 1)[1]
    evidence.click()
    assert browser.execute_script("return location.hash") == f"#{target}"
    assert browser.find_element(By.ID, target).is_displayed()
    assert browser.execute_script("return window.PWNED") is None, "a server's message ran as script"
    assert HOSTILE.split(">")[0] in browser.find_element(By.TAG_NAME, "body").text, (
        "the hostile message is shown as text"
    )
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
    browser.save_screenshot(str(SCREENSHOT_DIR / "site-evidence.png"))


def test_shards_split_a_run_and_publish_merges_them(rows_file: Path, tmp_path: Path) -> None:
    """--shard i/n: every planned cell in exactly one shard; the shards' rows make one site."""
    from lab.options import LabOptions
    from lab.plan import Plan

    whole = {c.id for c in Plan.build(LabOptions(experiments=("matrix",))).all()}
    parts = [{c.id for c in Plan.build(LabOptions(experiments=("matrix",), shard=(i, 3))).all()} for i in (1, 2, 3)]
    assert set().union(*parts) == whole and sum(len(p) for p in parts) == len(whole)
    lines = rows_file.read_text().splitlines()
    halves = [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    halves[0].write_text("\n".join(lines[::2]) + "\n")
    halves[1].write_text("\n".join(lines[1::2]) + "\n")
    publish(halves, tmp_path / "merged")
    merged = json.loads((tmp_path / "merged" / "data.json").read_text())
    single = publish([rows_file], tmp_path / "single")
    assert single.exists()
    assert {c["anchor"] for c in merged["cells"]} == {
        c["anchor"] for c in json.loads((tmp_path / "single" / "data.json").read_text())["cells"]
    }
