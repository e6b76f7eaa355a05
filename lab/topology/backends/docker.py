"""The compose topology from the official images, where a Docker engine answers.

The same compose file and the same rendered templates as the native backend
(lab.topology.render with Placement.docker), brought up with testcontainers' DockerCompose
(`docker compose ... up --wait`), on free host ports chosen per run and passed to
compose through the run's env file, under a project name of the run's own so that
`lab down` and later runs can remove what a killed run left.
"""

from __future__ import annotations

import functools
import json
from typing import Any
import os
import urllib.request
from pathlib import Path

import psycopg

from lab.paths import COMPOSE_DIR
from lab.topology.compose import ENV_FILE, COMPOSE_FILE, load
from lab.topology.render import Credentials, Placement, api_keys, render, write_compose_secrets
from lab.errors import MissingDependency
from lab.topology.ports import HOST, free_ports
from lab.topology.runstate import RunState
from lab.topology.services import endpoint_facts, pgbouncer_version, server_version
from lab.topology.backends import Backend
from lab.topology.model import Endpoint, Topology

# compose's published-port variables, per service: the lab sets them to free ports
PORT_VARIABLES = {
    "postgres": ["LAB_DIRECT_PORT"],
    "pgbouncer-transaction": ["LAB_TRANSACTION_PORT"],
    "pgbouncer-session": ["LAB_SESSION_PORT"],
    "pgbouncer-prepared": ["LAB_PREPARED_PORT"],
    "pgbouncer-prepared-off": ["LAB_PREPARED_OFF_PORT"],
    "pgbouncer-ignoring": ["LAB_IGNORING_PORT"],
    "postgrest": ["LAB_POSTGREST_PORT"],
    "nginx": ["LAB_REST_HTTP_PORT", "LAB_REST_HTTPS_PORT"],
    "supavisor": ["LAB_SUPAVISOR_PORT"],
}


def _engine() -> tuple[bool, str]:
    """Does a Docker engine answer? (answers, what it is or why not)"""
    try:
        import docker
    except ImportError:
        return False, "the docker SDK is not installed (pip install 'pooler-lab[docker]')"
    try:
        client = docker.from_env(timeout=3)
        try:
            client.ping()
            return True, f"Docker engine {client.version().get('Version', '?')}"
        finally:
            client.close()
    except Exception as exc:  # noqa: BLE001 - any failure means: no engine to use
        return False, f"no Docker engine answers ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})"


