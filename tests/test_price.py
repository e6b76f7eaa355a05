"""The price statistics (lab.workloads.price): the ratio of alternately timed pairs and its 95% interval, and the
interleaving itself on two real clients of the lab's server."""

from __future__ import annotations

import asyncio
import math
import random

import pytest

from lab.clients.registry import client_class
from lab.workloads import price


def test_a_ratio_is_the_geometric_mean_of_the_pairs() -> None:
    fixed = [1.0, 2.0, 4.0, 1.0, 2.0]
    fix = [2.0 * x for x in fixed]
    found = price.ratio_of(fix, fixed)
    assert found.ratio == pytest.approx(2.0) and found.pairs == 5
    assert found.low == pytest.approx(2.0) and found.high == pytest.approx(2.0)  # no spread: no width
    assert found.measurable and found.describe().startswith("+100.0%")


def test_noise_around_no_difference_is_not_measurable() -> None:
    rng = random.Random(7)
    fixed = [rng.uniform(0.9, 1.1) for _ in range(200)]
    fix = [x * math.exp(rng.gauss(0, 0.2)) for x in fixed]
    found = price.ratio_of(fix, fixed)
    assert found.low < 1.0 < found.high and not found.measurable
    assert found.describe().startswith("no difference measurable")


def test_a_ratio_needs_two_pairs() -> None:
    with pytest.raises(ValueError):
        price.ratio_of([1.0], [1.0])


def test_interleaving_times_both_clients_alternately_and_stops(topology) -> None:  # type: ignore[no-untyped-def]
    """Two real clients of the server: both sides get the same number of timed calls, at least MIN_PAIRS, and the
    measurement ends by its width or its budget."""
    dsn = topology.endpoint("direct").dsn()
    calls: list[str] = []

    async def measure() -> tuple[price.Ratio, price.Interleaved]:
        a = client_class("asyncpg-no-cache")(dsn, 1, timeout=5.0)
        b = client_class("asyncpg-default")(dsn, 1, timeout=5.0)
        await a.open()
        await b.open()
        try:

            async def on(client, name):  # type: ignore[no-untyped-def]
                calls.append(name)
                await client.fetch("SELECT 1 AS one", {})

            return await price.interleave(lambda: on(a, "a"), lambda: on(b, "b"), budget_s=1.0)
        finally:
            await a.close()
            await b.close()

    ratio, got = asyncio.run(measure())
    assert len(got.fix_s) == len(got.fixed_s) == ratio.pairs >= price.MIN_PAIRS
    assert got.stopped in ("width", "budget")
    timed = calls[2 * price.WARMUP_PAIRS :]
    assert timed[:4] == ["a", "b", "b", "a"]  # the order flips each pair
    assert ratio.low <= ratio.ratio <= ratio.high
