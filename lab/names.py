"""Looking names up in the lab's registries, with errors that list the valid names."""

from collections.abc import Iterable, Mapping
from typing import TypeVar

from lab.errors import UnknownName

T = TypeVar("T")


def pick(kind: str, name: str, registry: Mapping[str, T]) -> T:
    try:
        return registry[name]
    except KeyError:
        raise UnknownName(kind, name, registry) from None


def pick_many(kind: str, names: Iterable[str] | None, registry: Mapping[str, T]) -> dict[str, T]:
    """All of the registry when names is None; otherwise the named entries, in order."""
    if names is None:
        return dict(registry)
    return {name: pick(kind, name, registry) for name in names}
