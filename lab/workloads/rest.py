"""The REST workload: the RCA's attempt 3, several callers at once as a bot's handlers would be.

It runs in the same cell loop as the drivers' workloads (lab.clients.python.execute):
every call must report success, answer 201 (where the client exposes a status) and
return the inserted row; anything else is a wrong result at the call that saw it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lab.clients.python.execute import OpFn, run_cell, run_sync
from lab.clients.rest import RestClient
from lab.results.outcome import CellResult, WrongResult

WORKERS, CALLS = 3, 5
DESCRIPTION = f"the RCA's save_to_supabase_rest, {WORKERS} callers x {CALLS} inserts"


@dataclass
class LastReply:
    """What the last call received, for the row."""

    status: int | None = None
    body: Any = None


def _call(worker: int, i: int, last: LastReply) -> OpFn:
    async def call(client: RestClient) -> None:
        payload = f"rest-{client.name}-w{worker}-{i}"
        reply = await client.insert({"payload": payload})
        last.status, last.body = reply.status, reply.body
        body = reply.body
        if not reply.ok or reply.status not in (201, None):
            raise WrongResult(f"status {reply.status}, body {str(body)[:200]}")
        if not (
            isinstance(body, list)
            and len(body) == 1
            and body[0].get("payload") == payload
            and isinstance(body[0].get("id"), int)
        ):
            raise WrongResult(f"status {reply.status} but the body is not the inserted row: {str(body)[:200]}")

    return call


def rca_attempt_3(make_client: Any, last: LastReply, timeout: float) -> CellResult:
    """WORKERS callers x CALLS inserts through one client, once."""
    workers = [[_call(w, i, last) for i in range(CALLS)] for w in range(WORKERS)]
    return run_sync(run_cell(make_client, workers, 1, timeout))
