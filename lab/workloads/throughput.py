"""The price of each fix: how many queries per second a client configuration gets, and at what latency, at a
given client concurrency, beside `pgbench -S` on the same topology as the ceiling.

Every configuration runs the query pgbench -S runs (`SELECT abalance FROM pgbench_accounts WHERE aid = $1`),
`concurrency` workers over a pool of min(concurrency, MAX_CONNECTIONS) connections (the session pooler pins one
server connection per client connection and has 5), for a fixed time after a short warm-up. Confidence
intervals: throughput from the operations completed in each of SLICES equal parts of the window (Student's t,
95%); latency percentiles from the order statistics around them (95%, normal approximation of the binomial).
"""

from __future__ import annotations

import asyncio
import functools
import math
import os
import re
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from lab.clients.python.base import Client
from lab.workloads.price import Ratio, ratio_of, t95

QUERY = "SELECT abalance FROM pgbench_accounts WHERE aid = :aid"
ACCOUNTS = 100_000  # pgbench -i -s 1
CONCURRENCY = (1, 8, 32)
MAX_CONNECTIONS = 4
WARMUP_S = 0.1
DURATION_S = 0.5
SLICES = 5
PGBENCH_SECONDS = 1  # pgbench -T takes whole seconds


#: how long after the window a worker may still wait for its answer before the cell is `timeout` (a session pooler
#: with fewer server connections than the client's pool holds the rest until PgBouncer's query_wait_timeout)
GRACE_S = 2.0


class Stuck(TimeoutError):
    """Workers still waiting for an answer after the measuring window."""


@dataclass(frozen=True)
class Throughput:
    ops: int
    ops_per_s: float
    ops_per_s_ci: tuple[float, float]
    p50_ms: float
    p50_ci_ms: tuple[float, float]
    p99_ms: float
    p99_ci_ms: tuple[float, float]


def connections(concurrency: int) -> int:
    return min(concurrency, MAX_CONNECTIONS)


def summarize(done: list[tuple[float, float]], start: float, duration: float) -> Throughput:
    """`done`: (completion time, latency in s) of each operation inside the window [start, start + duration)."""
    width = duration / SLICES
    counts = [0] * SLICES
    for t, _ in done:
        counts[min(SLICES - 1, int((t - start) / width))] += 1
    rates = [c / width for c in counts]
    mean = statistics.fmean(rates)
    half = t95(SLICES - 1) * statistics.stdev(rates) / math.sqrt(SLICES) if SLICES > 1 else 0.0
    lat = sorted(dt * 1000 for _, dt in done)
    return Throughput(
        len(done),
        round(mean, 1),
        (round(mean - half, 1), round(mean + half, 1)),
        *_quantile(lat, 0.5),
        *_quantile(lat, 0.99),
    )


def _quantile(ms: list[float], q: float) -> tuple[float, tuple[float, float]]:
    n = len(ms)
    if not n:
        return float("nan"), (float("nan"), float("nan"))
    half = 1.96 * math.sqrt(n * q * (1 - q))
    at = lambda r: ms[max(0, min(n - 1, round(r)))]  # noqa: E731
    return round(at(n * q), 3), (round(at(n * q - half), 3), round(at(n * q + half), 3))


async def run(client: Client, concurrency: int, duration: float = DURATION_S, warmup_s: float = WARMUP_S) -> Throughput:
    """`concurrency` workers asking QUERY as fast as they can through one client, opened here and closed after."""
    await client.open()
    try:
        return await window(client, concurrency, duration, warmup_s)
    finally:
        await asyncio.wait_for(client.close(), timeout=10)


