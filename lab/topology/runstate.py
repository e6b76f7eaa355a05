"""What a run started, written down so `lab down`, `lab status` and later runs can find it.

Each run owns a directory under the runtime base (data directory, rendered configs,
logs, sockets) and a state.json naming its owner process and the servers it started.
A run whose owner died without cleaning up (SIGKILL, power loss of the terminal) is
stale: the next run stops its servers and removes its directory. Runs started by
`lab up` are persistent: they have no owner and stay until `lab down`.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lab.topology.services import KINDS
from lab.topology.processes import RunAs, Server, server_env, spawn, stop_group

RUNTIME_BASE = Path(os.environ.get("POOLER_LAB_RUNTIME", "/tmp/pooler-lab"))
STATE_FILE = "state.json"


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


@dataclass
class ProcessRecord:
    name: str
    pid: int
    stop_signal: int


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
    def create(cls, persistent: bool, base: Path | None = None, run_id: str | None = None) -> "RunState":
        base = base or RUNTIME_BASE
        base.mkdir(parents=True, exist_ok=True)
        os.chmod(base, 0o755)
        run_id = run_id or new_run_id()
        directory = base / run_id
        directory.mkdir(mode=0o755)
        owner = None if persistent else os.getpid()
        state = cls(run_id, directory, owner, _start_time(owner) if owner else None, time.time())
        state.save()
        return state

    @property
    def persistent(self) -> bool:
        return self.owner_pid is None

    def save(self) -> None:
        data = asdict(self)
        data["directory"] = str(self.directory)
        tmp = self.directory / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        os.chmod(tmp, 0o600)
        tmp.replace(self.directory / STATE_FILE)

    @classmethod
    def load(cls, directory: Path) -> "RunState":
        data = json.loads((directory / STATE_FILE).read_text())
        data["directory"] = Path(data["directory"])
        data["processes"] = [ProcessRecord(**p) for p in data["processes"]]
        return cls(**data)

    def add_process(self, name: str, pid: int, stop_signal: int) -> None:
        self.processes.append(ProcessRecord(name, pid, stop_signal))
        self.save()

    def start(self, name: str, argv: list[str], owner: RunAs, kind: str, python: bool = False,
              extra_env: dict[str, str] | None = None) -> Server:
        """Start a server of this run, logging to logs/<name>.log, and record it so it is stopped and reaped with the run.

        Persistent runs (`lab up`) outlive their starter; the others die with it (parent-death signal).
        """
        logs = self.directory / "logs"
        logs.mkdir(exist_ok=True)
        server = spawn(
            name, argv, owner, logs / f"{name}.log", stop_signal=KINDS[kind].stop_signal,
            death_signal=None if self.persistent else KINDS[kind].death_signal,
            env=server_env(self.directory, python=python, extra=extra_env),
        )
        self.add_process(name, server.pid, int(server.stop_signal))
        return server

    def owner_alive(self) -> bool:
        if self.owner_pid is None:
            return True
        return _start_time(self.owner_pid) == self.owner_start

    def belongs(self, pid: int) -> bool:
        """Is pid still one of ours? Guards against signalling a process that reused the pid."""
        marker = str(self.directory).encode()
        for name in ("cmdline", "environ"):
            try:
                if marker in Path(f"/proc/{pid}/{name}").read_bytes():
                    return True
            except OSError:
                continue
        return False

    def stop(self, grace: float = 5.0) -> list[str]:
        """Stop every recorded process (last started first) and remove the run directory."""
        stopped = []
        project = (self.topology or {}).get("compose_project")
        if project:
            # a Docker-backend run: its containers belong to a compose project of its own
            from lab.topology.backends.docker import down_project

            stopped += down_project(project)
        for rec in reversed(self.processes):
            if self.belongs(rec.pid):
                stop_group(rec.pid, rec.stop_signal, grace)
                stopped.append(f"{rec.name} (pid {rec.pid})")
        shutil.rmtree(self.directory, ignore_errors=True)
        return stopped


def all_runs(base: Path | None = None) -> list[RunState]:
    base = base or RUNTIME_BASE
    runs = []
    for directory in sorted(base.glob("*")) if base.is_dir() else []:
        try:
            runs.append(RunState.load(directory))
        except (OSError, ValueError, TypeError, KeyError):
            # a run killed before it wrote its state: nothing of it can be running
            # under a recorded pid; remove it once it is clearly not being set up.
            if directory.is_dir() and time.time() - directory.stat().st_mtime > 60:
                shutil.rmtree(directory, ignore_errors=True)
    return runs


def reap_stale(base: Path | None = None) -> list[str]:
    """Stop what runs whose owner is gone left behind; returns what was stopped."""
    reaped = []
    for state in all_runs(base):
        if not state.owner_alive():
            stopped = state.stop()
            reaped.append(f"run {state.run_id}: " + (", ".join(stopped) or "no process left, directory removed"))
    return reaped
