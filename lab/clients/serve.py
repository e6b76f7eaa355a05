"""The contract's runner for Python configurations in another process: `python -m lab.clients.serve RUNTIME`.

It reads cell specs (lab.clients.contract) as JSON lines on stdin and runs each with the
in-process runner, under the configuration name the runtime's manifest maps it to (its
`runs` key), so a runtime can run the lab's own Python configurations in another
environment: psycopg on the system's libpq (PSYCOPG_IMPL=python) is the same code as the
binary wheel's configuration, in a process of its own. It reports the versions it really ran,
the libpq linked in among them.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from typing import Any

from lab.clients.configuration import package_versions
from lab.clients.contract import CONTRACT, CellSpec
from lab.clients.python.execute import InProcessRunner
from lab.clients.registry import client_class
from lab.clients.runtimes import runtimes


def _send(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message, default=str) + "\n")
    sys.stdout.flush()


def linked_libpq() -> dict[str, str]:
    """The libpq psycopg runs on, and which implementation loaded it (python: the system's, through ctypes)."""
    if "psycopg" not in sys.modules:
        return {}
    from lab.clients.python.psycopg_client import with_libpq

    return with_libpq({})


def main(argv: list[str]) -> int:
    runtime = runtimes()[argv[0]]
    runner = InProcessRunner(client_class)
    _send({"type": "hello", "contract": CONTRACT, "runtime": f"python {sys.version.split()[0]}"})
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            spec = CellSpec.from_json(json.loads(line))
            configuration = next(c for c in runtime.configurations if c.name == spec.configuration)
        except (ValueError, KeyError, StopIteration) as exc:
            _send({"type": "fatal", "message": f"unreadable cell spec: {type(exc).__name__}: {exc}"})
            return 2
        runs = runtime.runs.get(spec.configuration, spec.configuration)
        result = runner.run(replace(spec, configuration=runs))
        outcomes = result.outcomes or [result.outcome]
        for index, outcome in enumerate(outcomes):  # each iteration's, the latencies with the last
            last = index == len(outcomes) - 1
            _send(
                {
                    "type": "iteration",
                    "index": index,
                    "outcome": outcome.to_dict(),
                    "latencies_s": result.latencies_s if last else [],
                }
            )
        versions = {**package_versions(configuration.packages), **linked_libpq()}  # what this process really ran
        _send({"type": "done", "versions": versions, "elapsed_s": result.elapsed_s})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
