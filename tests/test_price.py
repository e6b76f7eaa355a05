"""The price statistics (lab.workloads.price): the ratio of alternately timed pairs and its 95% interval, and the
interleaving itself on two real clients of the lab's server."""

from __future__ import annotations

import asyncio
import math
import random
import statistics

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


def test_a_few_pairs_take_students_t_not_the_normal() -> None:
    """Four pairs: the interval is Student's t (3 degrees of freedom) wide, not the normal's, which would claim a
    precision four pairs do not have."""
    fixed = [1.0, 1.0, 1.0, 1.0]
    fix = [1.1, 1.2, 1.1, 1.2]
    found = price.ratio_of(fix, fixed)
    logs = [math.log(x) for x in fix]
    half = 3.182 * statistics.stdev(logs) / 2
    assert found.high == pytest.approx(math.exp(statistics.fmean(logs) + half))
    assert price.t95(3) == 3.182 and price.t95(45) == pytest.approx(1.96, abs=0.001)


def test_throughput_against_alternates_windows_and_says_why_it_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both clients open at once; after a warm-up window each, the windows of the fix and of what it fixes
    alternate, the order flipping each pair (A B, B A, A B ...), until the interval is narrow enough or the budget
    is spent; both are closed."""
    from lab.workloads import throughput

    windows: list[str] = []
    events: list[str] = []

    class Side:
        def __init__(self, name: str, rate: float) -> None:
            self.name, self.rate = name, rate

        async def open(self) -> None:
            events.append(f"open {self.name}")

        async def close(self) -> None:
            events.append(f"close {self.name}")

    async def window(client: Side, concurrency: int, duration: float, warmup_s: float = 0.0) -> throughput.Throughput:
        windows.append(client.name)
        return throughput.Throughput(1, client.rate, (client.rate, client.rate), 1.0, (1.0, 1.0), 1.0, (1.0, 1.0))

    monkeypatch.setattr(throughput, "window", window)
    fix, fixed = Side("fix", 500.0), Side("fixed", 1000.0)
    got = asyncio.run(throughput.against(fix, fixed, "fixed", 2, budget_s=0.0))  # type: ignore[arg-type]
    pairs = throughput.RATIO_MIN_PAIRS
    assert got.stopped == "width" and got.ratio.pairs == pairs  # no spread: the interval is as narrow as can be
    assert got.ratio.ratio == pytest.approx(2.0)  # half the queries per second: twice the time per query
    assert windows[:6] == ["fix", "fixed", "fix", "fixed", "fixed", "fix"] and len(windows) == 2 + 2 * pairs
    assert sorted(events) == ["close fix", "close fixed", "open fix", "open fixed"]
    assert throughput.fits(None, 32) and throughput.fits(5, 1) and not throughput.fits(5, 8)


def test_a_medians_interval_is_the_binomials_order_statistics() -> None:
    """For 100 values the 95% interval of the median is the 40th to the 61st of them (the binomial's), whatever
    their distribution: a latency overhead is a median of ratios that a busy machine skews one way."""
    values = [float(v) for v in range(1, 101)]
    random.Random(7).shuffle(values)
    assert price.median_interval(values) == (50.5, 40.0, 61.0)
    with pytest.raises(ValueError):
        price.median_interval([1.0] * 5)


def test_latency_rounds_go_on_until_the_overhead_is_known_not_until_it_is_small() -> None:
    """The stopping rule looks at the interval's width only: tight ratios around +30% stop as soon as tight ratios
    around +1% do, and wide ones (a busy machine) ask for more rounds either way."""
    from lab.workloads.bench import Measurement

    def measured(centre: float, spread: float) -> Measurement:
        rng = random.Random(3)
        m = Measurement(rounds=100, warmup=3, precision=0.02, budget_s=1.0)
        m.bare = [1.0] * 103
        m.samples = [centre * (1 + rng.uniform(-spread, spread)) for _ in range(103)]
        return m

    assert measured(1.30, 0.01).precise() and measured(1.01, 0.01).precise()
    assert not measured(1.30, 0.40).precise() and not measured(1.01, 0.40).precise()


def test_the_price_of_going_first_cancels_out_of_the_overhead(monkeypatch: pytest.MonkeyPatch) -> None:
    """Through bench.measure with a clock of the test's own: whichever call comes first after the collector runs pays
    10%, and the lab's call costs 2% more than the plain one. Balanced orders give the lab's 2%; the plain call always
    first would have given 1.02 / 1.1, the lab 7% faster than the driver alone."""
    from types import SimpleNamespace

    from lab.workloads import bench

    clock = SimpleNamespace(t=0.0, fresh=True)
    monkeypatch.setattr(bench, "time", SimpleNamespace(perf_counter=lambda: clock.t, monotonic=lambda: 0.0))
    monkeypatch.setattr(bench, "_settle", lambda: setattr(clock, "fresh", True))

    def spend(seconds: float) -> None:
        clock.t += seconds * (1.1 if clock.fresh else 1.0)
        clock.fresh = False

    async def lab_call() -> int:
        spend(1.02e-3)
        return 1

    async def plain_call() -> None:
        spend(1.0e-3)

    class Client:
        async def open(self) -> None: ...

        async def close(self) -> None: ...

    class Benchmark:  # pytest-benchmark's pedantic, as it calls setup and teardown around every round
        def pedantic(self, target, setup, teardown, rounds, warmup_rounds, iterations):  # type: ignore[no-untyped-def]
            for _ in range(warmup_rounds + rounds):
                setup()
                target()
                teardown()

    m = bench.Measurement(rounds=100, warmup=3, precision=0.025, budget_s=1.0)
    bench.measure(Benchmark(), Client(), lab_call, m, plain=lambda: plain_call)
    found = m.overhead()
    assert found is not None and len(m.bare) == len(m.samples) == 103
    assert math.isclose(found[0], 1.02) and found[1] <= 1.02 <= found[2]
