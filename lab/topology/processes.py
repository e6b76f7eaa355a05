"""Starting and stopping the topology's server processes.

PostgreSQL's initdb/postgres and PgBouncer refuse to run as root, so when the lab
runs as root they run as an unprivileged system user it creates once. Every process
gets its own process group (a Ctrl-C aimed at the test runner does not hit it half
way) and, for runs owned by a process, a parent-death signal: if the owner is killed
with SIGKILL the kernel still stops the servers. `lab.topology.runstate` reaps anything left.
"""

from __future__ import annotations

import ctypes
import os
import pwd
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.errors import EnvironmentProblem, LabError, StartupError

LAB_USER = "poolerlab"
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class RunAs:
    uid: int
    gid: int
    name: str

    @property
    def switches(self) -> bool:
        return self.uid != os.getuid()

    def popen_kwargs(self) -> dict[str, Any]:
        """subprocess arguments that run the child as this user (none when that is us)."""
        if not self.switches:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}


def run_as() -> RunAs:
    """Ourselves, unless we are root: then the unprivileged lab user (created if missing)."""
    if os.geteuid() != 0:
        return run_as_self()
    try:
        entry = pwd.getpwnam(LAB_USER)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        done = subprocess.run(
            [useradd, "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", LAB_USER],
            capture_output=True,
            text=True,
        )
        if done.returncode not in (0, 9):  # 9: created meanwhile by a parallel run
            raise LabError(
                f"cannot create the unprivileged user {LAB_USER!r} the servers run as: {done.stderr.strip()}"
            ) from None
        entry = pwd.getpwnam(LAB_USER)
    return RunAs(entry.pw_uid, entry.pw_gid, entry.pw_name)


def run_as_self() -> RunAs:
    """For the lab's own Python servers (stand-in, delay proxies): they need no other user."""
    entry = pwd.getpwuid(os.getuid())
    return RunAs(entry.pw_uid, entry.pw_gid, entry.pw_name)


def check_reachable(owner: RunAs, path: Path, what: str, setting: str = "POOLER_LAB_RUNTIME") -> None:
    """`path` must be reachable by the user the servers run as: every directory above it must let that user pass.
    Otherwise initdb or a pooler fails later, with many lines of its own; here it is one line naming the directory."""
    if not owner.switches:
        return
    for parent in [*reversed(path.resolve().parents)]:
        info = parent.stat()
        bit = stat.S_IXUSR if info.st_uid == owner.uid else stat.S_IXGRP if info.st_gid == owner.gid else stat.S_IXOTH
        if not info.st_mode & bit:
            raise EnvironmentProblem(
                f"{what} {path}: the user {owner.name} the servers run as cannot pass {parent} "
                f"(mode {stat.S_IMODE(info.st_mode):o}); set {setting} to a directory it can reach, e.g. under /tmp"
            )


def give_to(owner: RunAs, *paths: Path) -> None:
    """Hand files (recursively) to the user the servers run as."""
    if not owner.switches:
        return
    for top in paths:
        for path in [top, *top.rglob("*")] if top.is_dir() else [top]:
            os.chown(path, owner.uid, owner.gid, follow_symlinks=False)


def server_env(run_dir: Path, python: bool = False, extra: dict[str, str] | None = None) -> dict[str, str]:
    """A server's environment: minimal, marked with its run directory (how the reaper recognises it);
    the lab's own Python servers also get what finds the lab's packages."""
    env = {"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8", "POOLER_LAB_RUN": str(run_dir)}
    if python:
        env.update({k: v for k, v in os.environ.items() if k in ("PYTHONPATH", "VIRTUAL_ENV", "HOME")})
    env.update(extra or {})
    return env


def die_with_parent(sig: int) -> None:
    """Runs in the child after it switched user (a uid change clears the setting)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)


@dataclass
class Server:
    """One running server process and how to stop it cleanly."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    stop_signal: int

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, grace: float = 5.0) -> None:
        stop_group(self.pid, self.stop_signal, grace)
        try:
            self.popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass


def stop_group(pid: int, sig: int, grace: float = 5.0) -> None:
    """Signal a process group, wait for its leader, then SIGKILL the group if needed."""
    try:
        os.killpg(pid, sig)
        if sig != signal.SIGCONT:
            os.killpg(pid, signal.SIGCONT)  # a stopped process acts on its signal only once it runs again
    except (ProcessLookupError, PermissionError):
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not group_alive(pid):
            return
        time.sleep(0.05)
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return
    deadline = time.monotonic() + grace
    while group_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def group_alive(pgid: int) -> bool:
    """Any non-zombie process left in the group (postgres backends outlive a signal briefly)."""
    for proc_stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = proc_stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False


def run(argv: Sequence[str], owner: RunAs, log: Path, timeout: float = 60.0, env: dict[str, str] | None = None) -> None:
    """A short-lived command (initdb); its output goes to `log` and into the error if it fails."""
    with open(log, "ab") as out:
        done = subprocess.run(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            timeout=timeout,
            cwd="/",
            **owner.popen_kwargs(),
        )
    if done.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise StartupError(f"{argv[0]} exited with {done.returncode}:\n{tail}")


def spawn(
    name: str,
    argv: Sequence[str],
    owner: RunAs,
    log: Path,
    stop_signal: int,
    death_signal: int | None,
    env: dict[str, str] | None = None,
) -> Server:
    """Start a long-running server in its own process group, logging to `log`.

    death_signal is sent by the kernel when the starting thread dies; None for
    servers meant to outlive the command (`lab up`).
    """
    with open(log, "ab") as out:  # the child keeps its own copy of the descriptor
        popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=(lambda: die_with_parent(death_signal)) if death_signal else None,
            env=env,
            cwd="/",
            **owner.popen_kwargs(),
        )
    return Server(name=name, popen=popen, log=log, stop_signal=stop_signal)
