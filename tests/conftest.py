"""Shared fixtures of the lab's own tests. `topology` starts one real native topology for the tests that need servers."""

from __future__ import annotations

import pytest

from lab.topology.backends.native import NativeBackend


@pytest.fixture(scope="session")
def topology():  # type: ignore[no-untyped-def]
    with NativeBackend() as topo:
        yield topo
