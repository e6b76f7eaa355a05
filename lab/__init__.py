"""pooler-lab: reproduce Python PostgreSQL client / connection pooler incompatibilities.

The flow, one package per part:

    compose/ (the topology, described once)
      -> lab.topology   read it, render its configs, start it (native processes or Docker)
      -> lab.proxies    what the lab puts on the wire: tracer, tenant router, delay
      -> lab.clients    x lab.workloads   every client configuration runs every workload
      -> lab.results    one outcome, one row, held to the expectation table
      -> lab.report     the claims report, the matrix, the network model

`lab.plan` builds the cells of a run once; `lab.pytest_plugin` hands them to the
experiments in experiments/; `lab.cli` is the `pooler-lab` command (`python -m lab`).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("pooler-lab")
except PackageNotFoundError:  # run from a checkout that was never installed
    __version__ = "unknown"
