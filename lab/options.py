"""The lab's options, declared once: `pooler-lab run` and `pytest experiments/` read the same table.

Each option has one parser, used by both argparse front ends, so a value is checked
the same way whether it came from `./pooler-lab run --cell-timeout nan` or
`pytest --lab-cell-timeout nan` (both refuse it before anything starts). The values
end up in one frozen `LabOptions`, which the pytest plugin builds once per session.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from lab.names import check_run_id
from lab.paths import RESULTS_DIR

DEFAULT_CELL_TIMEOUT = 10.0
DEFAULT_REPEATS = 2
DEFAULT_RTTS = (0.0, 50.0)
BACKENDS = ("auto", "native", "docker", "attach")
#: --images: the official images, the local set built here, or auto (official where they can be had)
IMAGE_SETS = ("auto", "official", "local")

NETWORK_MODES = ("reference", "all", "none")
SSLMODES = ("disable", "require", "verify-full")


def names(value: str) -> tuple[str, ...]:
    """A comma-separated, non-empty list of names (`--clients ,` is refused, not a matrix of 0 cells)."""
    parts = tuple(dict.fromkeys(v.strip() for v in value.split(",") if v.strip()))
    if not parts:
        raise argparse.ArgumentTypeError(
            f"{value!r} names nothing; give comma-separated names (see `./pooler-lab list`)"
        )
    return parts


def positive_seconds(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds") from None
    if not math.isfinite(number) or number <= 0:
        raise argparse.ArgumentTypeError(f"{value!r}: give a finite number of seconds above 0")
    return number


def positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value!r}: give a whole number of at least 1")
    return number


def rtts(value: str) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: give round-trip times in ms, like 0,5,20,50") from None
    if not out or any(not math.isfinite(r) or r < 0 for r in out):
        raise argparse.ArgumentTypeError(f"{value!r}: round-trip times must be finite and 0 or more")
    return out


def shard(value: str) -> tuple[int, int]:
    """`i/n`: the i-th of n parts (1-based), for CI runners that split a run or a sweep between them."""
    try:
        i, n = (int(p) for p in value.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: give a shard as i/n, like 1/2") from None
    if n < 1 or not 1 <= i <= n:
        raise argparse.ArgumentTypeError(f"{value!r}: i must be between 1 and n")
    return i, n


def target_file(value: str) -> Path:
    path = Path(value)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{value}: no such target file")
    return path


def run_id(value: str) -> str:
    try:
        return check_run_id(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


@dataclass(frozen=True)
class Option:
    """One option: `--NAME` on `pooler-lab run`, `--lab-NAME` on pytest."""

    name: str
    help: str
    default: Any = None
    parse: Callable[[str], Any] | None = None
    choices: tuple[str, ...] | None = None
    on_cli: bool = True  # offered by `pooler-lab run` (the run id, say, is the CLI's own business)
    flag: bool = False  # an on/off switch: given means on

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")

    def kwargs(self, choices: tuple[str, ...] | None = None) -> dict[str, Any]:
        kw: dict[str, Any] = {"default": self.default, "help": self.help, "dest": f"lab_{self.dest}"}
        if self.flag:
            return {**kw, "action": "store_true"}
        if self.parse is not None:
            kw["type"] = self.parse
        if choices or self.choices:
            kw["choices"] = choices or self.choices
        return kw


OPTIONS: tuple[Option, ...] = (
    Option(
        "backend",
        "auto: Docker where an engine and Compose v2 answer and the images are here or can be had, else native "
        "processes (saying why); attach: the topology `./pooler-lab up` started",
        "auto",
        choices=BACKENDS,
    ),
    Option(
        "images",
        "Docker backend: official images (pulled), local ones built from Debian's packages (compose/images/), "
        "or auto: official where they are here or a registry answers, else local",
        "auto",
        choices=IMAGE_SETS,
    ),
    Option("experiments", "comma-separated experiments (default: all; `./pooler-lab list` shows them)", parse=names),
    Option(
        "clients", "comma-separated client configurations (default: all; `./pooler-lab list` shows them)", parse=names
    ),
    Option("topologies", "comma-separated topologies (default: all)", parse=names),
    Option("scenarios", "comma-separated scenarios (default: all)", parse=names),
    Option(
        "cell-timeout", "seconds before a cell's outcome is `timeout`", DEFAULT_CELL_TIMEOUT, parse=positive_seconds
    ),
    Option("repeats", "times each matrix cell's workload is repeated", DEFAULT_REPEATS, parse=positive_int),
    Option(
        "rtts", "comma-separated injected round-trip times in ms for the network benchmarks", DEFAULT_RTTS, parse=rtts
    ),
    Option(
        "network",
        "network benchmarks: REST clients plus reference PostgreSQL paths, every client, or none",
        "reference",
        choices=NETWORK_MODES,
    ),
    Option(
        "cost",
        "the price of each fix: queries/s and latency at client concurrency 1, 8 and 32 for every configuration "
        "that works, beside pgbench -S (adds about a minute)",
        False,
        flag=True,
    ),
    Option(
        "profiles",
        "compose profiles to start too: supavisor (Docker: the real Supavisor, where its image can be pulled)",
        (),
        parse=names,
    ),
    Option("baseline", "result file to diff this run against at the end; a changed cell fails the run"),
    Option("results", "directory result rows and benchmark JSON are written to", RESULTS_DIR, parse=Path),
    Option(
        "sslmode",
        "libpq sslmode of every PostgreSQL path of the local topology (a target's come from its file)",
        "disable",
        choices=SSLMODES,
    ),
    Option(
        "target",
        "a target file (TOML): run against endpoints the lab did not start (docs/targets.md)",
        parse=target_file,
    ),
    Option("read-only", "only the scenarios that write nothing (no schema is created on a target)", False, flag=True),
    Option(
        "shard",
        "i/n: run only the i-th of n parts of the planned cells (each cell in exactly one part, by its id), for CI "
        "runners that split a run; `pooler-lab publish --rows` merges their rows",
        parse=shard,
    ),
    Option(
        "run-id",
        "name of this run's result file and runtime directory (default: generated)",
        parse=run_id,
        on_cli=False,
    ),
    Option(
        "sampled",
        "the topologies whose lab.sample this session keeps to, whatever it names (a part of a parallel run is given "
        "its topologies, yet samples what the whole run samples); default: those the run does not name",
        parse=lambda value: tuple(v for v in value.split(",") if v),  # empty: none
        on_cli=False,
    ),
)


@dataclass(frozen=True)
class LabOptions:
    """The options of one session, read once; fixtures and the plan take them from here."""

    backend: str = "auto"
    images: str = "auto"
    experiments: tuple[str, ...] | None = None
    clients: tuple[str, ...] | None = None
    topologies: tuple[str, ...] | None = None
    scenarios: tuple[str, ...] | None = None
    cell_timeout: float = DEFAULT_CELL_TIMEOUT
    repeats: int = DEFAULT_REPEATS
    rtts: tuple[float, ...] = DEFAULT_RTTS
    network: str = "reference"
    cost: bool = False
    profiles: tuple[str, ...] = ()
    baseline: str | None = None
    results: Path = field(default=RESULTS_DIR)
    sslmode: str = "disable"
    target: Path | None = None
    read_only: bool = False
    shard: tuple[int, int] | None = None
    run_id: str | None = None
    sampled: tuple[str, ...] | None = None

    @classmethod
    def from_values(cls, get: Callable[[Option], Any]) -> LabOptions:
        return cls(**{o.dest: get(o) for o in OPTIONS})

    def selection(self) -> dict[str, list[str]] | None:
        """What narrowed the run on purpose (rows record it, so a diff knows missing cells are not lost ones); None: nothing."""
        chosen = {
            k: list(v)
            for k, v in (
                ("experiments", self.experiments),
                ("clients", self.clients),
                ("topologies", self.topologies),
                ("scenarios", self.scenarios),
            )
            if v
        }
        if self.network != "reference":
            chosen["network"] = [self.network]
        if self.read_only:
            chosen["read_only"] = ["yes"]
        if self.target is not None:
            chosen["target"] = [self.target.name]
        if self.shard is not None:
            chosen["shard"] = [f"{self.shard[0]}/{self.shard[1]}"]
        return chosen or None


assert {f.name for f in fields(LabOptions)} == {o.dest for o in OPTIONS}, (
    "every option has a field and every field an option"
)


def add_to_argparse(parser: argparse.ArgumentParser, backends: tuple[str, ...] = BACKENDS[:3]) -> None:
    """`--NAME` options of `pooler-lab run` (attach is pytest's own: the CLI starts or attaches by command)."""
    for o in OPTIONS:
        if o.on_cli:
            parser.add_argument(f"--{o.name}", **o.kwargs(backends if o.name == "backend" else None))


def add_to_pytest(group: Any) -> None:
    """`--lab-NAME` options of `pytest experiments/`."""
    for o in OPTIONS:
        group.addoption(f"--lab-{o.name}", **o.kwargs())


def from_namespace(args: argparse.Namespace, **override: Any) -> LabOptions:
    return LabOptions.from_values(lambda o: override.get(o.dest, getattr(args, f"lab_{o.dest}", o.default)))


def to_pytest_args(options: LabOptions) -> list[str]:
    """The same values as pytest options, for `pooler-lab run` to hand over; defaults are left out."""
    out = []
    for o in OPTIONS:
        value = getattr(options, o.dest)
        if value is None or value == o.default:
            continue
        if o.flag:
            out.append(f"--lab-{o.name}")
            continue
        if o.name == "shard":
            value = f"{value[0]}/{value[1]}"
        elif isinstance(value, tuple):
            value = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
        out.append(f"--lab-{o.name}={value}")
    return out


def format_names(values: Sequence[str] | None) -> str:
    return ",".join(values) if values else "all"
