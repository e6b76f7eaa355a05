"""Ways of starting the topology described in compose/: native processes, or Docker where an engine answers."""

from __future__ import annotations

from abc import ABC, abstractmethod

from lab.runstate import reap_stale
from lab.topology import Topology


class Backend(ABC):
    """Starts and stops one run of the topology; a context manager that cleans up after a failed start too."""

    name: str

    def __init__(self, progress=None) -> None:  # type: ignore[no-untyped-def]
        self.progress = progress or (lambda msg: None)

    def __enter__(self) -> Topology:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reap(self) -> None:
        """What runs killed before this one left behind goes first."""
        for line in reap_stale():
            self.progress(f"cleaned up after a killed run: {line}")

    @abstractmethod
    def start(self) -> Topology: ...

    @abstractmethod
    def stop(self) -> None: ...
