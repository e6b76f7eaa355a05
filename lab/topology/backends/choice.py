"""Which backend a run uses: native processes, or Docker where an engine, Compose v2 and the images can be had.

Asked without importing the Docker SDK (an optional extra): only a Docker run imports lab.topology.backends.docker.
"""

from __future__ import annotations

import functools

from lab.errors import MissingDependency
from lab.machine.docker_engine import compose_command, engine


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

    from lab.machine import docker_images

    client = docker.from_env(timeout=5)
    try:
        ok, images = docker_images.obtainable(client)
    finally:
        client.close()
    if not ok:
        return False, f"{answer} and Compose {found[1]} answer, but {images}"
    return True, f"{answer}, Compose {found[1]}, {images}"


def choose(backend: str) -> str:
    """native | docker | auto → the backend to use; auto picks Docker when an engine answers and Compose v2 is there."""
    if backend not in ("native", "docker", "auto"):
        raise ValueError(backend)
    if backend == "auto":
        return "docker" if engine_status()[0] else "native"
    if backend == "docker":
        ok, why = engine_status()
        if not ok:
            raise MissingDependency(f"--backend docker: {why}; or use --backend native")
    return backend
