"""Ctrl-C and SIGTERM end a command the same way, once: the first one raises KeyboardInterrupt, which unwinds into
the code that stops what the lab started; any further one while that runs is ignored (and said so once), so a
second Ctrl-C cannot cut the teardown short and leave servers, containers or a run directory behind. SIGKILL is
still there for whoever must stop at once; the next run cleans up after it."""

from __future__ import annotations

import signal
import sys
from types import FrameType

_interrupted = False


def _handler(signum: int, frame: FrameType | None) -> None:
    global _interrupted
    if _interrupted:
        return
    _interrupted = True
    print("pooler-lab: interrupted; stopping everything the lab started (further Ctrl-C is ignored)", file=sys.stderr)
    raise KeyboardInterrupt(f"signal {signum}")


def install() -> None:
    """SIGINT and SIGTERM raise KeyboardInterrupt once (the main thread only may install handlers)."""
    signal.signal(signal.SIGINT, _handler)
    signal.signal(signal.SIGTERM, _handler)


def raise_if_swallowed() -> None:
    """Raise KeyboardInterrupt again where the first one was swallowed: a signal that lands in a finalizer (`__del__`,
    a weakref callback) or a library's catch-all is reported as "Exception ignored" and lost, and since further
    signals are ignored, the run would go on to its end. Called between cells, so the run stops at the next one."""
    if _interrupted:
        raise KeyboardInterrupt("interrupted earlier; the first KeyboardInterrupt was swallowed")
