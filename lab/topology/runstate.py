"""What a run started, written down so `lab down`, `lab status` and later runs can find it.

Each run owns a directory under the runtime base (data directory, rendered configs,
logs, sockets) and a state file beside it, `<run_id>.json`, naming its owner process
and the servers it started. A run whose owner died without cleaning up (SIGKILL,
power loss of the terminal) is stale: the next run stops its servers and removes its
directory. Runs started by `lab up` are persistent: they have no owner and stay until
`lab down`.

Nothing read back is trusted further than the lab can prove it is its own: the base
is per user, and refused unless this user owns it and nobody else can write to it;
the state files sit in the base, out of reach of the unprivileged user the servers
run as (who owns the run directories); a run's directory is derived from its id, not
read from the file; a recorded pid is signalled only while its start time is the one
recorded and it carries the run's marker. Anything else in the base is left alone and
reported.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from lab.errors import EnvironmentProblem
from lab.machine.docker_engine import down_project
from lab.names import check_run_id
from lab.paths import write_private
from lab.topology.processes import RunAs, Server, server_env, spawn, stop_group


class Stoppable(Protocol):
    """What the run needs to know of a server's kind (lab.topology.services): how to stop it, what the kernel sends
    it when the lab dies, and whether it is the lab's own Python process."""

    @property
    def stop_signal(self) -> int: ...
    @property
    def death_signal(self) -> int: ...
    @property
    def python_module(self) -> str | None: ...


RUNTIME_BASE = Path(os.environ.get("POOLER_LAB_RUNTIME", f"/tmp/pooler-lab-{os.getuid()}"))


def runtime_base(base: Path | None = None, create: bool = True) -> Path:
    """The runtime base, created if asked, and checked: a directory (not a link) this user owns and nobody else can write."""
    base = base or RUNTIME_BASE
    if create:
        try:
            base.mkdir(mode=0o711, parents=True, exist_ok=True)
        except OSError as exc:
            raise EnvironmentProblem(
                f"runtime directory {base}: cannot create it ({exc.strerror}); set POOLER_LAB_RUNTIME to a directory of your own"
            ) from None
    try:
        info = base.lstat()
    except FileNotFoundError:
        return base
    if not stat.S_ISDIR(info.st_mode):
        raise EnvironmentProblem(
            f"runtime directory {base} is not a directory (a link or a file); the lab will not use it"
        )
    if info.st_uid != os.getuid():
        raise EnvironmentProblem(
            f"runtime directory {base} belongs to uid {info.st_uid}, not to you (uid {os.getuid()}); "
            "the lab will not use or clean a directory another user controls; set POOLER_LAB_RUNTIME"
        )
    if info.st_mode & 0o022:
        raise EnvironmentProblem(
            f"runtime directory {base} can be written by others (mode {stat.S_IMODE(info.st_mode):o}); "
            f"`chmod go-w {base}` or set POOLER_LAB_RUNTIME"
        )
    if not os.access(base, os.W_OK | os.X_OK):
        raise EnvironmentProblem(
            f"runtime directory {base} is not writable; set POOLER_LAB_RUNTIME to a directory of your own"
        )
    return base


def new_run_id() -> str:
    """Sortable by time, unique per process: also the name of the run's result file."""
    return time.strftime("%Y%m%dT%H%M%S") + f"-{os.getpid()}"


def _start_time(pid: int) -> int | None:
    """Process start time in clock ticks: with the pid it identifies a process across pid reuse."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _state(pid: int) -> str | None:
    """A process's state letter (R, S, D, T stopped, t traced, Z zombie), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


@dataclass
class ProcessRecord:
    name: str
    pid: int
    stop_signal: int
    start: int | None = None  # the process's start time: with the pid, it names one process across pid reuse


