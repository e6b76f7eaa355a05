"""Shared fixtures of the lab's own tests. `topology` starts one real native topology for the tests that need servers;
`compose_containers` and `run_dirs` are what the lifecycle tests check is left behind."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest

from lab.observe.server_view import fresh_pooler
from lab.topology.backends.native import NativeBackend
from lab.topology.runstate import RUNTIME_BASE


@pytest.fixture(scope="session", autouse=True)
def _own_backend_choice(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The tests choose backends on purpose (--backend docker): that must not become the user's remembered choice,
    which `--backend auto` keeps to (lab.topology.backends.choice). The runs the tests start inherit this."""
    os.environ["POOLER_LAB_BACKEND_FILE"] = str(tmp_path_factory.mktemp("choice") / "backend")


@pytest.fixture(scope="session")
def topology():  # type: ignore[no-untyped-def]
    """Every service of the compose file, the poolers that park parked, as a lab run leaves them before a cell through
    none of them: pgagroal's prefill would otherwise hold 9 of the server's 22 client slots for the whole session,
    and a target run's session-state probes found none free on a loaded machine. A test through such a pooler starts
    it again with fresh_pooler."""
    with NativeBackend() as topo:
        fresh_pooler(topo, None)
        yield topo


def _compose_containers(project: str | None = None) -> list[Any]:
    """The engine's containers of one compose project, or of any (running or not), asked with a client of its own."""
    import docker

    client = docker.from_env()
    try:
        label = "com.docker.compose.project" + (f"={project}" if project else "")
        return list(client.containers.list(all=True, filters={"label": label}))
    finally:
        client.close()


@pytest.fixture
def compose_containers() -> Callable[..., list[Any]]:
    return _compose_containers


@pytest.fixture
def run_dirs() -> Callable[[], set[str]]:
    """The run directories under the lab's runtime directory, as a callable: asked before and after a command."""
    return lambda: set(os.listdir(RUNTIME_BASE)) if RUNTIME_BASE.exists() else set()
