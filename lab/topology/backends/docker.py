"""The compose topology in containers, where a Docker engine with Compose v2 answers.

The same compose file and the same rendered templates as the native backend
(lab.topology.render with Placement.docker), brought up with testcontainers'
DockerCompose (`docker compose ... up --wait`) under a project name of the run's own,
so that `lab down` and later runs can remove what a killed run left.

Two network modes, chosen by what the engine has:
- bridge (an engine as installed by most distributions): Compose publishes every
  service on 127.0.0.1 at a port of its choosing (the run leaves LAB_*_PORT empty), and
  the lab reads the ports back;
- host (an engine started without a bridge, as on machines that must keep traffic on
  127.0.0.1): no port can be published, so each service listens on 127.0.0.1 at a port
  the lab picks for the run (LAB_*_LISTEN) and compose/docker-compose.host.yml puts
  every container on the host's network.

Servers write their logs into the run's logs/ directory (mounted at /lab-logs), so the
server view and the login counts read them as they do natively.
"""

from __future__ import annotations

import logging
import subprocess
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import docker
from testcontainers.compose import DockerCompose

from lab.errors import MissingDependency, StartupError
from lab.machine.docker_engine import compose_command
from lab.paths import COMPOSE_DIR
from lab.topology.backends import Backend, Progress
from lab.topology.backends import images as docker_images
from lab.topology.compose import COMPOSE_FILE, ENV_FILE, ComposeTopology, load
from lab.topology.model import Endpoint, EndpointFacts, Topology
from lab.topology.ports import HOST, free_ports
from lab.topology.render import Credentials, Placement, logs_dir, render, write_compose_secrets
from lab.topology.runstate import RunState
from lab.topology.services import kind_of
from lab.topology.services.base import DockerSite

HOST_NETWORK_FILE = "docker-compose.host.yml"
# testcontainers logs a failed compose command's whole output at ERROR (stderr, outside pytest); the lab turns it into
# one line of its own (DockerBackend._cause), so the library's copy stays quiet
logging.getLogger("testcontainers.compose.compose").setLevel(logging.CRITICAL)


@dataclass
class LabCompose(DockerCompose):
    """testcontainers' DockerCompose with the run's project name and the Compose v2 the lab found: the system's
    `docker compose`, or the plugin binary in the lab's cache (called by its path, without the `compose` word)."""

    project: str = ""
    cli: tuple[str, ...] = ("docker", "compose")

    @cached_property
    def compose_command_property(self) -> list[str]:
        library = DockerCompose.compose_command_property.func(self)  # type: ignore[attr-defined]
        return [*self.cli, "-p", self.project, *library[2:]]  # library[:2] is ["docker", "compose"]


