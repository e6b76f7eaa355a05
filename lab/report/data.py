"""Loading the rows a report is built from."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from lab.results.rows import Row, read_rows


@dataclass
class Rows:
    rows: list[Row]
    sources: list[Path]

    def of(self, experiment: str) -> list[Row]:
        return [r for r in self.rows if r.experiment == experiment]


def load_rows(paths: Iterable[Path]) -> Rows:
    """Rows of the given files; where a cell appears twice, the later row wins (a re-run replaces a cell)."""
    latest: dict[tuple[str, str], Row] = {}
    sources = []
    for path in paths:
        sources.append(path)
        for row in read_rows(path):
            latest[(row.experiment, row.cell)] = row
    return Rows(list(latest.values()), sources)


def versions_of(rows: Iterable[Row]) -> list[str]:
    """The distinct component versions behind some rows, for a section's footnote."""
    seen: dict[str, None] = {}
    for r in rows:
        for dist, v in r.client.get("packages", {}).items():
            seen[f"{dist} {v}"] = None
        t = r.topology
        if t.get("pooler"):
            seen[f"{t['pooler']} {t.get('pooler_version')}"] = None
        if t.get("server_version"):
            seen[f"PostgreSQL {t['server_version']}"] = None
        if t.get("gateway"):
            seen[str(t["gateway"])] = None
        if t.get("rest_server"):
            seen[str(t["rest_server"]) + (" — stand-in for PostgREST" if t.get("stand_in") else "")] = None
    return list(seen)
