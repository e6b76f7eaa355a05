"""Errors a user can act on. Each carries a message meant to be printed as is, and the exit status it ends a command with.

Exit statuses, one meaning each (README, `--help`): 0 ok; 1 unexpected outcomes or changed
cells; 2 bad usage or a bad input file; 3 the environment (a missing binary or engine,
permissions, a port taken, a server that died); 130 interrupted (Ctrl-C or SIGTERM).
"""

from collections.abc import Iterable

OK, UNEXPECTED, BAD_INPUT, ENVIRONMENT, INTERRUPTED = 0, 1, 2, 3, 130


class LabError(Exception):
    """Base of every error the CLI prints without a traceback."""

    exit_status = BAD_INPUT


class UnknownName(LabError):
    """A client, topology or scenario name that the lab does not know."""

    def __init__(self, kind: str, name: str, valid: Iterable[str]) -> None:
        self.kind, self.name, self.valid = kind, name, sorted(valid)
        plural = kind[:-1] + "ies" if kind.endswith("y") else kind + "s"
        super().__init__(f"unknown {kind} {name!r}; valid {plural}: {', '.join(self.valid)}")


class EnvironmentProblem(LabError):
    """The machine, not the input: a missing binary, an engine, permissions, a dead server."""

    exit_status = ENVIRONMENT


class MissingDependency(EnvironmentProblem):
    """A binary or package the topology needs is not installed."""


class PortTaken(EnvironmentProblem):
    """A fixed port the user asked for is already bound by another process."""


class ConfigError(LabError):
    """A config template or settings file is malformed or incomplete."""


class ServerDied(EnvironmentProblem):
    """A server of the topology died while the run was measuring: what follows would not be a client's outcome."""


class StartupError(EnvironmentProblem):
    """A process of the topology did not come up; the message quotes its log."""
