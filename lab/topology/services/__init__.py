"""The service kinds, one module each, found by the `lab.kind` label of a compose service.

A kind module defines one `ServiceKind` subclass (lab.topology.services.base); this package
finds every module in it, so adding a kind is adding its module (and its compose block,
templates and rules), nothing else.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import pkgutil

from lab.errors import ConfigError, UnknownName
from lab.topology.compose import Service
from lab.topology.services.base import ServiceKind


@functools.cache
def kinds() -> dict[str, ServiceKind]:
    """Every kind, by its `lab.kind` name: each module of this package that defines a ServiceKind subclass."""
    found: dict[str, ServiceKind] = {}
    for module in pkgutil.iter_modules(__path__, __name__ + "."):
        if module.name.endswith(".base"):
            continue
        for _, cls in inspect.getmembers(importlib.import_module(module.name), inspect.isclass):
            if issubclass(cls, ServiceKind) and cls is not ServiceKind and cls.__module__ == module.name:
                found[cls.name] = cls()
    return found


def kind(name: str) -> ServiceKind:
    try:
        return kinds()[name]
    except KeyError:
        raise UnknownName("service kind", name, kinds()) from None


def kind_of(svc: Service) -> ServiceKind:
    """The kind a compose service's `lab.kind` label names."""
    name = svc.labels.get("lab.kind")
    if not name:
        raise ConfigError(f"compose service {svc.name} has no lab.kind label (one of {', '.join(sorted(kinds()))})")
    try:
        return kinds()[name]
    except KeyError:
        raise ConfigError(
            f"compose service {svc.name}: lab.kind {name!r} is no service kind the lab has ({', '.join(sorted(kinds()))})"
        ) from None


def families() -> tuple[str, ...]:
    """The pooler families the lab's kinds run."""
    return tuple(sorted({k.family for k in kinds().values() if k.family}))


def for_family(family: str | None) -> ServiceKind | None:
    """The kind that runs a pooler family (what a target file declares), if the lab has one."""
    return next((k for k in kinds().values() if k.family == family), None)
