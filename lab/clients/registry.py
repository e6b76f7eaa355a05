"""Every client configuration the lab has, found where it is defined.

- Python configurations run in the lab's own process: every `Client` subclass with a name in a module of
  lab/clients/python/ (lab.clients.python.base).
- Configurations of other runtimes (another language, another Python environment): every folder of lab/clients/
  with a `runner.toml` (lab.clients.runtimes), which names its configurations and how to install and start the
  runner that speaks the contract (lab.clients.contract).

So a new configuration is a class in its family's module, and a new language a folder; nothing else lists them.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import pkgutil
from collections.abc import Callable

from lab.clients import python as python_clients
from lab.clients.configuration import Configuration
from lab.clients.python.base import Client
from lab.clients.runtimes import runtimes
from lab.names import pick


def python_modules() -> list[str]:
    """The modules of lab/clients/python/, which define the in-process configurations."""
    return [m.name for m in pkgutil.iter_modules(python_clients.__path__, python_clients.__name__ + ".")]


@functools.cache
def python_classes() -> dict[str, type[Client]]:
    """The in-process Python configurations, by name, in the order their modules define them."""
    found: dict[str, type[Client]] = {}
    for name in python_modules():
        loaded = importlib.import_module(name)
        for cls in vars(loaded).values():  # in the order the module defines them
            if inspect.isclass(cls) and cls.__module__ == name and issubclass(cls, Client) and "name" in vars(cls):
                found[cls.name] = cls
    return found


@functools.cache
def configurations() -> dict[str, Configuration]:
    """Every client configuration: the Python ones first (drivers, then the others), then each runtime's."""
    python = [cls.configuration() for cls in python_classes().values()]
    ordered = [c for c in python if c.group == "driver"] + [c for c in python if c.group != "driver"]
    for runtime in runtimes().values():
        ordered += runtime.configurations
    return {c.name: c for c in ordered}


def configuration(name: str) -> Configuration:
    return pick("client", name, configurations())


def client_class(name: str) -> type[Client]:
    """The in-process class of a Python configuration (UnknownName for others)."""
    return pick("client", name, python_classes())


def of_group(*groups: str) -> dict[str, Configuration]:
    return {n: c for n, c in configurations().items() if c.group in groups}


def install_runners(names: tuple[str, ...], progress: Callable[[str], None]) -> None:
    """Install the runners these configurations need (a run's: its plan's cells') before the run starts.

    A run installs them once, in its own process, so its parts side by side never meet an install
    half done, and its progress is printed once.
    """
    wanted = {c.runtime for name, c in configurations().items() if name in names}
    for name, runtime in runtimes().items():
        if name in wanted:
            runtime.ensure(progress)