async def window(client: Client, concurrency: int, duration: float, warmup_s: float = 0.0) -> Throughput:
    """`concurrency` workers asking QUERY as fast as they can through an open client: what completed in the window
    after `warmup_s`."""
    done: list[tuple[float, float]] = []
    begin = time.perf_counter()
    start, stop = begin + warmup_s, begin + warmup_s + duration

    async def worker(w: int) -> None:
        i = 0
        while (now := time.perf_counter()) < stop:
            aid = (w * 7919 + i * 104_729) % ACCOUNTS + 1  # spread over the table, the same on every run
            await client.fetch(QUERY, {"aid": aid})
            end = time.perf_counter()
            if start <= end < stop:
                done.append((end, end - now))
            i += 1

    tasks = [asyncio.ensure_future(worker(w)) for w in range(concurrency)]
    finished, waiting = await asyncio.wait(tasks, timeout=warmup_s + duration + GRACE_S)
    for t in waiting:
        t.cancel()
    for t in finished:
        t.result()  # a worker's error is the cell's
    if waiting:
        raise Stuck(
            f"{len(waiting)} of {concurrency} workers still waiting {GRACE_S:g}s after the window "
            f"({len(done)} queries answered in it)"
        )
    return summarize(done, start, duration)


# -- a fix against the configuration it fixes, under concurrency -----------------------------------

#: one window of each client in a pair: short, so that many pairs fit the budget
RATIO_WINDOW_S = 0.1
#: untimed, before the first pair: each client's first queries (a driver's type lookups, its first prepare)
RATIO_WARMUP_S = 0.1
#: pairs before the interval is first looked at; the interval aimed for (as a latency price's); the time allowed
RATIO_MIN_PAIRS = 6
RATIO_WIDTH = 0.06
RATIO_BUDGET_S = 3.0


@dataclass(frozen=True)
class Versus:
    """The fix's time per query over the fixed configuration's, at one concurrency: windows of each alternately."""

    fixed: str
    ratio: Ratio
    stopped: str  # "width" | "budget"
    fix_ops_per_s: float  # medians of the windows, for the reader
    fixed_ops_per_s: float

    def as_row(self) -> dict[str, Any]:
        """As a cost row keeps it (CostMeasures.versus), with the settings it was measured under."""
        return {
            "fixed": self.fixed,
            "ratio": round(self.ratio.ratio, 4),
            "low": round(self.ratio.low, 4),
            "high": round(self.ratio.high, 4),
            "pairs": self.ratio.pairs,
            "measurable": self.ratio.measurable,
            "stopped": self.stopped,
            "target_width": RATIO_WIDTH,
            "budget_s": RATIO_BUDGET_S,
            "window_s": RATIO_WINDOW_S,
            "fix_ops_per_s": self.fix_ops_per_s,
            "fixed_ops_per_s": self.fixed_ops_per_s,
        }


async def against(
    fix: Client,
    fixed: Client,
    fixed_name: str,
    concurrency: int,
    budget_s: float = RATIO_BUDGET_S,
    width: float = RATIO_WIDTH,
) -> Versus:
    """Both clients open at once, `concurrency` workers through `fix` for one window, then through `fixed`, the order
    flipping each pair (A B, B A, ...), until the ratio's 95% interval is narrower than `width` or `budget_s` has
    passed. The ratio is of times per query (1 / queries per second), fix over fixed, as a latency price is: above
    1, the fix costs throughput. Both open means both pools' connections at once: where a session pooler holds too
    few server connections for both, the caller measures no ratio (lab.plan.PRICE_TOPOLOGIES, `fits`)."""
    fix_s: list[float] = []
    fixed_s: list[float] = []
    await fix.open()
    try:
        await fixed.open()
        try:
            for client in (fix, fixed):
                await window(client, concurrency, RATIO_WARMUP_S)
            deadline = time.monotonic() + budget_s
            while True:
                sides = ((fix, fix_s), (fixed, fixed_s))
                for client, into in sides if len(fix_s) % 2 == 0 else sides[::-1]:
                    got = await window(client, concurrency, RATIO_WINDOW_S)
                    into.append(1 / got.ops_per_s if got.ops_per_s > 0 else math.inf)
                if len(fix_s) >= RATIO_MIN_PAIRS:
                    found = ratio_of(fix_s, fixed_s)
                    stopped = "width" if found.width <= width else "budget" if time.monotonic() > deadline else ""
                    if stopped:
                        return Versus(
                            fixed_name,
                            found,
                            stopped,
                            round(1 / statistics.median(fix_s), 1),
                            round(1 / statistics.median(fixed_s), 1),
                        )
        finally:
            await asyncio.wait_for(fixed.close(), timeout=10)
    finally:
        await asyncio.wait_for(fix.close(), timeout=10)


