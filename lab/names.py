"""Names: looking them up in the lab's registries (errors list the valid ones), and checking a run's id."""

import re
from collections.abc import Mapping
from typing import TypeVar

from lab.errors import UnknownName

T = TypeVar("T")


def pick(kind: str, name: str, registry: Mapping[str, T]) -> T:
    try:
        return registry[name]
    except KeyError:
        raise UnknownName(kind, name, registry) from None


RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


def check_run_id(run_id: str) -> str:
    if not RUN_ID.fullmatch(run_id):
        raise ValueError(f"run id {run_id!r}: use letters, digits, '.', '_' and '-' (it names a directory and a file)")
    return run_id
