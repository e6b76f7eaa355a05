"""Holding an observed outcome to the expectation table, after recording it: the one way every experiment ends."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lab.expectations import Expectation, lookup
from lab.outcome import Outcome
from lab.rows import Row, cell_row


class Unexpected(AssertionError):
    """The observed outcome differs from the expectation (or no expectation covers the cell)."""


def record_and_judge(
    expectations: list[Expectation],
    record: Callable[[Row], Any],
    *,
    run_id: str,
    experiment: str,
    cell_id: str,
    client: str,
    client_cls: Any,
    topology: str,
    facts: dict[str, Any],
    scenario: str,
    outcome: Outcome,
    latencies_s: list[float] | None = None,
    params: dict[str, Any] | None = None,
) -> Row:
    """Write the row first (a failing cell is a result too), then raise Unexpected on a mismatch."""
    try:
        rule: Expectation | None = lookup(expectations, client, topology, scenario, facts, client_cls.versions())
        missing = None
    except LookupError as exc:
        rule, missing = None, str(exc)
    row = cell_row(
        run_id=run_id, experiment=experiment, cell_id=cell_id, client=client, client_versions=client_cls.versions(),
        client_description=client_cls.description, topology=topology, facts=facts, scenario=scenario, outcome=outcome,
        expected=rule, latencies_s=latencies_s, params=params,
    )
    record(row)
    if rule is None:
        raise Unexpected(f"observed {outcome.summary()}; {missing}")
    diffs = rule.mismatches(outcome)
    if diffs:
        raise Unexpected(
            f"\n  observed: {outcome.summary()}"
            + (f"\n            cause: {outcome.detail}" if outcome.detail else "")
            + f"\n  expected: {rule.describe()}\n  differs:  {'; '.join(diffs)}"
        )
    return row


def why_not_measured(expectations: list[Expectation], client: str, client_cls: Any, topology: str, facts: dict[str, Any]) -> str | None:
    """Benchmarks time an insert only where the table expects it to work: timing a configuration
    that fails through a topology would time a lucky single connection. The reason to skip, or None."""
    rule = lookup(expectations, client, topology, "insert-returning", facts, client_cls.versions())
    if rule.outcome == "ok":
        return None
    return f"{client} through {topology} is expected to fail ({rule.describe()}); no latency measured"
