"""Errors a user can act on. Each carries a message meant to be printed as is."""

from collections.abc import Iterable


class LabError(Exception):
    """Base of every error the CLI prints without a traceback."""


class UnknownName(LabError):
    """A client, topology or scenario name that the lab does not know."""

    def __init__(self, kind: str, name: str, valid: Iterable[str]) -> None:
        self.kind, self.name, self.valid = kind, name, sorted(valid)
        plural = kind[:-1] + "ies" if kind.endswith("y") else kind + "s"
        super().__init__(f"unknown {kind} {name!r}; valid {plural}: {', '.join(self.valid)}")


class MissingDependency(LabError):
    """A binary or package the topology needs is not installed."""


class PortTaken(LabError):
    """A fixed port the user asked for is already bound by another process."""


class ConfigError(LabError):
    """A config template or settings file is malformed or incomplete."""


class StartupError(LabError):
    """A process of the topology did not come up; the message quotes its log."""
