"""Comparing two runs cell by cell: what changed in outcome, in both directions.

A driver or pooler upgrade is checked by running the lab and diffing against a
baseline: a cell that starts passing is reported as loudly as one that starts
failing. Cells are matched by (experiment, cell id); an outcome is compared by
kind, SQLSTATE, error class and phase (unless the expectation allows several
phases), never by message text (it carries per-run
names and ports) or latency (benchmarks are for reading, not gating).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from lab.errors import ConfigError
from lab.results.outcome import Outcome
from lab.results.rows import Row, read_rows

Key = tuple[str, str]


def signature(outcome: Outcome) -> tuple[str, str | None, str | None, str | None]:
    return (outcome.kind, outcome.sqlstate, outcome.error_class, outcome.phase)


def describe(outcome: Outcome) -> str:
    if outcome.kind != "error":
        return outcome.kind
    return f"error {outcome.sqlstate or outcome.error_class} at {outcome.phase}"


def _held_signature(before: Row, after: Row, row: Row) -> tuple[str, str | None, str | None, str | None]:
    """The signature, without what the expectation leaves open: the phase where it allows several (asyncpg: first or
    later query), and the SQLSTATE and error class of a failure whose rule names no SQLSTATE and no class, or allows
    several SQLSTATEs (psycopg's 26000 or 42P05, whichever error one of its workers meets first)."""
    kind, sqlstate, error_class, phase = signature(row.outcome)
    rules = [r.expected or {} for r in (before, after)]
    if any(isinstance(e.get("phase"), list) for e in rules):
        phase = None
    if kind == "error" and (
        any(isinstance(e.get("sqlstate"), list) for e in rules)
        or all(e.get("outcome") == "error" and not e.get("sqlstate") and not e.get("error_class") for e in rules)
    ):
        sqlstate = error_class = None
    return (kind, sqlstate, error_class, phase)


@dataclass(frozen=True)
class Change:
    key: Key
    before: Row
    after: Row

    @property
    def direction(self) -> str:
        b, a = self.before.outcome.kind, self.after.outcome.kind
        if b != "ok" and a == "ok":
            return "now passes"
        if b == "ok" and a != "ok":
            return "now fails"
        return "fails differently"

    def versions_changed(self) -> list[str]:
        out = []
        bp, ap = self.before.client.get("packages", {}), self.after.client.get("packages", {})
        for dist in sorted(set(bp) | set(ap)):
            if bp.get(dist) != ap.get(dist):
                out.append(f"{dist} {bp.get(dist)} → {ap.get(dist)}")
        for fact in ("pooler_version", "server_version", "rest_server"):
            if self.before.topology.get(fact) != self.after.topology.get(fact):
                out.append(f"{fact} {self.before.topology.get(fact)} → {self.after.topology.get(fact)}")
        return out


@dataclass
class Diff:
    changes: list[Change]
    only_before: list[Key]
    only_after: list[Key]
    compared: int
    narrowed: bool = (
        False  # the current run was narrowed on purpose (its rows say so): cells it did not run are not lost
    )

    @property
    def lost(self) -> list[Key]:
        """Baseline cells the current run should have had and has not (a killed or partial run)."""
        return [] if self.narrowed else self.only_before

    @property
    def failed(self) -> bool:
        return bool(self.changes or self.lost)


def _index(rows: Iterable[Row]) -> dict[Key, Row]:
    return {(r.experiment, r.cell): r for r in rows}  # a later row of the same cell wins


def diff_rows(before: Iterable[Row], after: Iterable[Row]) -> Diff:
    b, a = _index(before), _index(after)
    common = sorted(set(b) & set(a))
    # a cell the expectation table records without holding ("any") has no stable outcome to compare
    held = [k for k in common if not any((r.expected or {}).get("outcome") == "any" for r in (b[k], a[k]))]
    changes = [
        Change(k, b[k], a[k]) for k in held if _held_signature(b[k], a[k], b[k]) != _held_signature(b[k], a[k], a[k])
    ]
    # narrowed on purpose: a selection beyond what every run leaves out (not_run: a sampled topology's other clients)
    narrowed = any(set(r.selection or {}) - {"not_run"} for r in a.values())
    return Diff(changes, sorted(set(b) - set(a)), sorted(set(a) - set(b)), len(held), narrowed)


def read_result_file(path: Path) -> list[Row]:
    """Every row of a result file, or a one-line ConfigError saying why it cannot be compared."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such result file")
    try:
        rows = list(read_rows(path))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read it ({exc})") from None
    except ValueError as exc:  # bad JSON, a row of another schema, a row lacking fields (the message names the line)
        raise ConfigError(f"{str(exc).splitlines()[0]}; not a result file this lab can compare") from None
    if not rows:
        raise ConfigError(f"{path}: holds no result rows (a run killed before its first cell?)")
    return rows


def diff_files(before: Path, after: Path) -> Diff:
    return diff_rows(read_result_file(before), read_result_file(after))


def render(d: Diff) -> list[str]:
    lines = [
        f"{d.compared} cells compared, {len(d.changes)} changed"
        + (f", {len(d.lost)} missing from the current run" if d.lost else "")
    ]
    for c in d.changes:
        versions = "; ".join(c.versions_changed()) or "no version changed"
        lines.append(
            f"  {c.direction:17} {c.key[0]}/{c.key[1]}: {describe(c.before.outcome)} → {describe(c.after.outcome)} ({versions})"
        )
    if d.only_before:
        why = "not chosen: the run was narrowed" if d.narrowed else "MISSING: counted as changed"
        lines.append(
            f"  {len(d.only_before)} cells only in the baseline ({why}): "
            + ", ".join(f"{e}/{c}" for e, c in d.only_before[:10])
        )
    if d.only_after:
        lines.append(
            f"  {len(d.only_after)} cells only in the current run: "
            + ", ".join(f"{e}/{c}" for e, c in d.only_after[:10])
        )
    return lines


def as_json(d: Diff) -> dict[str, object]:
    """The diff for CI: every changed cell with both outcomes and what changed in versions, the cells only on one
    side, and whether the diff fails (a changed cell, or a cell lost from an un-narrowed run)."""

    def cell(key: Key) -> dict[str, str]:
        return {"experiment": key[0], "cell": key[1]}

    return {
        "compared": d.compared,
        "failed": d.failed,
        "narrowed": d.narrowed,
        "changes": [
            {
                **cell(c.key),
                "direction": c.direction,
                "before": c.before.outcome.to_dict(),
                "after": c.after.outcome.to_dict(),
                "versions_changed": c.versions_changed(),
            }
            for c in d.changes
        ],
        "lost": [cell(k) for k in d.lost],
        "only_before": [cell(k) for k in d.only_before],
        "only_after": [cell(k) for k in d.only_after],
    }
