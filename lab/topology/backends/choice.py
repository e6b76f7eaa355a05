"""Which backend a run uses: native processes, or Docker where an engine, Compose v2 and the images can be had.

Asked without importing the Docker SDK (an optional extra): only a Docker run imports lab.topology.backends.docker.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from lab.errors import MissingDependency
from lab.machine.docker_engine import compose_command, engine
from lab.paths import CACHE_DIR


@functools.cache
def engine_status() -> tuple[bool, str]:
    """(usable, why or what): an engine answers, Compose v2 is there and the images are here or can be had. Asked once per process:
    choosing the backend and reporting the choice must not ask twice."""
    ok, answer = engine()
    if not ok:
        return False, answer + ("" if "SDK" in answer else "; `./pooler-lab docker start` starts Debian's")
    found = compose_command()
    if found is None:
        return False, (
            f"{answer} answers, but Compose v2 is not installed (`docker compose`; Debian's docker.io has none): "
            "`./pooler-lab docker start` fetches it"
        )
    import docker  # the engine answered, so the SDK is installed

    from lab.topology.backends import images as docker_images

    client = docker.from_env(timeout=5)
    try:
        ok, images = docker_images.obtainable(client)
    finally:
        client.close()
    if not ok:
        return False, f"{answer} and Compose {found[1]} answer, but {images}"
    return True, f"{answer}, Compose {found[1]}, {images}"


#: the backend this user last chose on purpose (--backend native or docker), which auto keeps to
#: (POOLER_LAB_BACKEND_FILE moves it: the lab's own tests keep theirs apart from the user's)
def remembered_file() -> Path:
    return Path(os.environ.get("POOLER_LAB_BACKEND_FILE", CACHE_DIR / "backend"))


def remembered() -> str | None:
    try:
        value = remembered_file().read_text().strip()
    except OSError:
        return None
    return value if value in ("native", "docker") else None


def choose(backend: str) -> str:
    """native | docker | auto → the backend to use. An explicit choice is remembered (per user); auto keeps to the
    user's last explicit choice, and to native when there is none: an engine that some other user started on the
    machine does not change what this user's runs measure. A remembered Docker whose engine no longer answers falls
    back to native (`explain` says why)."""
    if backend not in ("native", "docker", "auto"):
        raise ValueError(backend)
    if backend == "auto":
        return "docker" if remembered() == "docker" and engine_status()[0] else "native"
    if backend == "docker":
        ok, why = engine_status()
        if not ok:
            raise MissingDependency(f"--backend docker: {why}; or use --backend native")
    try:
        remembered_file().parent.mkdir(parents=True, exist_ok=True)
        remembered_file().write_text(backend + "\n")
    except OSError:
        pass  # not remembered: auto stays native
    return backend


def explain(asked: str, chosen: str) -> str:
    """The first line of a run: which backend, and why."""
    if asked != "auto":
        return f"backend: {chosen} (--backend {asked})"
    last = remembered()
    if last is None:
        return f"backend: {chosen} (auto: no backend chosen before; --backend docker chooses and remembers Docker)"
    if last == "docker" and chosen == "native":
        return f"backend: native (auto: your last choice was Docker, but {engine_status()[1]})"
    return f"backend: {chosen} (auto: your last choice, remembered in {remembered_file()})"
