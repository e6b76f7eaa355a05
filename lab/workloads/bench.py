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
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from lab.results.outcome import OK, Outcome, classify


@dataclass
class Measurement:
    rounds: int
    warmup: int
    outcome: Outcome = OK
    samples: list[float] = field(default_factory=list)  # seconds, warm-up rounds included

    @property
    def timed(self) -> list[float]:
        return self.samples[self.warmup :]


def label(benchmark: Any, cell: Any, run_id: str, group: str, **extra: Any) -> None:
    """Tie a pytest-benchmark entry to its row: a named group, the run id, the experiment, the cell and the
    client's package versions, so --benchmark-compare between two runs lines up and a JSON entry finds its row."""
    benchmark.group = group
    benchmark.extra_info.update(run_id=run_id, experiment=cell.experiment, cell=cell.id, client=cell.client.name,
                                packages=cell.client.versions(), topology=cell.topology, **extra)


def _settle() -> None:
    gc.collect()


def measure(benchmark: Any, client: Any, operation: Callable[[], Awaitable[Any]], into: Measurement) -> None:
    """Open the client, time `operation` for the rounds asked, close it; a failure is recorded, then raised."""
    loop = asyncio.new_event_loop()

    def timed() -> None:
        t0 = time.perf_counter()
        loop.run_until_complete(operation())
        into.samples.append(time.perf_counter() - t0)

    try:
        loop.run_until_complete(client.open())
        gc.collect()
        gc.freeze()
        try:
            benchmark.pedantic(timed, setup=_settle, rounds=into.rounds, warmup_rounds=into.warmup, iterations=1)
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
