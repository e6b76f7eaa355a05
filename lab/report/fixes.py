"""Which configuration fixes which, as the rows say: each row's client carries its configuration's relations
(lab.clients.configuration: what it fixes, the setting it changes, the code, the documentation). The on-call list,
the claims and the published site read them here, so the relation is written once, on the configuration."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from lab.results.rows import Row


@dataclass(frozen=True)
class Fix:
    fixed: str  # the configuration it fixes
    by: str  # the configuration that fixes it
    change: str  # the setting, as a user writes it, with what else to change for this one
    snippet: str | None
    docs: tuple[str, ...]


def fixes(rows: Iterable[Row]) -> dict[str, list[Fix]]:
    """failing configuration -> the configurations that declare they fix it, in the order the rows name them."""
    out: dict[str, dict[str, Fix]] = {}
    for r in rows:
        c = r.client
        for fixed, extra in (c.get("fixes") or {}).items():
            change = " ".join(p for p in (f"`{c['change']}`" if c.get("change") else "", extra) if p)
            out.setdefault(fixed, {}).setdefault(
                c["name"], Fix(fixed, c["name"], change or c["name"], c.get("snippet"), tuple(c.get("docs") or ()))
            )
    return {fixed: list(by.values()) for fixed, by in out.items()}
