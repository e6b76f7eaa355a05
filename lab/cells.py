"""The experiment matrix: which (client, topology, scenario) cells exist and their ids."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from lab.clients import CLIENTS
from lab.compose import load
from lab.names import pick_many
from lab.scenarios import SCENARIOS


@dataclass(frozen=True)
class Cell:
    client: str
    topology: str
    scenario: str

    @property
    def id(self) -> str:
        return f"{self.client}-{self.topology}-{self.scenario}"


def topology_names(profiles: tuple[str, ...] = ()) -> list[str]:
    """The PostgreSQL topologies, from compose/: they exist before anything is started."""
    return [s.topology for s in load(profiles=profiles).services.values() if s.role in ("server", "pooler")]


def matrix(
    clients: Iterable[str] | None = None,
    topologies: Iterable[str] | None = None,
    scenarios: Iterable[str] | None = None,
    profiles: tuple[str, ...] = (),
) -> list[Cell]:
    """Every cell, or the named subset; unknown names raise UnknownName listing the valid ones."""
    chosen_clients = pick_many("client", clients, CLIENTS)
    chosen_topologies = pick_many("topology", topologies, {t: t for t in topology_names(profiles)})
    chosen_scenarios = pick_many("scenario", scenarios, SCENARIOS)
    return [
        Cell(c, t, s)
        for s, scen in chosen_scenarios.items()
        for t in chosen_topologies
        for c in chosen_clients
        if scen.applies_to(c)
    ]
