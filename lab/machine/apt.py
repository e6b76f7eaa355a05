"""Debian packages the lab installs when it needs them (build dependencies, client runtimes), as root or through
password-less sudo; otherwise one line saying which `apt-get install` to run."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable

from lab.errors import MissingDependency


def installed(package: str) -> bool:
    done = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True)
    return done.returncode == 0 and done.stdout.endswith("installed")


def install_missing(packages: Iterable[str], why: str) -> None:
    """Install those of `packages` that are missing, or raise MissingDependency with the command to run."""
    missing = [p for p in packages if not installed(p)]
    if not missing:
        return
    if shutil.which("apt-get") is None:
        raise MissingDependency(f"{why} needs {' '.join(missing)}; install them with your package manager")
    if os.geteuid() == 0:
        sudo: list[str] = []
    elif shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0:
        sudo = ["sudo", "-n"]
    else:
        raise MissingDependency(f"{why} needs {' '.join(missing)}: run `sudo apt-get install {' '.join(missing)}`")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    done = subprocess.run(
        [*sudo, "apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
        capture_output=True,
        text=True,
        env=env,
    )
    if done.returncode != 0:
        # the package lists may be stale or absent on a fresh machine: refresh them once and try again
        subprocess.run([*sudo, "apt-get", "update", "-qq"], capture_output=True, env=env)
        done = subprocess.run(
            [*sudo, "apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
            capture_output=True,
            text=True,
            env=env,
        )
    if done.returncode != 0:
        raise MissingDependency(f"apt-get install {' '.join(missing)} ({why}) failed: {done.stderr.strip()[-300:]}")
