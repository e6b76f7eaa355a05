"""Which configuration fixes which, as the rows say: each row's client carries its configuration's relations
(lab.clients.configuration: what it fixes, the setting it changes, the code, the documentation). The on-call list,
the claims and the published site read them here, so the relation is written once, on the configuration."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from lab.report.text import code, text
from lab.results.rows import Row


@dataclass(frozen=True)
class Fix:
    fixed: str  # the configuration it fixes
    by: str  # the configuration that fixes it
    setting: str  # the setting it changes, as a user writes it
    extra: str  # what else to change for this one ("" for nothing)
    snippet: str | None
    docs: tuple[str, ...]

    def markdown(self) -> str:
        """The change, escaped: rows (and so these texts) may come from anywhere."""
        return code(self.setting) + (f" {text(self.extra)}" if self.extra else "")


def fixes(rows: Iterable[Row]) -> dict[str, list[Fix]]:
    """failing configuration -> the configurations that declare they fix it, in the order the rows name them."""
    out: dict[str, dict[str, Fix]] = {}
    for r in rows:
        c = r.client
        for fixed, extra in (c.get("fixes") or {}).items():
            out.setdefault(fixed, {}).setdefault(
                c["name"],
                Fix(
                    str(fixed),
                    str(c["name"]),
                    str(c.get("change") or c["name"]),
                    str(extra or ""),
                    c.get("snippet"),
                    tuple(str(d) for d in c.get("docs") or ()),
                ),
            )
    return {fixed: list(by.values()) for fixed, by in out.items()}
