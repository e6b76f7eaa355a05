"""The REST workload: the RCA's attempt 3, several callers at once as a bot's handlers would be.

It runs in the same cell harness as the drivers' workloads (lab.workloads.harness):
every call must report success, answer 201 (where the client exposes a status) and
return the inserted row; anything else is a wrong result at the call that saw it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lab.clients.rest import RestClient
from lab.results.outcome import WrongResult
from lab.workloads.scenarios import Scenario

WORKERS, CALLS = 3, 5


@dataclass
class LastReply:
    """What the last call received, for the row."""

    status: int | None = None
    body: Any = None


def rca_attempt_3(last: LastReply) -> Scenario:
    async def call(client: RestClient, worker: int, i: int) -> None:
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

    return Scenario(
        "rca-attempt-3",
        f"the RCA's save_to_supabase_rest, {WORKERS} callers x {CALLS} inserts",
        call,  # type: ignore[arg-type]
        workers=WORKERS,
        ops_per_worker=CALLS,
    )
