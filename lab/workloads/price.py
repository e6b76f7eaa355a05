"""The price of a fix against the configuration it fixes: both clients open at once, the same query timed with one
and then the other, alternately, until the ratio is known well enough or the time allowed runs out.

Timed alternately (A B, B A, A B ...: the order flips each pair), a drift of the machine's speed (another process,
a frequency change, the other part of a parallel run) hits both alike, which two benchmarks timed one after the
other cannot promise. The price is the geometric mean of the pairs' ratios (fix / fixed), with a 95% interval from
the mean and spread of their logarithms (Student's t; at the 60 pairs and more a latency price takes, the normal's). It
stops once the interval is narrower than WIDTH of the ratio, or at the budget, and the row says which; where the
interval holds 1 the fix costs nothing measurable.
"""

from __future__ import annotations

import gc
import math
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from lab.results.measures import price_verdict

#: the interval the measurement aims for: high / low of the ratio's 95% interval, less 1
WIDTH = 0.06
#: pairs before the interval is first looked at, and between two looks (a latency row's extra rounds too)
MIN_PAIRS, CHECK_EVERY = 60, 20
#: pairs run first and not counted: a connection's first queries (its type lookups, a driver's first prepare)
WARMUP_PAIRS = 10
#: how long one price may take (seconds of alternating queries)
BUDGET_S = 2.0
Z95 = statistics.NormalDist().inv_cdf(0.975)
#: Student's t, 95% two-sided, by degrees of freedom: the few pairs a throughput ratio takes (lab.workloads.throughput)
#: need it; past the table it is the normal's to within 4%
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
       11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093, 20: 2.086,
       25: 2.060, 30: 2.042}  # fmt: skip


def t95(df: int) -> float:
    """Student's t for a 95% two-sided interval with `df` degrees of freedom (the nearest tabled df at or below)."""
    if df < 1:
        raise ValueError("an interval needs at least one degree of freedom")
    return T95[max(k for k in T95 if k <= df)] if df <= 30 else Z95


@dataclass(frozen=True)
class Ratio:
    """fix / fixed: its geometric mean over `pairs` and its 95% interval."""

    ratio: float
    low: float
    high: float
    pairs: int

    @property
    def width(self) -> float:
        return self.high / self.low - 1

    @property
    def measurable(self) -> bool:
        """False where the interval holds 1: no difference this measurement can tell."""
        return not self.low <= 1.0 <= self.high

    def describe(self) -> str:
        return price_verdict(self.ratio, self.low, self.high, self.measurable)


def ratio_of(fix_s: list[float], fixed_s: list[float]) -> Ratio:
    """The pairs' ratios: each fix time over the fixed time it was paired with (Student's t below 31 pairs)."""
    logs = [math.log(a / b) for a, b in zip(fix_s, fixed_s, strict=True) if a > 0 and b > 0]
    if len(logs) < 2:
        raise ValueError("a ratio needs at least two pairs")
    mean = statistics.fmean(logs)
    half = t95(len(logs) - 1) * statistics.stdev(logs) / math.sqrt(len(logs))
    return Ratio(math.exp(mean), math.exp(mean - half), math.exp(mean + half), len(logs))


def median_interval(values: list[float]) -> tuple[float, float, float]:
    """The median and its distribution-free 95% interval (the order statistics the binomial puts around it): a latency
    row's overhead is built from medians of per-round ratios, whose rounds a busy machine delays one-sidedly."""
    if len(values) < 6:
        raise ValueError("a median's interval needs at least six values")
    s = sorted(values)
    n = len(s)
    k = max(0, math.floor((n - Z95 * math.sqrt(n)) / 2) - 1)
    return statistics.median(s), s[k], s[n - 1 - k]


@dataclass
class Interleaved:
    """What an interleaved measurement took: each side's times, in pairs, and why it stopped."""

    fix_s: list[float]
    fixed_s: list[float]
    stopped: str = ""  # "width" | "budget"


async def interleave(
    fix: Callable[[], Awaitable[Any]],
    fixed: Callable[[], Awaitable[Any]],
    budget_s: float = BUDGET_S,
    width: float = WIDTH,
) -> tuple[Ratio, Interleaved]:
    """Time `fix` and `fixed` alternately (each call awaited alone) until the ratio's interval is narrower than
    `width` or `budget_s` has passed. The collector runs between pairs, untimed."""
    got = Interleaved([], [])
    for _ in range(WARMUP_PAIRS):
        await fix()
        await fixed()
    deadline = time.monotonic() + budget_s
    gc.collect()
    gc.freeze()
    try:
        while True:
            first_fix = len(got.fix_s) % 2 == 0
            for call, into in (
                ((fix, got.fix_s), (fixed, got.fixed_s)) if first_fix else ((fixed, got.fixed_s), (fix, got.fix_s))
            ):
                t0 = time.perf_counter()
                await call()
                into.append(time.perf_counter() - t0)
            n = len(got.fix_s)
            if n >= MIN_PAIRS and n % CHECK_EVERY == 0:
                found = ratio_of(got.fix_s, got.fixed_s)
                if found.width <= width:
                    got.stopped = "width"
                    return found, got
                if time.monotonic() > deadline:
                    got.stopped = "budget"
                    return found, got
    finally:
        gc.unfreeze()
