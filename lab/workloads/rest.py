"""Work through the REST tier: the RCA's attempt 3 as written, and the same insert through every REST client."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from lab.results.outcome import OK, Outcome, Phase, PhaseError, WrongResult, classify
from lab.clients.rest import RestClient

REST_SCENARIOS = ("rca-attempt-3",)
WORKERS, CALLS = 3, 5


@dataclass
class RestResult:
    outcome: Outcome
    latencies_s: list[float] = field(default_factory=list)
    last_status: int | None = None
    last_body: object = None


async def rca_attempt_3(client: RestClient, timeout: float) -> RestResult:
    """Several callers at once, as a bot's handlers would: every call must return True, 201 and the row."""
    result = RestResult(OK)
    try:
        async with asyncio.timeout(timeout):
            try:
                await client.open()
            except Exception as exc:
                raise PhaseError("connect", exc) from exc

            async def caller(w: int) -> None:
                for i in range(CALLS):
                    payload = f"rest-{client.name}-w{w}-{i}"
                    t0 = time.perf_counter()
                    phase: Phase = "first query" if i == 0 else "later query"
                    try:
                        reply = await client.insert({"payload": payload})
                    except Exception as exc:
                        raise PhaseError(phase, exc) from exc
                    result.latencies_s.append(time.perf_counter() - t0)
                    result.last_status, result.last_body = reply.status, reply.body
                    body = reply.body
                    if not reply.ok or reply.status not in (201, None):
                        raise PhaseError(phase, WrongResult(f"status {reply.status}, body {str(body)[:200]}"))
                    if not (isinstance(body, list) and len(body) == 1 and body[0].get("payload") == payload and isinstance(body[0].get("id"), int)):
                        raise PhaseError(phase, WrongResult(f"status {reply.status} but the body is not the inserted row: {str(body)[:200]}"))

            try:
                async with asyncio.TaskGroup() as tg:
                    for w in range(WORKERS):
                        tg.create_task(caller(w))
            except ExceptionGroup as group:
                raise group.exceptions[0] from None
    except TimeoutError:
        result.outcome = Outcome("timeout", detail=f"no outcome within {timeout:g}s")
    except Exception as exc:
        result.outcome = classify(exc)
    finally:
        try:
            await asyncio.wait_for(client.close(), 5)
        except Exception:  # noqa: BLE001 - closing must not mask the outcome
            pass
    return result
