"""Recording a cell's row and holding its outcome to the expectation table: the one way every experiment ends.

The recorder is made for one cell (the pytest plugin takes the cell from the test's
own parameters), so a test passes only what it observed: the outcome, its
experiment's measures, latencies, and facts where they differ from the endpoint's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from lab.errors import ServerDied
from lab.results.expectations import Expectation, lookup
from lab.results.measures import Measures
from lab.results.outcome import Outcome
from lab.results.rows import Row, latency_stats
from lab.topology.model import EndpointFacts


class Subject(Protocol):
    """Who acts in a cell, as a row names it."""

    @property
    def name(self) -> str: ...
    @property
    def description(self) -> str: ...
    def versions(self) -> dict[str, str]: ...


class CellRef(Protocol):
    """What a row needs of a cell (lab.plan.Cell): its id and the names it is held to the rules by."""

    @property
    def id(self) -> str: ...
    @property
    def experiment(self) -> str: ...
    @property
    def client(self) -> Subject: ...
    @property
    def topology(self) -> str: ...
    @property
    def scenario(self) -> str: ...
    @property
    def judged(self) -> bool: ...


class Unexpected(AssertionError):
    """The observed outcome differs from the expectation (or no expectation covers the cell)."""


@dataclass(frozen=True)
class Recorder:
    cell: CellRef
    run_id: str
    expectations: list[Expectation]
    write: Callable[[Row], Any]
    facts: EndpointFacts  # the cell's endpoint's facts, unless the test passes others
    selection: dict[str, list[str]] | None = None  # what the run was narrowed to
    #: the topology's health: a message naming a server that died, or None. Checked before a row is written,
    #: so an outcome caused by a dead server is never recorded as the client's.
    health: Callable[[], str | None] = lambda: None

    def rule(self, facts: EndpointFacts, versions: dict[str, str], scenario: str | None = None) -> Expectation:
        """The expectation that covers this cell (or its client and topology in another scenario);
        LookupError names the cell when none does."""
        c = self.cell
        return lookup(self.expectations, c.client.name, c.topology, scenario or c.scenario, facts.to_row(), versions)

    def __call__(
        self,
        outcome: Outcome,
        measures: Measures | None,
        latencies_s: list[float] | None = None,
        facts: EndpointFacts | None = None,
        versions: dict[str, str] | None = None,
    ) -> Row:
        """Write the row first (a failing cell is a result too), then raise Unexpected on a mismatch."""
        c = self.cell
        dead = self.health()
        if dead:
            raise ServerDied(f"{dead}; cell {c.id} and the cells after it were not measured")
        facts = self.facts if facts is None else facts
        # what the runner reported it ran (a runner in another process knows its own packages, its libpq), else
        # what the configuration's installation says
        versions = {**c.client.versions(), **(versions or {})}
        rule: Expectation | None = None
        missing = None
        judged = c.judged and facts.pooler != "other"  # a pooler the lab knows nothing of: recorded, not judged
        if judged:
            try:
                rule = self.rule(facts, versions)
            except LookupError as exc:
                missing = str(exc)
        row = Row(
            run_id=self.run_id,
            experiment=c.experiment,
            cell=c.id,
            client={
                "name": c.client.name,
                "packages": versions,
                "description": c.client.description,
                **(c.client.relations() if hasattr(c.client, "relations") else {}),
            },
            topology={"name": c.topology, **facts.to_row()},
            scenario=c.scenario,
            outcome=outcome,
            expected=rule.to_dict() if rule is not None else None,
            # judged with no rule to hold it to is unexpected too: a cell no rule covers is an error, not a pass
            matches=(not rule.mismatches(outcome)) if rule is not None else (False if judged else None),
            latency_ms=latency_stats(latencies_s or []),
            measures=measures,
            selection=self.selection,
        )
        self.write(row)
        if not judged:
            return row
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

    def why_not_measured(
        self,
        facts: EndpointFacts | None = None,
        subject: Any = None,
        scenario: str = "insert-returning",
        what: str = "latency",
    ) -> str | None:
        """Benchmarks time a workload only where the table expects it to work: timing a configuration that fails
        through a topology would time a lucky single connection. `subject`: the configuration asked about (the
        cell's own by default). The reason to skip, or None."""
        c = self.cell
        subject = c.client if subject is None else subject
        facts = self.facts if facts is None else facts
        rule = lookup(self.expectations, subject.name, c.topology, scenario, facts.to_row(), subject.versions())
        if rule.outcome == "ok":
            return None
        return f"{subject.name} through {c.topology} is expected to fail ({rule.describe()}); no {what} measured"
