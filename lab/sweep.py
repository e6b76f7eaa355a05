"""Running the matrix once per version of a client package, each in its own cached virtual environment.

A sweep environment holds only the package under test (and what that version
pins); everything else comes from the lab's own environment, added after it on
sys.path, so an environment costs one small pip install and is cached
(~/.cache/pooler-lab/venvs, /var/cache/pooler-lab when root). Each version's run
brings up its own topology and writes its own rows; the rows carry the installed
version, so the runs can be compared cell by cell.
"""

from __future__ import annotations

import hashlib
import re
import site
import subprocess
import sys
import sysconfig
import venv
from dataclasses import dataclass
from pathlib import Path

from lab.clients.registry import configurations
from lab.errors import LabError
from lab.paths import CACHE_DIR, RESULTS_DIR, ROOT
from lab.topology.runstate import new_run_id

VENVS = CACHE_DIR / "venvs"
_SPEC = re.compile(r"^(?P<dist>[A-Za-z0-9_.-]+)(?P<extras>\[[^\]]+\])?(?:==(?P<version>[^,;\s]+))?$")


@dataclass(frozen=True)
class Spec:
    dist: str  # as the rows name it (psycopg, asyncpg, sqlalchemy)
    extras: str
    version: str | None  # None: the newest the index offers

    @classmethod
    def parse(cls, text: str) -> Spec:
        m = _SPEC.match(text.strip())
        if not m:
            raise LabError(
                f"{text!r}: give a package as NAME or NAME==VERSION (e.g. asyncpg==0.29.0, 'psycopg[binary]==3.1.20')"
            )
        return cls(m.group("dist").lower(), m.group("extras") or "", m.group("version"))

    @property
    def requirement(self) -> str:
        return f"{self.dist}{self.extras}" + (f"=={self.version}" if self.version else "")

    def clients(self) -> list[str]:
        """The client configurations that run on this package."""
        names = [name for name, c in configurations().items() if self.dist in c.packages and c.runtime == "in-process"]
        if not names:
            known = sorted({d for c in configurations().values() if c.runtime == "in-process" for d in c.packages})
            raise LabError(f"no client configuration uses {self.dist!r}; sweepable packages: {', '.join(known)}")
        return names


def environment(spec: Spec, progress=print) -> Path:
    """A cached venv with this package version in front of the lab's own environment; returns its python."""
    key = hashlib.sha256(f"{spec.requirement}|{sys.executable}".encode()).hexdigest()[:10]
    where = VENVS / f"{spec.dist}-{spec.version or 'newest'}-{key}"
    python = where / "bin" / "python"
    stamp = where / ".installed"
    if stamp.exists() and python.exists():
        return python
    progress(f"creating {where} with {spec.requirement} (cached for later sweeps)")
    venv.EnvBuilder(with_pip=True, clear=True).create(where)
    purelib = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    # the lab's own environment after this one: its .pth files (the editable lab) are processed too
    ours = sysconfig.get_paths()["purelib"]
    (purelib / "zz-pooler-lab-main.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", spec.requirement],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise LabError(f"pip install {spec.requirement} failed:\n{done.stderr.strip()[-1500:]}")
    stamp.write_text(spec.requirement + "\n")
    return python


def installed_version(python: Path, dist: str) -> str:
    out = subprocess.run(
        [str(python), "-c", f"from importlib.metadata import version; print(version({dist!r}))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def run(
    specs: list[Spec],
    scenarios: str | None,
    results: Path = RESULTS_DIR,
    progress=print,
    backend: str = "native",
    topologies: str | None = None,
) -> list[tuple[Spec, str, Path, int]]:
    """One matrix run per spec; returns (spec, installed version, rows file, pytest exit code)."""
    out = []
    for spec in specs:
        clients = spec.clients()
        python = environment(spec, progress)
        version = installed_version(python, spec.dist)
        run_id = f"{new_run_id()}-sweep-{spec.dist}-{version}"
        progress(f"sweep: {spec.dist} {version}: {len(clients)} client configurations ({', '.join(clients)})")
        args = [
            str(python),
            "-m",
            "pytest",
            str(ROOT / "experiments" / "test_matrix.py"),
            "-q",
            "-p",
            "no:warnings",
            f"--lab-clients={','.join(clients)}",
            f"--lab-run-id={run_id}",
            f"--lab-results={results}",
            f"--lab-backend={backend}",
        ]
        if scenarios:
            args.append(f"--lab-scenarios={scenarios}")
        if topologies:
            args.append(f"--lab-topologies={topologies}")
        code = subprocess.run(args, cwd=ROOT).returncode
        out.append((spec, version, results / "runs" / f"{run_id}.jsonl", code))
    return out


__all__ = ["Spec", "environment", "run", "site"]
