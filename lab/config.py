"""Rendering compose/'s config templates for one run, for either backend.

Both backends render the same templates with the same settings; they differ only in
placement (addresses, ports, paths), which `Placement` states. Nothing in a template
is copied by hand into Python, and a template that names an unknown value fails with
the file and the placeholder named.
"""

from __future__ import annotations

import os
import posixpath
import secrets
from dataclasses import dataclass
from pathlib import Path
from string import Template

from lab.compose import ComposeTopology, Service
from lab.errors import ConfigError


@dataclass(frozen=True)
class Credentials:
    """Per-run passwords: nothing the lab starts has a password known before the run."""

    superuser: str = "postgres"
    superuser_password: str = ""
    app_user: str = "lab_app"
    app_password: str = ""

    @classmethod
    def generate(cls) -> "Credentials":
        return cls(superuser_password=secrets.token_hex(16), app_password=secrets.token_hex(16))

    def values(self) -> dict[str, str]:
        return {
            "SUPERUSER": self.superuser,
            "SUPERUSER_PASSWORD": self.superuser_password,
            "APP_USER": self.app_user,
            "APP_PASSWORD": self.app_password,
        }


@dataclass(frozen=True)
class Placement:
    """Where each service listens and how the others reach it."""

    listen_addresses: str
    ports: dict[str, int]  # service -> port it listens on
    hosts: dict[str, str]  # service -> host name the other services use for it
    socket_dir: str
    config_dirs: dict[str, str]  # service -> directory its config files are read from

    @classmethod
    def docker(cls, topo: ComposeTopology) -> "Placement":
        return cls(
            listen_addresses="*",
            ports={s.name: s.container_port for s in topo.services.values()},
            hosts={s.name: s.name for s in topo.services.values()},
            socket_dir="/var/run/postgresql",
            config_dirs={s.name: posixpath.dirname(s.mounts[0].target) for s in topo.services.values() if s.mounts},
        )

    @classmethod
    def native(cls, topo: ComposeTopology, ports: dict[str, int], rendered_dir: Path, socket_dir: Path) -> "Placement":
        return cls(
            listen_addresses="127.0.0.1",
            ports=ports,
            hosts={s.name: "127.0.0.1" for s in topo.services.values()},
            socket_dir=str(socket_dir),
            config_dirs={s.name: str(rendered_dir / s.name) for s in topo.services.values()},
        )


def service_values(topo: ComposeTopology, service: Service, placement: Placement, creds: Credentials) -> dict[str, str]:
    server = topo.server
    values = {**topo.settings, **creds.values()}
    values.update(
        LISTEN_ADDRESSES=placement.listen_addresses,
        LISTEN_PORT=str(placement.ports[service.name]),
        SOCKET_DIR=placement.socket_dir,
        CONFIG_DIR=placement.config_dirs.get(service.name, ""),
        SERVER_HOST=placement.hosts[server.name],
        SERVER_PORT=str(placement.ports[server.name]),
    )
    if service.pool_mode is not None:
        values["POOL_MODE"] = service.pool_mode
    if service.pool_size is not None:
        values["POOL_SIZE"] = str(service.pool_size)
    return values


def render_template(path: Path, values: dict[str, str]) -> str:
    try:
        return Template(path.read_text()).substitute(values)
    except KeyError as exc:
        raise ConfigError(f"{path}: placeholder ${{{exc.args[0]}}} has no value") from None
    except ValueError as exc:
        raise ConfigError(f"{path}: malformed placeholder: {exc}") from None


def render(topo: ComposeTopology, placement: Placement, creds: Credentials, out_dir: Path) -> dict[str, Path]:
    """Write every mounted file of every service under out_dir; returns rendered path -> file.

    Files hold passwords, so they are readable by their owner only.
    """
    written: dict[str, Path] = {}
    for service in topo.services.values():
        template_dir = service.labels.get("lab.templates")
        if service.mounts and not template_dir:
            raise ConfigError(f"service {service.name} mounts config files but has no lab.templates label")
        values = service_values(topo, service, placement, creds)
        for mount in service.mounts:
            template = topo.compose_dir / template_dir / Path(mount.rendered).name
            if not template.is_file():
                raise ConfigError(f"service {service.name}: template {template} does not exist")
            target = out_dir / mount.rendered
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(render_template(template, values))
            os.chmod(target, 0o600)
            written[mount.rendered] = target
    return written


def write_compose_secrets(creds: Credentials, rendered_dir: Path) -> Path:
    """The env file `docker compose` needs beside compose/.env for a rendered directory."""
    path = rendered_dir / "secrets.env"
    path.write_text(f"LAB_SUPERUSER_PASSWORD={creds.superuser_password}\nLAB_RENDERED_DIR={rendered_dir}\n")
    os.chmod(path, 0o600)
    return path
