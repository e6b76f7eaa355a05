"""Timing one async operation with pytest-benchmark, the same way for every benchmark of the lab.

A client is opened once on an event loop of its own; each round runs one operation
on that loop. Before each round the garbage of earlier rounds is collected, untimed,
with everything older frozen out of the collector's way, so a round pays for its own
work only. The measurement is filled in as it goes, so a failing benchmark still
leaves its outcome for the result row.
"""

from __future__ import annotations

import asyncio
import gc
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from lab.results.outcome import OK, Outcome, classify
from lab.workloads.price import CHECK_EVERY, median_interval


@dataclass
class Measurement:
    rounds: int
    warmup: int
    outcome: Outcome = OK
    samples: list[float] = field(default_factory=list)  # seconds, warm-up rounds included
    bare: list[float] = field(default_factory=list)  # seconds: the same INSERT in a plain driver loop, no lab around it
    #: with a plain call: more rounds past `rounds` (outside pytest-benchmark's statistics, in the row's samples)
    #: until the overhead's 95% interval is within +-`precision` of it (looked at every CHECK_EVERY rounds), or
    #: `budget_s` more seconds have passed. It stops on the interval's width, never on the value, so a busy machine
    #: buys rounds, not an answer.
    precision: float | None = None
    budget_s: float = 0.0

    @property
    def timed(self) -> list[float]:
        return self.samples[self.warmup :]

    @property
    def ratios(self) -> list[float]:
        """Each measured round's time over its plain call's (a failed round leaves a plain call over)."""
        return [t / p for t, p in zip(self.timed, self.bare[self.warmup :], strict=False) if p > 0]

    def overhead(self) -> tuple[float, float, float] | None:
        """The lab's time over the plain call's, with its 95% interval, or None with too few rounds to say.

        The plain call goes first in even rounds and second in odd ones (measure), and whichever goes first pays for
        coming first (the collector has just run; a sleeping thread wakes): the two orders' ratios sit apart by that
        price, and one median of both would fall anywhere in the gap. So each order has its median, and the overhead
        is their geometric mean, where the price of going first cancels; its interval joins the two medians'
        (order statistics) on the log scale."""
        ratios = self.ratios
        halves = [ratios[(self.warmup + i) % 2 :: 2] for i in range(2)]  # even rounds (plain first), odd rounds
        if min(len(h) for h in halves) < 6:
            return None
        logs = [tuple(math.log(v) for v in median_interval(h)) for h in halves]
        centre = (logs[0][0] + logs[1][0]) / 2
        half = math.hypot(*(max(m - lo, hi - m) for m, lo, hi in logs)) / 2
        return math.exp(centre), math.exp(centre - half), math.exp(centre + half)

    def precise(self) -> bool:
        found = self.overhead()
        if self.precision is None or found is None:  # no interval asked for, or rounds too few to have one
            return True
        ratio, low, high = found
        return max(ratio - low, high - ratio) <= self.precision * ratio


def label(benchmark: Any, cell: Any, run_id: str, group: str, **extra: Any) -> None:
    """Tie a pytest-benchmark entry to its row: a named group, the run id, the experiment, the cell and the
    client's package versions, so --benchmark-compare between two runs lines up and a JSON entry finds its row."""
    benchmark.group = group
    benchmark.extra_info.update(
        run_id=run_id,
        experiment=cell.experiment,
        cell=cell.id,
        client=cell.client.name,
        packages=cell.client.versions(),
        topology=cell.topology,
        **extra,
    )


def _settle() -> None:
    gc.collect()


async def _plain_loop(call: Callable[[], Awaitable[Any]], n: int, into: list[float]) -> None:
    for _ in range(n):
        t0 = time.perf_counter()
        await call()
        into.append(time.perf_counter() - t0)


def measure(
    benchmark: Any,
    client: Any,
    operation: Callable[[], Awaitable[Any]],
    into: Measurement,
    plain: Callable[[], Callable[[], Awaitable[Any]] | None] | None = None,
    check: Callable[[Any], None] | None = None,
) -> None:
    """Open the client, time `operation` for the rounds asked, close it; a failure is recorded, then raised.
    With `plain`, asked once the client is open for the call a user would write with the driver alone
    (lab.workloads.plain; None: there is none), one such call is timed beside each round, outside pytest-benchmark's
    timing, into `into.bare`: before the round in even rounds, after it in odd ones (interleaved, so a drift in the
    machine's speed hits both alike, and alternated, so neither side is always the first call after the collector
    ran: always going first had cost the plain call up to 10% in some drivers). The lab's own overhead is read from
    each round against its plain call. The first `warmup` plain calls are dropped like the measured warm-up rounds.
    With `check`, what `operation` returned is checked once the row's timer has stopped (the lab's own work, not the
    configuration's; pytest-benchmark's own figures include it)."""
    loop = asyncio.new_event_loop()

    async def once() -> None:
        # timed inside the loop: entering and leaving the event loop for each round (tens of microseconds) is the
        # harness's cost, not the call's; pytest-benchmark's own figures include it, the row's samples do not
        t0 = time.perf_counter()
        got = await operation()
        into.samples.append(time.perf_counter() - t0)
        if check is not None:
            check(got)

    def timed() -> None:
        loop.run_until_complete(once())

    try:
        loop.run_until_complete(client.open())
        bare = plain() if plain is not None else None
        gc.collect()
        gc.freeze()
        try:

            def plain_call() -> None:
                assert bare is not None
                loop.run_until_complete(_plain_loop(bare, 1, into.bare))

            def setup() -> None:
                _settle()
                if bare is not None and len(into.samples) % 2 == 0:  # an even round's plain call, before it
                    plain_call()

            def teardown() -> None:
                if bare is not None and len(into.bare) < len(into.samples):  # an odd round's, after it
                    plain_call()

            benchmark.pedantic(
                timed, setup=setup, teardown=teardown, rounds=into.rounds, warmup_rounds=into.warmup, iterations=1
            )
            if bare is not None:
                deadline = time.monotonic() + into.budget_s
                while not into.precise() and time.monotonic() < deadline:
                    for _ in range(CHECK_EVERY):  # the interval (two sorts of every ratio) looked at between batches
                        setup()
                        timed()
                        teardown()
        finally:
            gc.unfreeze()

    except Exception as exc:
        into.outcome = classify(exc)
        raise
    finally:
        try:
            loop.run_until_complete(client.close())
        finally:
            loop.close()
