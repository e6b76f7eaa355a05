"""A Docker engine and Compose v2 on a Debian machine that has neither, started and stopped by the lab.

Debian's `docker.io` package gives an engine (20.10) but no Compose v2 plugin, and on
machines without an init system nothing starts the engine. Three things, each undone or
cached:

- `compose_command()`: how to call Compose v2. The system's `docker compose` if it is
  there; otherwise the plugin binary of Debian's next release (trixie's `docker-compose`
  package, which runs on bookworm), fetched once with apt and a private configuration
  (apt checks the archive's signature) into the lab's cache. The plugin binary is called
  by its path with the `compose` word left out, so nothing is installed system-wide and
  no environment variable has to be set.
- `start_engine()` / `stop_engine()`: `dockerd` with no bridge, no iptables and no
  forwarding (traffic stays on 127.0.0.1; containers use host networking), its pid
  kept in the cache, so `stop_engine()` stops exactly the engine the lab started and
  never one the machine already ran.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from lab.errors import EnvironmentProblem, MissingDependency
from lab.machine.binaries import system_binary
from lab.machine.builds import ARCHIVE
from lab.paths import CACHE_DIR

CACHE = CACHE_DIR / "docker"
PLUGIN = CACHE / "cli-plugins" / "docker-compose"
PIDFILE = CACHE / "dockerd.pid"
ENGINE_LOG = CACHE / "dockerd.log"
SOCKET = Path("/var/run/docker.sock")
#: no bridge, no NAT, no forwarding: containers of the lab use the host's network and 127.0.0.1 only
DOCKERD_FLAGS = (
    "--bridge=none",
    "--iptables=false",
    "--ip6tables=false",
    "--ip-masq=false",
    "--ip-forward=false",
    "--storage-driver=overlay2",
)
COMPOSE_SUITE = "trixie"  # the first Debian release with the Compose v2 plugin (docker-compose 2.x)
Progress = Callable[[str], None]


def _compose_version(argv: list[str]) -> str | None:
    try:
        done = subprocess.run([*argv, "version", "--short"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    version = done.stdout.strip().lstrip("v")
    if done.returncode != 0 or not version[:1].isdigit() or int(version.split(".")[0]) < 2:
        return None
    return version


@functools.cache
def compose_command() -> tuple[list[str], str] | None:
    """(argv that runs Compose v2, its version), or None: the system's `docker compose`, else the lab's cached plugin.
    Compose v1 (`docker-compose` 1.x, Debian bookworm's) cannot read the lab's file (top-level `name:`, --wait)."""
    docker = shutil.which("docker")
    if docker is not None:
        version = _compose_version([docker, "compose"])
        if version is not None:
            return [docker, "compose"], version
    if PLUGIN.is_file():
        version = _compose_version([str(PLUGIN)])
        if version is not None:
            return [str(PLUGIN)], version
    return None


def _apt(args: list[str], work: Path) -> subprocess.CompletedProcess[str]:
    """apt-get with a private source list (Debian trixie) and private lists and cache under `work`: the machine's apt
    is not touched. apt still checks the archive's signature against the machine's Debian keyring."""
    return subprocess.run(
        [
            "apt-get",
            "-q",
            f"-o=Dir::Etc::SourceList={work / 'sources.list'}",
            "-o=Dir::Etc::SourceParts=/dev/null",
            f"-o=Dir::State::Lists={work / 'lists'}",
            f"-o=Dir::Cache={work / 'cache'}",
            *args,
        ],
        capture_output=True,
        text=True,
        cwd=work,
        timeout=600,
    )


def install_compose_plugin(progress: Progress = print) -> tuple[list[str], str]:
    """Compose v2: the system's, or Debian trixie's plugin fetched into the cache (once; ~15 MB)."""
    found = compose_command()
    if found is not None:
        return found
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise MissingDependency(
            "Compose v2 (`docker compose`) is not installed and this is not a Debian machine: "
            "install the docker-compose-plugin package of your distribution"
        )
    progress(f"fetching the Compose v2 plugin from Debian {COMPOSE_SUITE} (docker-compose) into {PLUGIN.parent}")
    with tempfile.TemporaryDirectory(prefix="pooler-lab-compose-") as tmp:
        work = Path(tmp)
        (work / "lists" / "partial").mkdir(parents=True)
        (work / "cache" / "archives" / "partial").mkdir(parents=True)
        (work / "sources.list").write_text(f"deb {ARCHIVE} {COMPOSE_SUITE} main\n")
        os.chmod(work, 0o755)  # apt's download user (_apt) writes here
        for step in (["update"], ["download", f"docker-compose/{COMPOSE_SUITE}"]):
            done = _apt(step, work)
            if done.returncode != 0:
                raise MissingDependency(
                    f"apt-get {step[0]} (Debian {COMPOSE_SUITE}, for Compose v2) failed: "
                    f"{(done.stderr or done.stdout).strip().splitlines()[-1:]}"
                )
        debs = sorted(work.glob("docker-compose_*.deb"))
        if not debs:
            raise MissingDependency(f"apt-get download docker-compose/{COMPOSE_SUITE} left no package")
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(work / "x")], check=True, capture_output=True)
        PLUGIN.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(work / "x/usr/libexec/docker/cli-plugins/docker-compose", PLUGIN)
    os.chmod(PLUGIN, 0o755)
    compose_command.cache_clear()
    found = compose_command()
    if found is None:
        raise MissingDependency(f"{PLUGIN} does not run as Compose v2")
    return found


def engine(timeout: float = 3) -> tuple[bool, str]:
    """Does a Docker engine answer? (answers, what it is or why not)"""
    try:
        import docker
    except ImportError:
        return False, "the docker SDK is not installed (pip install 'pooler-lab[docker]')"

    def unanswered(exc: Exception) -> tuple[bool, str]:
        return False, f"no Docker engine answers ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})"

    try:
        client = docker.from_env(timeout=int(timeout))
    except Exception as exc:
        return unanswered(exc)
    try:
        client.ping()
        return True, f"Docker engine {client.version().get('Version', '?')}"
    except Exception as exc:
        return unanswered(exc)
    finally:
        client.close()


def engine_answers(timeout: float = 3) -> bool:
    return engine(timeout)[0]


def _our_pid() -> int | None:
    try:
        pid = int(PIDFILE.read_text())
    except (OSError, ValueError):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
    except OSError:
        return None
    return pid if cmdline.endswith(b"dockerd") else None


def start_engine(progress: Progress = print, timeout: float = 30) -> int | None:
    """Start Debian's dockerd when no engine answers; its pid (None: an engine was already there, and stays the machine's)."""
    if engine_answers():
        progress("a Docker engine answers already; the lab will not start or stop one")
        return None
    dockerd = system_binary("dockerd")
    if dockerd is None:
        raise MissingDependency(
            "dockerd not found; install Debian's engine with `sudo apt-get install docker.io` "
            "(`./pooler-lab docker start` does this for you)"
        )
    if os.geteuid() != 0:
        raise EnvironmentProblem(
            "starting dockerd needs root; start your engine yourself (it answers on /var/run/docker.sock)"
        )
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(ENGINE_LOG, "ab") as log:
        proc = subprocess.Popen(
            [str(dockerd), *DOCKERD_FLAGS],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # outlives this command: `docker stop` ends it
    PIDFILE.write_text(str(proc.pid))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = ENGINE_LOG.read_text(errors="replace").splitlines()[-5:]
            PIDFILE.unlink(missing_ok=True)
            raise EnvironmentProblem(
                f"dockerd exited at start (code {proc.returncode}); {ENGINE_LOG} ends: {' | '.join(tail)}"
            )
        if engine_answers(timeout=1):
            progress(f"dockerd started (pid {proc.pid}; log {ENGINE_LOG})")
            return proc.pid
        time.sleep(0.3)
    stop_engine(progress)
    raise EnvironmentProblem(f"dockerd did not answer within {timeout:g}s; see {ENGINE_LOG}")


def stop_engine(progress: Progress = print, timeout: float = 30) -> bool:
    """Stop the dockerd `start_engine` started (by its pid); an engine the lab did not start is left alone."""
    pid = _our_pid()
    if pid is None:
        PIDFILE.unlink(missing_ok=True)
        progress("no Docker engine started by the lab is running")
        return False
    os.kill(pid, signal.SIGTERM)  # dockerd stops its containers and exits
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0]:
                break
        except ChildProcessError:
            pass
        time.sleep(0.2)
    if Path(f"/proc/{pid}").exists() and (Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"):
        os.kill(pid, signal.SIGKILL)
    PIDFILE.unlink(missing_ok=True)
    # dockerd leaves its network namespace mounted when it runs without an init system
    netns = Path("/run/docker/netns/default")
    if netns.exists() and subprocess.run(["mountpoint", "-q", str(netns)]).returncode == 0:
        subprocess.run(["umount", str(netns)], capture_output=True)
    progress(f"dockerd (pid {pid}) stopped")
    return True


def down_project(project: str, cli: list[str] | None = None) -> list[str]:
    """Remove a compose project a Docker run started (also after the run was killed)."""
    found = compose_command()
    argv = cli or (found[0] if found else None)
    if not argv or shutil.which(argv[0]) is None:
        return []
    done = subprocess.run([*argv, "-p", project, "down", "-v", "--remove-orphans"], capture_output=True, timeout=120)
    return [f"compose project {project}"] if done.returncode == 0 else []
