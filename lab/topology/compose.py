"""Reading compose/docker-compose.yml and compose/.env: the one description of the topology.

The Docker backend hands the file to `docker compose`; the native backend reads it
here, so pool modes, pool sizes, initdb arguments and mounted config files are
stated once. Compose-style variable interpolation is reproduced for the few forms
the file uses (``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``, ``${VAR:?error}``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from dotenv import dotenv_values

from lab.errors import ConfigError, UnknownName
from lab.paths import COMPOSE_DIR

COMPOSE_FILE = "docker-compose.yml"
ENV_FILE = ".env"

_VAR = re.compile(r"\$(?:\$|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\})")

#: Settings in .env that must be whole numbers, with the smallest sensible value.
INTEGER_SETTINGS = {
    "POSTGRES_MAX_CONNECTIONS": 5,
    "PGBOUNCER_TRANSACTION_POOL_SIZE": 1,
    "PGBOUNCER_SESSION_POOL_SIZE": 1,
    "PGBOUNCER_MAX_CLIENT_CONN": 1,
    "LAB_DIRECT_PORT": 1,
    "LAB_TRANSACTION_PORT": 1,
    "LAB_SESSION_PORT": 1,
    "POSTGREST_POOL_SIZE": 1,
    "LAB_PREPARED_PORT": 1,
    "LAB_REST_HTTP_PORT": 1,
    "LAB_REST_HTTPS_PORT": 1,
    "LAB_POSTGREST_PORT": 1,
}

#: The mount that carries the run's generated TLS files rather than a template.
TLS_MOUNT = "tls"


def interpolate(text: str, env: Mapping[str, str], where: str = "compose file") -> str:
    def replace(m: re.Match[str]) -> str:
        name = m.group("name")
        if name is None:  # "$$" is a literal dollar
            return "$"
        op, arg = m.group("op"), m.group("arg") or ""
        value = env.get(name)
        unset = value is None or (op is not None and op.startswith(":") and value == "")
        if op in (":-", "-") and unset:
            return arg
        if op in (":?", "?") and unset:
            raise ConfigError(f"{where}: variable {name} is required: {arg}")
        if value is None:
            raise ConfigError(f"{where}: variable {name} is not set")
        return value

    return _VAR.sub(replace, text)


def _interpolate_tree(node: object, env: Mapping[str, str], where: str) -> object:
    if isinstance(node, str):
        return interpolate(node, env, where)
    if isinstance(node, list):
        return [_interpolate_tree(n, env, where) for n in node]
    if isinstance(node, dict):
        return {k: _interpolate_tree(v, env, where) for k, v in node.items()}
    return node


#: settings the shell's environment may override (the versions of the servers the lab builds)
FROM_ENVIRONMENT = ("PGBOUNCER_NEW_VERSION",)


def load_settings(compose_dir: Path = COMPOSE_DIR) -> dict[str, str]:
    """compose/.env, checked: the integer settings must be integers in range."""
    path = compose_dir / ENV_FILE
    if not path.is_file():
        raise ConfigError(f"{path}: settings file is missing")
    settings = {k: v for k, v in dotenv_values(path).items() if v is not None}
    for key, minimum in INTEGER_SETTINGS.items():
        if key not in settings:
            raise ConfigError(f"{path}: setting {key} is missing")
        try:
            value = int(settings[key])
        except ValueError:
            raise ConfigError(f"{path}: {key}={settings[key]!r} is not a whole number") from None
        if value < minimum:
            raise ConfigError(f"{path}: {key}={value} is below the minimum {minimum}")
        if key.endswith("_PORT") and value > 65535:
            raise ConfigError(f"{path}: {key}={value} is not a TCP port (1-65535)")
    return settings


@dataclass(frozen=True)
class Mount:
    """A rendered config file and where the service expects it."""

    rendered: str  # path relative to the rendered-config directory
    target: str  # path inside the container


@dataclass(frozen=True)
class Service:
    name: str
    role: str  # "server" | "pooler" | "rest" | "gateway"
    topology: str  # the topology name clients use to reach this service
    container_ports: tuple[int, ...]  # the first is the service's main port; a second, its TLS port
    environment: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    mounts: tuple[Mount, ...] = ()
    profiles: tuple[str, ...] = ()  # compose profiles: such services start only when asked for
    #: per port: (the variable publishing it on the host, the variable of the port it listens on in its container)
    port_variables: tuple[tuple[str, str], ...] = ()
    #: the services it needs running first (compose's depends_on)
    depends_on: tuple[str, ...] = ()
    #: the image it runs (interpolated with .env: the official set's), and the variable that names it
    image: str | None = None
    image_variable: str | None = None

    @property
    def container_port(self) -> int:
        return self.container_ports[0]

    @property
    def kind(self) -> str:
        """The service kind (lab.topology.services) that starts and describes it: its `lab.kind` label."""
        return self.labels["lab.kind"]

    @property
    def templated_mounts(self) -> tuple[Mount, ...]:
        return tuple(m for m in self.mounts if m.rendered != TLS_MOUNT)

    @property
    def pool_mode(self) -> str | None:
        return self.labels.get("lab.pool_mode")

    @property
    def pool_size(self) -> int | None:
        size = self.labels.get("lab.pool_size")
        return int(size) if size is not None else None


@dataclass(frozen=True)
class ComposeTopology:
    services: dict[str, Service]
    settings: dict[str, str]
    compose_dir: Path

    @property
    def server(self) -> Service:
        return next(s for s in self.services.values() if s.role == "server")

    @property
    def poolers(self) -> list[Service]:
        return [s for s in self.services.values() if s.role == "pooler"]

    def with_role(self, role: str) -> list[Service]:
        return [s for s in self.services.values() if s.role == role]

    def by_topology(self) -> dict[str, Service]:
        return {s.topology: s for s in self.services.values()}

    def in_start_order(self) -> list[Service]:
        """The services in the order they depend on each other: the server, the poolers, the REST tier, its gateway,
        then what routes to the poolers."""
        return sorted(self.services.values(), key=lambda s: ROLE_ORDER.index(s.role))

    def serving(self, topologies: Iterable[str], names: Callable[[Service], list[str]]) -> ComposeTopology:
        """Only what the named topologies need: the server, each service whose endpoints (`names`) or whose
        `lab.fronts` label (the in-process routers in front of it) name one of them, and what those depend on. A run
        narrowed to a few topologies starts (and builds) nothing else."""
        wanted = set(topologies)
        keep = {self.server.name}
        for svc in self.services.values():
            if wanted & {*names(svc), *svc.labels.get("lab.fronts", "").split()}:
                keep.add(svc.name)
        todo = list(keep)
        while todo:
            for dep in self.services[todo.pop()].depends_on:
                if dep in self.services and dep not in keep:
                    keep.add(dep)
                    todo.append(dep)
        return replace(self, services={n: s for n, s in self.services.items() if n in keep})


#: The roles of the compose file's services (the `lab.role` label), in start order.
ROLE_ORDER = ("server", "pooler", "rest", "gateway", "tenant-router")

_RENDERED_MARK = "\0rendered\0"
#: Per-run values the compose file requires; `lab render` writes them to secrets.env.
SECRET_NAMES = (
    "LAB_SUPERUSER_PASSWORD",
    "LAB_AUTHENTICATOR_PASSWORD",
    "LAB_JWT_SECRET",
    "LAB_SUPAVISOR_SECRET_KEY_BASE",
    "LAB_SUPAVISOR_VAULT_KEY",
    "LAB_SUPAVISOR_MODEL_SECRETS",
)
#: a published port: "127.0.0.1:${LAB_X_PORT-5432}:${LAB_X_LISTEN:-5432}"
_PORT_SPEC = re.compile(r"\$\{(?P<published>LAB_\w+)-\d*\}:\$\{(?P<listen>LAB_\w+):-\d+\}$")


def _parse_mount(spec: str, service: str) -> Mount | None:
    parts = spec.split(":")
    if len(parts) < 2 or not parts[0].startswith(_RENDERED_MARK):
        return None
    return Mount(rendered=parts[0][len(_RENDERED_MARK) :].lstrip("/"), target=parts[1])


def _container_ports(ports: list[str], service: str) -> tuple[int, ...]:
    if not ports:
        raise ConfigError(f"{COMPOSE_FILE}: service {service} publishes no port")
    return tuple(int(str(p).rsplit(":", 1)[1].split("/")[0]) for p in ports)


def _image_variable(raw: object, service: str) -> str | None:
    """The variable an `image: ${VARIABLE:-default}` names: what images.local.env sets for the local set."""
    if raw is None:
        return None
    m = _VAR.fullmatch(str(raw))
    if not m or not m.group("name"):
        raise ConfigError(f"service {service}: its image must be named by a variable (image: ${{NAME:-default}})")
    return m.group("name")


def _port_variables(raw_ports: list[str], service: str) -> tuple[tuple[str, str], ...]:
    """The variables of each port, read from the file before interpolation: the Docker backend sets them per run
    (host networking: the listen ports it picked; bridge: an empty published port, for Compose to choose)."""
    out = []
    for spec in raw_ports:
        m = _PORT_SPEC.search(str(spec))
        if m is None:
            raise ConfigError(
                f"{COMPOSE_FILE}: service {service}: port {spec!r} is not "
                '"127.0.0.1:${LAB_<NAME>_PORT-<port>}:${LAB_<NAME>_LISTEN:-<port>}"'
            )
        out.append((m["published"], m["listen"]))
    return tuple(out)


def load(
    compose_dir: Path = COMPOSE_DIR, secrets: Mapping[str, str] | None = None, profiles: tuple[str, ...] = ()
) -> ComposeTopology:
    """The compose file, interpolated with .env and the run's secrets.

    The rendered-config directory is replaced by a marker, so mounts are returned
    relative to it whatever directory a backend renders into.
    """
    settings = load_settings(compose_dir)
    # as Compose does, the shell's environment overrides .env, here only for the versions the lab builds (a sweep
    # over PgBouncer releases: build-pgbouncer --tarball, then PGBOUNCER_NEW_VERSION=1.23.1 ./pooler-lab run)
    settings.update({k: os.environ[k] for k in FROM_ENVIRONMENT if os.environ.get(k)})
    env = {**settings, **(secrets or {}), "LAB_RENDERED_DIR": _RENDERED_MARK}
    for name in SECRET_NAMES:
        env.setdefault(name, "unset")
    path = compose_dir / COMPOSE_FILE
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    doc: dict[str, Any] = _interpolate_tree(raw, env, str(path)) or {}  # type: ignore[assignment]
    offered = {str(p) for body in doc.get("services", {}).values() for p in body.get("profiles") or ()}
    for wanted in profiles:
        if wanted not in offered:
            raise UnknownName("profile", wanted, offered)
    services: dict[str, Service] = {}
    for name, body in doc.get("services", {}).items():
        service_profiles = tuple(body.get("profiles") or ())
        if service_profiles and not set(service_profiles) & set(profiles):
            continue
        labels = {str(k): str(v) for k, v in (body.get("labels") or {}).items()}
        missing = [label for label in ("lab.kind", "lab.role", "lab.topology") if label not in labels]
        if missing:
            raise ConfigError(f"{path}: service {name} lacks the label(s) {', '.join(missing)}")
        if labels["lab.role"] not in ROLE_ORDER:
            raise ConfigError(
                f"{path}: service {name}: lab.role {labels['lab.role']!r} is not one of {', '.join(ROLE_ORDER)}"
            )
        mounts = tuple(m for v in body.get("volumes", []) if (m := _parse_mount(str(v), name)))
        services[name] = Service(
            name=name,
            role=labels["lab.role"],
            topology=labels["lab.topology"],
            container_ports=_container_ports(body.get("ports", []), name),
            environment={str(k): str(v) for k, v in (body.get("environment") or {}).items()},
            labels=labels,
            mounts=mounts,
            profiles=service_profiles,
            port_variables=_port_variables(raw["services"][name].get("ports", []), name),
            depends_on=tuple(str(d) for d in (body.get("depends_on") or ())),
            image=str(body["image"]) if body.get("image") else None,
            image_variable=_image_variable(raw["services"][name].get("image"), name),
        )
    roles = [s.role for s in services.values()]
    if roles.count("server") != 1 or "pooler" not in roles:
        raise ConfigError(f"{path}: expected one service with lab.role=server and at least one pooler")
    return ComposeTopology(services=services, settings=settings, compose_dir=compose_dir)
