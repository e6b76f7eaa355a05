"""A client configuration as data: what a row names as its client, and the relations the report reads.

Every configuration, in any language, is one `Configuration`: its name and description,
the packages whose versions its rows carry, which runtime runs it (the lab's own Python
process, or a runner folder of lab/clients/ speaking the contract), which group of the
matrix it belongs to, and its relations: which configurations it fixes, the setting it
changes (as a user would write it), and the documentation behind it. The report, the claims
and the published site read these relations from the rows, so there is no second table of
fixes anywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

#: the groups: drivers run in every experiment that compares drivers; variants (fixes, other settings) and attempts in
#: the matrix (and the application processes); probes are the lab's own instruments (the session-state probe, a burst)
GROUPS = ("driver", "variant", "attempt", "probe")
IN_PROCESS = "in-process"


def package_versions(dists: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for dist in dists:
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "not installed"
    return out


@dataclass(frozen=True)
class Configuration:
    name: str
    description: str
    packages: tuple[str, ...] = ()
    language: str = "python"
    #: "in-process" (the lab's own Python process) or the name of a runner folder of lab/clients/
    runtime: str = IN_PROCESS
    group: str = "driver"
    #: the matrix workloads it runs; None: every one (the RCA's attempts are pool constructions with one workload)
    workloads: tuple[str, ...] | None = None
    #: configurations it fixes through a transaction pooler, each with what else to change there ("" for nothing)
    fixes: Mapping[str, str] = field(default_factory=dict)
    change: str | None = None  # the setting it changes, as a user writes it: "statement_cache_size=0"
    snippet: str | None = None  # the change as code
    docs: tuple[str, ...] = ()
    #: the driver's own batch API as its users call it ("executemany in pipeline mode"); None: it has none
    batch: str | None = None
    #: the named operations (the contract's `call`) its runner implements: a framework's own API, e.g. "iterator"
    #: (Django's QuerySet.iterator()); the scenarios made of one run only for configurations that have it
    calls: tuple[str, ...] = ()
    #: it needs something only the lab's own topology has (a role), so it never runs on a target
    local_only: bool = False
    #: a role of its own it logs in as: its poolers' server connections are the cell's to end afterwards
    login_role: str | None = None
    #: how to read the versions of `packages` (in-process: this interpreter's; a runner: its own install)
    version_reader: Callable[[tuple[str, ...]], dict[str, str]] = field(default=package_versions, compare=False)

    def versions(self) -> dict[str, str]:
        return self.version_reader(self.packages)

    def relations(self) -> dict[str, Any]:
        """What a row's client object carries beside name, packages and description."""
        out: dict[str, Any] = {"language": self.language, "runtime": self.runtime, "group": self.group}
        if self.fixes:
            out["fixes"] = dict(self.fixes)
        for key in ("change", "snippet", "batch"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        if self.docs:
            out["docs"] = list(self.docs)
        return out
