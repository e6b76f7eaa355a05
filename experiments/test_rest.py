"""The REST tier (claim C7): the RCA's attempt 3 exactly as written, and the same insert through
Supabase's own client and a shared httpx client, over http and https, held to the expectation table.

The REST server is whatever the topology runs: real PostgREST (Docker backend) or the
lab's stand-in (native backend); rows name it.
"""

from __future__ import annotations

import pytest

from lab.options import LabOptions
from lab.plan import Cell
from lab.pytest_plugin import LabRun
from lab.results.measures import RestMeasures
from lab.results.recorder import Recorder
from lab.topology.model import Endpoint
from lab.workloads.rest import CALLS, WORKERS, LastReply, rca_attempt_3


@pytest.mark.experiment("rest")
def test_rest(
    cell: Cell[bool], rest_trust: Endpoint, lab_run: LabRun, lab_options: LabOptions, record: Recorder
) -> None:
    tls = cell.case
    last = LastReply()
    result = rca_attempt_3(lambda: cell.client(rest_trust, tls, lab_run.rest_table), last, lab_options.cell_timeout)
    body = last.body if isinstance(last.body, (list, dict)) else str(last.body)[:200]
    record(
        result.outcome,
        RestMeasures(tls=tls, workers=WORKERS, calls_per_worker=CALLS, last_status=last.status, last_body=body),
        result.latencies_s,
        facts=rest_trust.facts.with_(tls=tls),
    )
