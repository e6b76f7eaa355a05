"""The lab's own connections to a server (housekeeping, probes, a target's check) with a bound on every wait.

libpq bounds the connection's start with connect_timeout, but nothing bounds a statement once
connected: a server that authenticates and then stays silent (a stopped postmaster's backend,
a hostile target) would hold the lab forever. `bounded` puts a deadline on a whole block: when
it passes, the connection's socket is shut down from a timer thread, libpq sees the connection
end, and the block raises `NoAnswer` naming what waited. The server itself is never waited for.
"""

from __future__ import annotations

import math
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from lab.errors import EnvironmentProblem


class NoAnswer(EnvironmentProblem):
    """A server connected (or did not) and then answered nothing within the lab's bound."""


def _shut(conn: psycopg.Connection) -> None:
    try:
        fd = conn.pgconn.socket
        dup = socket.socket(fileno=os.dup(fd))
    except (OSError, psycopg.Error):
        return
    try:
        dup.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        dup.close()


@contextmanager
def answered_within(conn: psycopg.Connection, seconds: float, what: str) -> Iterator[psycopg.Connection]:
    """The block's statements on `conn` end within `seconds`, or NoAnswer."""
    done = threading.Event()
    fired = threading.Event()

    def fire() -> None:
        if not done.is_set():
            fired.set()
            _shut(conn)

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    try:
        yield conn
    except psycopg.Error:
        if fired.is_set():
            raise NoAnswer(f"{what}: no answer within {seconds:g}s") from None
        raise
    finally:
        done.set()
        timer.cancel()


@contextmanager
def bounded(dsn: str, seconds: float, what: str, **kwargs: Any) -> Iterator[psycopg.Connection]:
    """A connection whose start and every statement in the block end within `seconds` (connect_timeout bounds the
    start, a timer the rest), or NoAnswer naming `what`."""
    try:
        conn = psycopg.connect(dsn, connect_timeout=max(2, math.ceil(seconds)), **kwargs)
    except psycopg.OperationalError as exc:
        if "timeout expired" in str(exc):
            raise NoAnswer(f"{what}: no answer within {seconds:g}s (connecting)") from None
        raise
    with conn, answered_within(conn, seconds, what):
        yield conn