class DockerBackend(Backend):
    name = "docker"

    def __init__(
        self,
        compose_dir: Path = COMPOSE_DIR,
        progress: Progress | None = None,
        run_id: str | None = None,
        profiles: tuple[str, ...] = (),
        images: str = "auto",
        persistent: bool = False,
    ) -> None:
        self.compose_dir, self.run_id, self.profiles, self.images = compose_dir, run_id, profiles, images
        self.persistent = persistent  # `up`: the containers outlive the command, until `down`
        super().__init__(progress)
        self.state: RunState | None = None
        self.compose: LabCompose | None = None
        self.client: Any = None
        self.image_names: dict[str, str] = {}
        self.host_network = False

    def start(self) -> Topology:
        self.reap()
        found = compose_command()
        if found is None:
            raise MissingDependency(
                "Compose v2 (`docker compose`) is not installed: `./pooler-lab docker start` fetches it"
            )
        self.client = client = docker.from_env()
        images = docker_images.prepare(client, self.images, self.profiles, self.progress)
        self.host_network = host_network = not client.networks.list(names=["bridge"])
        self.state = state = RunState.create(persistent=self.persistent, run_id=self.run_id)
        creds = Credentials.generate()
        described = load(self.compose_dir, creds.compose_secrets(), profiles=self.profiles)
        run_env = self._placement_env(described, host_network)
        topo = load(self.compose_dir, {**creds.compose_secrets(), **run_env}, profiles=self.profiles)
        rendered = state.directory / "config"
        render(topo, Placement.docker(topo, host_network), creds, rendered, shared=True)
        env_file = write_compose_secrets(creds, rendered, logs_dir(state.directory / "logs"), run_env)
        project = "pooler-lab-" + state.run_id.lower().replace(".", "-")
        state.topology = {"compose_project": project, "compose_cli": list(found[0])}
        state.save()  # before `up`: a run killed during it is cleaned up by the next
        local_env = docker_images.env_file(images)
        self.compose = LabCompose(
            context=str(self.compose_dir),
            compose_file_name=[COMPOSE_FILE, *([HOST_NETWORK_FILE] if host_network else [])],
            env_file=[str(self.compose_dir / ENV_FILE), *([str(local_env)] if local_env else []), str(env_file)],
            profiles=list(self.profiles) or None,
            wait=True,
            project=project,
            cli=tuple(found[0]),
        )
        self.progress(f"docker compose up ({project}; {images} images; {'host' if host_network else 'bridge'} network)")
        try:
            self.compose.start()
        except subprocess.CalledProcessError as exc:
            raise StartupError(f"docker compose up failed: {self._cause(exc)}") from None
        self.image_names = {
            c.labels.get("com.docker.compose.service", ""): c.attrs["Config"]["Image"] for c in self._containers()
        }
        ports = (
            {pv: int(run_env[lv]) for s in topo.services.values() for pv, lv in s.port_variables}
            if host_network
            else {
                pv: int(self.compose.get_service_port(s.name, port))  # type: ignore[arg-type]
                for s in topo.services.values()
                for (pv, _), port in zip(s.port_variables, s.container_ports, strict=True)
            }
        )
        return self._describe(topo, creds, ports, rendered, images)

    @staticmethod
    def _placement_env(topo: ComposeTopology, host_network: bool) -> dict[str, str]:
        """The run's port and address variables: picked listen ports on the host's network; else empty published
        ports, which Compose fills."""
        if host_network:
            listen = [lv for s in topo.services.values() for _, lv in s.port_variables]
            return {
                **dict(zip(listen, map(str, free_ports(len(listen))), strict=True)),
                "LAB_DB_HOST": HOST,
                "LAB_LISTEN_ADDRESS": HOST,
            }
        return {pv: "" for s in topo.services.values() for pv, _ in s.port_variables}

    def _cause(self, exc: subprocess.CalledProcessError) -> str:
        """One line: Compose's last complaint, and the end of the log of a container that failed."""
        text = (exc.stderr or b"").decode(errors="replace") + (exc.stdout or b"").decode(errors="replace")
        lines = [
            line.strip()
            for line in text.splitlines()
            if line.strip() and not line.strip().startswith(("Container ", "Network "))
        ]
        cause = lines[-1] if lines else f"exit status {exc.returncode}"
        for container in self._containers(all_states=True):
            if (
                container.status != "running"
                or (container.attrs.get("State", {}).get("Health", {}) or {}).get("Status") == "unhealthy"
            ):
                cause += f"; {container.labels.get('com.docker.compose.service')} ({container.status}) log ends: {_log_tail(container, 2)}"
                break
        return cause

    def _containers(self, all_states: bool = False) -> list[Any]:
        if self.client is None or self.state is None or not self.state.topology:
            return []
        project = self.state.topology.get("compose_project")
        return list(
            self.client.containers.list(all=all_states, filters={"label": f"com.docker.compose.project={project}"})
        )

    def dead_server(self) -> str | None:
        """A container of the run that stopped while the run measures; None while all run."""
        for container in self._containers(all_states=True):
            if container.status not in ("running", "created"):
                code = container.attrs.get("State", {}).get("ExitCode")
                tail = _log_tail(container, 3)
                return (
                    f"container {container.labels.get('com.docker.compose.service')} {container.status} (exit code {code})"
                    + (f"; its log ends: {tail}" if tail else "")
                )
        return None

    def _image(self, service: str) -> str:
        from lab.topology.backends.images import describe

        tag = self.image_names.get(service)
        return describe(self.client, tag) if tag else "unknown"

    def _describe(
        self, topo: ComposeTopology, creds: Credentials, ports: dict[str, int], rendered: Path, images: str
    ) -> Topology:
        """Each service's kind reads its version and facts from the running containers: the same facts a native
        run's rows carry, plus the images."""
        assert self.state is not None
        site = DockerSite(
            topo,
            creds,
            ports,
            self._image,
            self.host_network,
            str(rendered / "tls" / "ca.crt"),
            self.progress,
            EndpointFacts(self.name, images=images),
        )
        endpoints: dict[str, Endpoint] = {}
        for svc in topo.in_start_order():
            offered = kind_of(svc).docker(svc, site)
            endpoints.update(offered)
            if svc.role == "server":  # every later endpoint names the server and its image too
                facts = offered[svc.topology].facts
                site.base = site.base.with_(server_version=facts.server_version, server_image=facts.server_image)
        topology = Topology(self.state.run_id, self.name, endpoints, creds.superuser, creds.superuser_password)
        self.state.topology = {**(self.state.topology or {}), **topology.to_dict()}
        self.state.save()
        return topology

    def stop(self) -> None:
        """`docker compose down --volumes`, then the run directory; also after a failed `up`."""
        try:
            if self.compose is not None:
                try:
                    self.compose.stop(down=True)
                    if self.state is not None and self.state.topology:
                        self.state.topology.pop("compose_project", None)  # down already: RunState.stop need not again
                except subprocess.CalledProcessError as exc:
                    self.progress(f"docker compose down failed: {self._cause(exc)}")  # RunState.stop tries once more
                self.compose = None
        finally:
            if self.state is not None:
                self.state.stop()
                self.state = None
            if self.client is not None:
                self.client.close()
                self.client = None


def _log_tail(container: Any, lines: int) -> str:
    """The last non-empty lines of a container's log, on one line."""
    text = container.logs(tail=lines + 3).decode(errors="replace")
    return " | ".join([t for t in text.splitlines() if t.strip()][-lines:])
