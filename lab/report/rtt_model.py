"""The round-trip model: how many network round trips one insert costs on each path.

A request over a network costs (round trips) x RTT plus what the endpoints spend
computing, which the lab measures at RTT 0. The model counts round trips from the
protocols, not from the measurements, so the two can be held against each other:

    predicted(path, rtt) = measured(path, rtt=0) + round_trips(path) x rtt
    REST overhead(rtt)   = REST(rtt) - direct(rtt)

Counted per insert, on a client that is already warm (pool open, keep-alive
connection established), except where the client itself opens a connection per call.
"""

from __future__ import annotations

from dataclasses import dataclass

# The "direct" the REST overhead is measured against: the RCA's driver, pooled, straight to the server.
DIRECT_REFERENCE = ("asyncpg-default", "direct")


@dataclass(frozen=True)
class Trips:
    parts: tuple[tuple[str, int], ...]  # (what, round trips)

    @property
    def total(self) -> int:
        return sum(n for _, n in self.parts)

    def explain(self) -> str:
        return " + ".join(f"{what} {n}" for what, n in self.parts if n)


def tls_handshake_trips(version: str | None) -> int:
    """TLS 1.3 completes its full handshake in one round trip, TLS 1.2 in two (RFC 8446 §2, RFC 5246 §7.3)."""
    return 1 if version == "TLSv1.3" else 2


# Round trips of one insert on a warm pooled PostgreSQL connection, by client configuration.
# Each is what the client's protocol exchange requires; `None` where the lab has not counted it.
PG_TRIPS: dict[str, Trips | None] = {
    # Bind/Execute/Sync of the cached prepared statement, then the pool's reset on release
    # (Connection.reset(): a simple query of pg_advisory_unlock_all/CLOSE ALL/UNLISTEN/RESET ALL)
    "asyncpg-default": Trips((("query (cached statement)", 1), ("pool reset on release", 1))),
    # statement_cache_size=0: Parse/Describe/Sync to learn the types, then Bind/Execute/Sync, then the reset
    "asyncpg-no-cache": Trips((("prepare", 1), ("execute", 1), ("pool reset on release", 1))),
}


def rest_trips(client: str, tls: bool, tls_version: str | None) -> Trips:
    if client == "httpx-per-call":
        # a new AsyncClient per call: a new TCP connection (and TLS session) every time
        return Trips(
            (
                ("TCP handshake", 1),
                ("TLS handshake", tls_handshake_trips(tls_version) if tls else 0),
                ("HTTP request", 1),
            )
        )
    # one long-lived client: the connection (and its TLS session) is reused across calls
    return Trips((("HTTP request on a kept-alive connection", 1),))


def trips(kind: str, client: str, tls: bool, tls_version: str | None) -> Trips | None:
    return rest_trips(client, tls, tls_version) if kind == "rest" else PG_TRIPS.get(client)
