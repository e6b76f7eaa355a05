"""Looking names up in the lab's registries, with errors that list the valid names."""

from collections.abc import Mapping
from typing import TypeVar

from lab.errors import UnknownName

T = TypeVar("T")


def pick(kind: str, name: str, registry: Mapping[str, T]) -> T:
    try:
        return registry[name]
    except KeyError:
        raise UnknownName(kind, name, registry) from None