@dataclass
class RunState:
    run_id: str
    directory: Path
    owner_pid: int | None
    owner_start: int | None
    created: float
    processes: list[ProcessRecord] = field(default_factory=list)
    topology: dict[str, Any] | None = None

    @classmethod
    def create(cls, persistent: bool, base: Path | None = None, run_id: str | None = None) -> RunState:
        base = runtime_base(base)
        run_id = check_run_id(run_id or new_run_id())
        directory = base / run_id
        owner = None if persistent else os.getpid()
        state = cls(run_id, directory, owner, _start_time(owner) if owner else None, time.time())
        state.save()  # first the record, then the directory: there is never a directory the lab cannot account for
        try:
            directory.mkdir(mode=0o755)
        except FileExistsError:
            raise EnvironmentProblem(f"{directory} exists already: another run with the id {run_id!r}?") from None
        return state

    @property
    def state_file(self) -> Path:
        return self.directory.parent / f"{self.run_id}.json"

    @property
    def persistent(self) -> bool:
        return self.owner_pid is None

    def save(self) -> None:
        data = asdict(self)
        del data["directory"]  # derived from the base and the id, never read back
        tmp = self.state_file.with_suffix(".tmp")
        write_private(tmp, json.dumps(data, indent=2))
        tmp.replace(self.state_file)

    @classmethod
    def load(cls, state_file: Path) -> RunState:
        """A state file of the base; ValueError unless it is this user's own and names itself."""
        info = state_file.lstat()
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid():
            raise ValueError(f"{state_file}: not a regular file of yours")
        data = json.loads(state_file.read_text())
        if not isinstance(data, dict) or data.get("run_id") != state_file.stem:
            raise ValueError(f"{state_file}: does not name its own run")
        data.pop("directory", None)
        data["processes"] = [ProcessRecord(**p) for p in data["processes"]]
        return cls(directory=state_file.parent / check_run_id(data["run_id"]), **data)

    def add_process(self, name: str, pid: int, stop_signal: int) -> None:
        self.processes.append(ProcessRecord(name, pid, stop_signal, _start_time(pid)))
        self.save()

    def start(
        self, name: str, argv: list[str], owner: RunAs, kind: Stoppable, extra_env: dict[str, str] | None = None
    ) -> Server:
        """Start a server of this run, logging to logs/<name>.log, and record it so it is stopped and reaped with the run.

        Persistent runs (`lab up`) outlive their starter; the others die with it (parent-death signal). The kind says
        how to stop it, and whether it is the lab's own Python process (which needs the lab's packages).
        """
        logs = self.directory / "logs"
        logs.mkdir(exist_ok=True)
        server = spawn(
            name,
            argv,
            owner,
            logs / f"{name}.log",
            stop_signal=kind.stop_signal,
            death_signal=None if self.persistent else kind.death_signal,
            env=server_env(self.directory, python=kind.python_module is not None, extra=extra_env),
        )
        self.add_process(name, server.pid, int(server.stop_signal))
        return server

    def owner_alive(self) -> bool:
        if self.owner_pid is None:
            return True
        return _start_time(self.owner_pid) == self.owner_start

    def belongs(self, pid: int, start: int | None = None) -> bool:
        """Is pid still one of ours? Its start time must be the one recorded (a reused pid has another)
        and it must carry the run's directory in its command line or environment."""
        if start is not None and _start_time(pid) != start:
            return False
        marker = str(self.directory).encode()
        for name in ("cmdline", "environ"):
            try:
                if marker in Path(f"/proc/{pid}/{name}").read_bytes():
                    return True
            except OSError:
                continue
        return False

    def dead_server(self) -> str | None:
        """The first recorded server that is no longer running or is stopped (SIGSTOP, a debugger: it answers
        nothing), named with the end of its log; None while all run."""
        for rec in self.processes:
            if self.belongs(rec.pid, rec.start) and _state(rec.pid) in ("T", "t"):
                return f"{rec.name} (pid {rec.pid}) is stopped (SIGSTOP or a debugger) and answers nothing"
            if not self.belongs(rec.pid, rec.start):
                log = self.directory / "logs" / f"{rec.name}.log"
                try:
                    tail = [line for line in log.read_text(errors="replace").splitlines() if line.strip()][-3:]
                except OSError:
                    tail = []
                return f"{rec.name} (pid {rec.pid}) is no longer running" + (
                    f"; its log ends: {' | '.join(tail)}" if tail else ""
                )
        return None

    def stop(self, grace: float = 5.0) -> list[str]:
        """Stop every recorded process (last started first) and remove the run directory."""
        stopped = []
        project = (self.topology or {}).get("compose_project")
        if project:
            # a Docker-backend run: its containers belong to a compose project of its own
            stopped += down_project(project, (self.topology or {}).get("compose_cli"))
        for rec in reversed(self.processes):
            if self.belongs(rec.pid, rec.start):
                stop_group(rec.pid, rec.stop_signal, grace)
                stopped.append(f"{rec.name} (pid {rec.pid})")
        if self.directory.is_dir() and not self.directory.is_symlink():
            shutil.rmtree(self.directory, ignore_errors=True)
        self.state_file.unlink(missing_ok=True)
        return stopped


def all_runs(base: Path | None = None) -> list[RunState]:
    """The runs recorded in this user's base (refused if the base is not safely this user's)."""
    base = runtime_base(base, create=False)
    runs = []
    for state_file in sorted(base.glob("*.json")) if base.is_dir() else []:
        try:
            runs.append(RunState.load(state_file))
        except (OSError, ValueError, TypeError, KeyError):
            continue  # not a state file of ours: left alone, and `unknown_entries` reports it
    return runs


def unknown_entries(base: Path | None = None) -> list[Path]:
    """What the base holds that no state file of this user accounts for: reported, never touched."""
    base = runtime_base(base, create=False)
    if not base.is_dir():
        return []
    ours = {p for r in all_runs(base) for p in (r.directory, r.state_file)}
    return sorted(p for p in base.iterdir() if p not in ours and not p.name.endswith(".tmp"))


def reap_stale(base: Path | None = None) -> list[str]:
    """Stop what runs whose owner is gone left behind; returns what was stopped."""
    reaped = []
    for state in all_runs(base):
        if not state.owner_alive():
            stopped = state.stop()
            reaped.append(f"run {state.run_id}: " + (", ".join(stopped) or "no process left, directory removed"))
    return reaped