def fits(server_connections: int | None, concurrency: int) -> bool:
    """Whether two clients' pools at `concurrency` can be open at once through a pooler holding `server_connections`
    per user (None: the server itself, whose connection limit the lab's run stays far below)."""
    return server_connections is None or 2 * connections(concurrency) <= server_connections


# -- pgbench -S, the ceiling ---------------------------------------------------------------------


def _libpq(dsn: str) -> tuple[list[str], dict[str, str]]:
    """pgbench's connection arguments and environment from a DSN; the password only in the environment."""
    url = urlsplit(dsn)
    args = [
        "-h",
        url.hostname or "127.0.0.1",
        "-p",
        str(url.port or 5432),
        "-U",
        unquote(url.username or ""),
        url.path.lstrip("/") or "postgres",
    ]
    env = {**os.environ, "PGPASSWORD": unquote(url.password or ""), "PGSSLMODE": "disable", "PGCONNECT_TIMEOUT": "5"}
    return args, env


def pgbench_init(dsn: str) -> None:
    """pgbench's tables at scale 1 (100,000 accounts), once per run, through the server itself."""
    args, env = _libpq(dsn)
    done = subprocess.run(
        ["pgbench", "-i", "-s", "1", "-q", "-I", "dtgvp", *args], env=env, capture_output=True, text=True, timeout=120
    )
    if done.returncode:
        raise RuntimeError(
            f"pgbench -i failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}"
        )


def pgbench(dsn: str, concurrency: int, seconds: int = PGBENCH_SECONDS) -> Throughput:
    """pgbench -S with min(concurrency, MAX_CONNECTIONS) clients, simple protocol (what a transaction pooler
    handles), per-transaction log read back for the percentiles and the slices."""
    args, env = _libpq(dsn)
    clients = connections(concurrency)
    with tempfile.TemporaryDirectory(prefix="pooler-lab-pgbench-") as tmp:
        prefix = str(Path(tmp) / "tx")
        done = subprocess.run(
            [
                "pgbench",
                "-S",
                "-n",
                "-M",
                "simple",
                "-c",
                str(clients),
                "-j",
                str(clients),
                "-T",
                str(seconds),
                "-l",
                "--log-prefix",
                prefix,
                *args,
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=60 + seconds,
        )
        if done.returncode:
            raise RuntimeError(f"pgbench -S failed: {(done.stderr.strip().splitlines() or [str(done.returncode)])[-1]}")
        rows: list[tuple[float, float]] = []
        for log in Path(tmp).glob("tx*"):
            for line in log.read_text().splitlines():
                # client_id transaction_no time script_no time_epoch time_us: latency in µs, end time in s + µs
                parts = line.split()
                if len(parts) >= 6 and re.fullmatch(r"\d+", parts[2]):
                    rows.append((int(parts[4]) + int(parts[5]) / 1e6, int(parts[2]) / 1e6))
    if not rows:
        raise RuntimeError("pgbench -S logged no transaction")
    start = min(t for t, _ in rows)
    return summarize(rows, start, max(t for t, _ in rows) - start or 1.0)


@functools.cache
def pgbench_version() -> str:
    out = subprocess.run(["pgbench", "--version"], capture_output=True, text=True, timeout=10).stdout
    m = re.search(r"(\d+\.\d+)", out)
    return m.group(1) if m else "unknown"
