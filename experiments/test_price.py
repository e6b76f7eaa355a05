"""The price of each fix against the configuration it fixes (lab.workloads.price): on the server and through the
session pooler, where both work, the same query timed with one client and then the other, alternately, until the
ratio's 95% interval is narrow enough or the time allowed runs out. A row per fix and configuration fixed; timings
are never asserted, only recorded."""

from __future__ import annotations

import asyncio
import itertools
import statistics

import pytest

from lab.clients.python.execute import perform
from lab.clients.registry import client_class
from lab.plan import Cell, configuration
from lab.pytest_plugin import LabRun
from lab.results.measures import PriceMeasures
from lab.results.outcome import OK, classify
from lab.results.recorder import Recorder
from lab.workloads import price
from lab.workloads.scenarios import repeated_query

QUERY = "SELECT CAST($1 AS integer) * 2 (the repeated-query scenario's statement)"


@pytest.mark.experiment("price")
def test_price(cell: Cell[str], lab_run: LabRun, record: Recorder) -> None:
    fixed: str = cell.case
    for subject in (cell.client, configuration(fixed)):  # both must work here, or there is nothing to compare
        reason = record.why_not_measured(subject=subject, scenario="repeated-query", what="price")
        if reason:
            pytest.skip(reason)
    dsn = lab_run.topology.endpoint(cell.topology).dsn()
    counter = itertools.count()

    async def measure() -> tuple[price.Ratio, price.Interleaved]:
        fix = client_class(cell.client.name)(dsn, 1, timeout=5.0)
        other = client_class(fixed)(dsn, 1, timeout=5.0)
        await fix.open()
        try:
            await other.open()
            try:
                return await price.interleave(
                    lambda: perform(fix, repeated_query(0, next(counter) % 997, lab_run.table)),
                    lambda: perform(other, repeated_query(0, next(counter) % 997, lab_run.table)),
                )
            finally:
                await other.close()
        finally:
            await fix.close()

    try:
        ratio, got = asyncio.run(measure())
    except Exception as exc:
        record(classify(exc), None)  # a failing price is a row too, with no measures
        raise
    record(
        OK,
        PriceMeasures(
            fixed=fixed,
            query=QUERY,
            pairs=ratio.pairs,
            ratio=round(ratio.ratio, 4),
            low=round(ratio.low, 4),
            high=round(ratio.high, 4),
            measurable=ratio.measurable,
            stopped=got.stopped,
            target_width=price.WIDTH,
            budget_s=price.BUDGET_S,
            fix_median_ms=round(statistics.median(got.fix_s) * 1000, 4),
            fixed_median_ms=round(statistics.median(got.fixed_s) * 1000, 4),
        ),
        got.fix_s,
    )