def compose_v2() -> tuple[bool, str]:
    """Is the Compose v2 plugin there (`docker compose`, which the compose file and testcontainers need)?
    Debian's docker.io gives an engine without it; Compose v1 (`docker-compose` 1.x) cannot read the file."""
    import shutil
    import subprocess

    docker_cli = shutil.which("docker")
    if docker_cli is None:
        return False, "no `docker` command"
    try:
        done = subprocess.run([docker_cli, "compose", "version", "--short"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"`docker compose version` failed ({exc})"
    version = done.stdout.strip().lstrip("v")
    if done.returncode != 0 or not version[:1].isdigit() or int(version.split(".")[0]) < 2:
        return False, "the Compose v2 plugin (`docker compose`) is not installed"
    return True, f"Compose {version}"


@functools.cache
def engine_status() -> tuple[bool, str]:
    """(usable, why or what): an engine answers and Compose v2 is there. Asked once per process:
    choosing the backend and reporting the choice must not ask twice."""
    ok, engine = _engine()
    if not ok:
        return False, engine
    ok, compose = compose_v2()
    if not ok:
        return False, f"{engine} answers, but {compose}"
    return True, f"{engine}, {compose}"


def choose(backend: str) -> str:
    """native | docker | auto → the backend to use; auto picks Docker when an engine answers and Compose v2 is there."""
    if backend not in ("native", "docker", "auto"):
        raise ValueError(backend)
    if backend == "auto":
        return "docker" if engine_status()[0] else "native"
    if backend == "docker":
        ok, why = engine_status()
        if not ok:
            raise MissingDependency(f"--backend docker: {why}; use --backend native (the default where no engine runs)")
    return backend


class DockerBackend(Backend):
    name = "docker"

    def __init__(self, compose_dir: Path = COMPOSE_DIR, progress=None, run_id: str | None = None, profiles: tuple[str, ...] = ()) -> None:  # type: ignore[no-untyped-def]
        self.compose_dir, self.run_id, self.profiles = compose_dir, run_id, profiles
        super().__init__(progress)
        self.state: RunState | None = None
        self.compose: Any = None

    def start(self) -> Topology:
        from testcontainers.compose import DockerCompose

        self.reap()
        self.state = state = RunState.create(persistent=False, run_id=self.run_id)
        creds = Credentials.generate()
        topo = load(self.compose_dir, creds.compose_secrets(), profiles=self.profiles)
        rendered = state.directory / "config"
        render(topo, Placement.docker(topo), creds, rendered)
        secrets = write_compose_secrets(creds, rendered)
        variables = [var for svc in topo.services for var in PORT_VARIABLES.get(svc, [])]
        host_ports = dict(zip(variables, free_ports(len(variables))))
        with open(secrets, "a") as f:
            f.writelines(f"{var}={port}\n" for var, port in host_ports.items())
        project = f"pooler-lab-{state.run_id}".lower()
        os.environ["COMPOSE_PROJECT_NAME"] = project
        state.topology = {"compose_project": project}
        state.save()
        self.compose = DockerCompose(
            context=str(self.compose_dir), compose_file_name=COMPOSE_FILE, env_file=[str(self.compose_dir / ENV_FILE), str(secrets)],
            wait=True, profiles=list(self.profiles) or None,
        )
        self.progress(f"docker compose up ({project})")
        self.compose.start()
        return self._describe(topo, creds, host_ports, rendered)

    def _describe(self, topo, creds: Credentials, host_ports: dict[str, int], rendered: Path) -> Topology:  # type: ignore[no-untyped-def]
        assert self.state is not None
        direct_port = host_ports["LAB_DIRECT_PORT"]
        with psycopg.connect(host=HOST, port=direct_port, user=creds.superuser, password=creds.superuser_password, dbname="postgres",
                             connect_timeout=10) as conn:
            base = {"backend": self.name, "server_version": server_version(conn)}
        endpoints: dict[str, Endpoint] = {}
        for svc in topo.services.values():
            ports = [host_ports[v] for v in PORT_VARIABLES.get(svc.name, [])]
            if svc.role == "server":
                facts = endpoint_facts(svc, base)
            elif svc.role == "pooler":
                facts = endpoint_facts(svc, base, pgbouncer_version(HOST, ports[0], creds.superuser, creds.superuser_password))
            elif svc.role == "gateway":
                keys = api_keys(creds)
                server, gateway = _http_versions(f"http://{HOST}:{ports[0]}/rest/v1/", keys["anon"])
                endpoints[svc.topology] = Endpoint(
                    topology=svc.topology, host=HOST, port=ports[0], tls_port=ports[1], database="postgres", user="", password="",
                    keys=keys, ca_file=str(rendered / "tls" / "ca.crt"),
                    facts={**base, "gateway": gateway, "rest_server": server, "stand_in": False, "path": "/rest/v1/"},
                )
                continue
            else:
                continue
            endpoints[svc.topology] = Endpoint(svc.topology, HOST, ports[0], "postgres", creds.app_user, creds.app_password, facts)
        topology = Topology(self.state.run_id, self.name, endpoints, creds.superuser, creds.superuser_password)
        self.state.topology = {"compose_project": os.environ.get("COMPOSE_PROJECT_NAME"), **topology.to_dict()}
        self.state.save()
        return topology

    def stop(self) -> None:
        if self.compose is not None:
            try:
                self.compose.stop(down=True)
            finally:
                self.compose = None
        if self.state is not None:
            self.state.stop()
            self.state = None


def _http_versions(url: str, key: str) -> tuple[str, str]:
    """(REST server, gateway) as their Server headers name them."""
    request = urllib.request.Request(url, headers={"apikey": key, "Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        body = json.loads(resp.read() or b"{}")
        gateway = resp.headers.get("Server", "nginx")
    version = (body.get("info") or {}).get("version")
    return (f"PostgREST {version}" if version else "PostgREST"), gateway


def down_project(project: str) -> list[str]:
    """Remove a compose project a run of this backend started (also after the run was killed)."""
    import shutil
    import subprocess

    if not shutil.which("docker"):
        return []
    done = subprocess.run(["docker", "compose", "-p", project, "down", "-v", "--remove-orphans"], capture_output=True, timeout=120)
    return [f"compose project {project}"] if done.returncode == 0 else []
