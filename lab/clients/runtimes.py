"""Runner folders: client configurations that do not run in the lab's own Python process.

A folder of lab/clients/ with a `runner.toml` is a runtime: another language (Node.js), or
Python in another environment (its own lock file; the system's libpq). Its manifest says
which Debian packages it needs, how to install its dependencies from its own lock file
(`npm ci`, or a virtual environment from `requirements.lock`), how to start its runner (which
speaks the contract of lab.clients.contract on stdin and stdout), and its configurations with
their relations. Installs go to the lab's cache (never into the repository), keyed by a digest
of the folder, so a changed lock file installs again and an unchanged one costs nothing.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from lab.clients.configuration import GROUPS, Configuration
from lab.errors import ConfigError, MissingDependency
from lab.machine.apt import install_missing
from lab.paths import CACHE_DIR, ROOT

CLIENTS_DIR = Path(__file__).resolve().parent
MANIFEST = "runner.toml"
INSTALLERS = ("npm", "pip", "none")
TOP_KEYS = {"name", "language", "description", "apt", "install", "run", "env", "configuration"}
CONFIGURATION_KEYS = {
    "name", "description", "packages", "group", "workloads", "fixes", "change", "snippet", "docs", "runs", "batch",
    "calls",
}  # fmt: skip


@dataclass(frozen=True)
class Runtime:
    name: str
    folder: Path
    language: str
    description: str
    apt: tuple[str, ...]
    install: str  # npm | pip | none
    run: tuple[str, ...]  # {python}: the lab's interpreter; {venv}: the runtime's own environment
    env: dict[str, str]
    configurations: tuple[Configuration, ...] = ()
    #: configuration -> what the runner runs for it (the lab's in-process class name, for Python runners)
    runs: dict[str, str] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        h = hashlib.sha256()
        for path in sorted(p for p in self.folder.rglob("*") if p.is_file() and "node_modules" not in p.parts):
            if "__pycache__" not in path.parts:
                h.update(str(path.relative_to(self.folder)).encode() + b"\0" + path.read_bytes())
        return h.hexdigest()[:12]

    @property
    def home(self) -> Path:
        """Where it is installed and run: the folder itself when it installs nothing, else the lab's cache."""
        return self.folder if self.install == "none" else CACHE_DIR / "runtimes" / f"{self.name}-{self.digest}"

    def ensure(self, progress: Any = print) -> Path:
        """Install what it needs (Debian packages, then its locked dependencies), once per folder digest.

        A run's parts start side by side, and each may be the first to need a runner: the install
        holds a lock of the cache's, so one process installs while the others wait and then find it
        done (two installs into one folder left each other's half-written files behind).
        """
        install_missing(self.apt, f"the {self.name} runner")
        home = self.home
        if self.install == "none" or self._installed(home):
            return home
        home.parent.mkdir(parents=True, exist_ok=True)
        with open(home.parent / f".{self.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or the process ends
            if not self._installed(home):
                self._install(home, progress)
        return home

    def _installed(self, home: Path) -> bool:
        """Its stamp, and its interpreter for a virtual environment: installs raced by an earlier lab left stamps
        beside removed environments."""
        return (home / ".installed").exists() and (self.install != "pip" or (home / "venv/bin/python").exists())

    def _install(self, home: Path, progress: Any) -> None:
        progress(f"installing the {self.name} runner's dependencies into {home} (once)")
        shutil.rmtree(home, ignore_errors=True)
        shutil.copytree(self.folder, home, ignore=shutil.ignore_patterns("node_modules", "__pycache__"))
        if self.install == "npm":
            steps = [["npm", "ci", "--omit=dev", "--no-audit", "--no-fund", "--loglevel=error"]]
        else:  # pip: a virtual environment of its own, from its lock file
            steps = [
                [sys.executable, "-m", "venv", str(home / "venv")],
                [str(home / "venv/bin/python"), "-m", "pip", "install", "-q", "-r", str(home / "requirements.lock")],
            ]
        for step in steps:
            done = subprocess.run(step, cwd=home, capture_output=True, text=True)
            if done.returncode != 0:
                shutil.rmtree(home, ignore_errors=True)
                tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
                raise MissingDependency(
                    f"installing the {self.name} runner failed at `{' '.join(step)}`: {' | '.join(tail)}"
                )
        (home / ".installed").write_text(self.digest)
        for stale in home.parent.glob(f"{self.name}-*"):  # earlier installs of this folder's older contents
            if stale != home and (stale / ".installed").exists():
                shutil.rmtree(stale, ignore_errors=True)

    def argv(self) -> list[str]:
        home = self.home
        values = {"python": sys.executable, "venv": str(home / "venv")}
        return [part.format(**values) for part in self.run]

    def environment(self) -> dict[str, str]:
        """The runner's environment: the lab's repository on PYTHONPATH (Python runners import the contract)."""
        return {"PYTHONPATH": str(ROOT), **self.env}

    def versions(self, packages: tuple[str, ...]) -> dict[str, str]:
        """The installed versions of its packages, read from its install (without starting it)."""
        return _installed_versions(self.name, self.install, self.home, packages)


@functools.cache
def _installed_versions(name: str, install: str, home: Path, packages: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for package in packages:
        if install == "npm":
            manifest = home / "node_modules" / package / "package.json"
            out[package] = json.loads(manifest.read_text())["version"] if manifest.exists() else "not installed"
        elif install == "pip":
            python = home / "venv/bin/python"
            script = f"import importlib.metadata as m; print(m.version({package!r}))"
            done = (
                subprocess.run([str(python), "-c", script], capture_output=True, text=True) if python.exists() else None
            )
            out[package] = done.stdout.strip() if done and done.returncode == 0 else "not installed"
        else:
            from lab.clients.configuration import package_versions

            out.update(package_versions((package,)))
    return out


def _load(folder: Path) -> Runtime:
    path = folder / MANIFEST
    try:
        doc = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the runner manifest: {exc}") from None
    unknown = set(doc) - TOP_KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(TOP_KEYS))}")
    if doc.get("name") != folder.name:
        raise ConfigError(f"{path}: name must be the folder's, {folder.name!r}")
    if doc.get("install", "none") not in INSTALLERS:
        raise ConfigError(f"{path}: install must be one of {', '.join(INSTALLERS)}")
    if not isinstance(doc.get("run"), list) or not doc["run"]:
        raise ConfigError(f"{path}: run must be the runner's argv, a list of strings")
    runtime = Runtime(
        name=doc["name"],
        folder=folder,
        language=str(doc.get("language", "")),
        description=str(doc.get("description", "")),
        apt=tuple(doc.get("apt", ())),
        install=doc.get("install", "none"),
        run=tuple(doc["run"]),
        env={str(k): str(v) for k, v in (doc.get("env") or {}).items()},
    )
    configurations, runs = [], {}
    for i, raw in enumerate(doc.get("configuration", []), 1):
        where = f"{path}: configuration {i}"
        unknown = set(raw) - CONFIGURATION_KEYS
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        if not raw.get("name") or not raw.get("description"):
            raise ConfigError(f"{where}: needs a name and a description")
        if raw.get("group", "driver") not in GROUPS:
            raise ConfigError(f"{where}: group must be one of {', '.join(GROUPS)}")
        packages = tuple(raw.get("packages", ()))
        configurations.append(
            Configuration(
                name=raw["name"],
                description=raw["description"],
                packages=packages,
                language=runtime.language,
                runtime=runtime.name,
                group=raw.get("group", "driver"),
                workloads=tuple(raw["workloads"]) if "workloads" in raw else None,
                fixes=dict(raw.get("fixes", {})),
                change=raw.get("change"),
                snippet=raw.get("snippet"),
                docs=tuple(raw.get("docs", ())),
                batch=raw.get("batch"),
                calls=tuple(raw.get("calls", ())),
                version_reader=runtime.versions,
            )
        )
        if raw.get("runs"):
            runs[raw["name"]] = str(raw["runs"])
    return replace(runtime, configurations=tuple(configurations), runs=runs)


@functools.cache
def runtimes() -> dict[str, Runtime]:
    """Every runner folder of lab/clients/, by name."""
    return {folder.name: _load(folder) for folder in sorted(p.parent for p in CLIENTS_DIR.glob(f"*/{MANIFEST}"))}
