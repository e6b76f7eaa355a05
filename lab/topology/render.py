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
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from string import Template

from lab.errors import ConfigError
from lab.paths import write_private
from lab.topology.compose import TLS_MOUNT, ComposeTopology, Service
from lab.topology.scram import role_salt, scram_secret
from lab.topology.tls import make_certificates

#: the application's role again, with `ALTER ROLE ... SET jit = off`: the RCA's setting as a role setting, which
#: no pooler has to pass on (the rca-attempt-*-alter-role configurations log in as it, with the app's password)
JIT_OFF_USER = "lab_app_jit_off"


@dataclass(frozen=True, repr=False)
class Credentials:
    """Per-run passwords: nothing the lab starts has a password known before the run. Its repr names no secret."""

    superuser: str = "postgres"
    superuser_password: str = ""
    app_user: str = "lab_app"
    app_password: str = ""
    authenticator_user: str = "authenticator"
    authenticator_password: str = ""
    jwt_secret: str = ""  # HS256 secret of the REST tier; Supabase's anon/service keys are JWTs signed with it
    supavisor_secret_key_base: str = ""  # Phoenix's SECRET_KEY_BASE (64 characters or more)
    supavisor_vault_key: str = ""  # VAULT_ENC_KEY: Supavisor's AES-256 key, exactly 32 bytes
    #: the run's SCRAM salts come from it (lab.topology.scram): the server and every pooler hold the same secrets
    scram_salt: str = field(default_factory=lambda: secrets.token_hex(16))

    def __repr__(self) -> str:
        return f"Credentials(superuser={self.superuser!r}, app_user={self.app_user!r}, secrets hidden)"

    @classmethod
    def generate(cls) -> Credentials:
        return cls(
            superuser_password=secrets.token_hex(16),
            app_password=secrets.token_hex(16),
            authenticator_password=secrets.token_hex(16),
            jwt_secret=secrets.token_urlsafe(40),
            supavisor_secret_key_base=secrets.token_hex(32),
            supavisor_vault_key=secrets.token_hex(16),
        )

    def scram(self, role: str, password: str) -> str:
        """The role's SCRAM secret for this run: init.sql stores it on the server, userlist.txt gives it to PgBouncer."""
        return scram_secret(password, role_salt(self.scram_salt, role))

    @cached_property
    def _scram_secrets(self) -> dict[str, str]:
        """Each role's secret, computed once (4,096 PBKDF2 rounds each): every service's templates are rendered
        with them."""
        return {
            "SUPERUSER_SCRAM": self.scram(self.superuser, self.superuser_password),
            "APP_SCRAM": self.scram(self.app_user, self.app_password),
            "JIT_OFF_SCRAM": self.scram(JIT_OFF_USER, self.app_password),
        }

    def values(self) -> dict[str, str]:
        """What the templates may name: the roles' SCRAM secrets, never the superuser's or the application's password."""
        return {
            "SUPERUSER": self.superuser,
            "APP_USER": self.app_user,
            "JIT_OFF_USER": JIT_OFF_USER,
            **self._scram_secrets,
            "AUTHENTICATOR_USER": self.authenticator_user,
            "AUTHENTICATOR_PASSWORD": self.authenticator_password,
        }

    def compose_secrets(self) -> dict[str, str]:
        """The values docker-compose.yml requires from secrets.env (lab.topology.compose.SECRET_NAMES)."""
        return {
            "LAB_SUPERUSER_PASSWORD": self.superuser_password,
            "LAB_AUTHENTICATOR_PASSWORD": self.authenticator_password,
            "LAB_JWT_SECRET": self.jwt_secret,
            "LAB_SUPAVISOR_SECRET_KEY_BASE": self.supavisor_secret_key_base,
            "LAB_SUPAVISOR_VAULT_KEY": self.supavisor_vault_key,
            "LAB_SUPAVISOR_MODEL_SECRETS": self.model_secrets(),
        }

    def model_secrets(self) -> str:
        """The roles' SCRAM secrets as the model of Supavisor gets them (what a tenant's auth_query returns): base64 of
        a JSON object, so no `$` of a secret meets an env file's interpolation. Never a password."""
        import base64
        import json

        roles = {self.app_user: self._scram_secrets["APP_SCRAM"], JIT_OFF_USER: self._scram_secrets["JIT_OFF_SCRAM"]}
        return base64.b64encode(json.dumps(roles).encode()).decode()


#: in containers: the run's logs/ directory (servers write their logs there) and PostgreSQL's own copy of the TLS
#: files (the compose file's postgres entrypoint makes it)
CONTAINER_LOG_DIR = "/lab-logs"
CONTAINER_SERVER_TLS_DIR = "/var/lib/postgresql/lab-tls"


@dataclass(frozen=True)
class Placement:
    """Where each service listens and how the others reach it."""

    listen_addresses: str
    ports: dict[str, int]  # service -> port it listens on
    tls_ports: dict[str, int]  # service -> its second (TLS) port, for services that publish two
    hosts: dict[str, str]  # service -> host name the other services use for it
    socket_dir: str
    config_dirs: dict[str, str]  # service -> directory its config files are read from
    tls_dir: str  # where the run's certificate and key are read from
    state_dirs: dict[str, str]  # service -> a writable directory for pid and temp files
    log_dir: str | None = None  # where servers write their own log files; None: the lab captures their stderr
    server_tls_dir: str | None = (
        None  # PostgreSQL's copy of the TLS files (it refuses a key others can read); None: tls_dir
    )

    @classmethod
    def docker(cls, topo: ComposeTopology, host_network: bool = False) -> Placement:
        """In containers. On a bridge network the services reach each other by name and listen on every address;
        on the host's network (docker-compose.host.yml) they listen on 127.0.0.1 at the ports the run picked."""
        tls_targets = {m.target for s in topo.services.values() for m in s.mounts if m not in s.templated_mounts}
        return cls(
            listen_addresses="127.0.0.1" if host_network else "*",
            ports={s.name: s.container_port for s in topo.services.values()},
            tls_ports={s.name: s.container_ports[1] for s in topo.services.values() if len(s.container_ports) > 1},
            hosts={s.name: "127.0.0.1" if host_network else s.name for s in topo.services.values()},
            socket_dir="/var/run/postgresql",
            config_dirs={
                s.name: posixpath.dirname(s.templated_mounts[0].target)
                for s in topo.services.values()
                if s.templated_mounts
            },
            tls_dir=tls_targets.pop() if len(tls_targets) == 1 else "/etc/lab-tls",
            state_dirs={s.name: "/tmp" for s in topo.services.values()},
            log_dir=CONTAINER_LOG_DIR,
            server_tls_dir=CONTAINER_SERVER_TLS_DIR,
        )

    @classmethod
    def native(
        cls,
        topo: ComposeTopology,
        ports: dict[str, int],
        tls_ports: dict[str, int],
        rendered_dir: Path,
        socket_dir: Path,
        state_dir: Path,
    ) -> Placement:
        return cls(
            listen_addresses="127.0.0.1",
            ports=ports,
            tls_ports=tls_ports,
            hosts={s.name: "127.0.0.1" for s in topo.services.values()},
            socket_dir=str(socket_dir),
            config_dirs={s.name: str(rendered_dir / s.name) for s in topo.services.values()},
            tls_dir=str(rendered_dir / TLS_MOUNT),
            state_dirs={s.name: str(state_dir / s.name) for s in topo.services.values()},
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
        TLS_DIR=placement.tls_dir,
        STATE_DIR=placement.state_dirs.get(service.name, ""),
        SERVER_TLS_DIR=placement.server_tls_dir or placement.tls_dir,
        LOG_COLLECTOR="on" if placement.log_dir else "off",
        LOG_DIR=placement.log_dir or "log",
        LOG_FILE=f"{placement.log_dir}/{service.name}.log" if placement.log_dir else "",
    )
    if service.name in placement.tls_ports:
        values["LISTEN_TLS_PORT"] = str(placement.tls_ports[service.name])
    rest = topo.with_role("rest")
    if rest:
        values.update(REST_HOST=placement.hosts[rest[0].name], REST_PORT=str(placement.ports[rest[0].name]))
    values["SETTINGS"] = service.labels.get("lab.settings", "")
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


def render(
    topo: ComposeTopology, placement: Placement, creds: Credentials, out_dir: Path, shared: bool = False
) -> dict[str, Path]:
    """Write every mounted file of every service under out_dir; returns rendered path -> file.

    Files hold passwords, so they are readable by their owner only; with `shared` (for containers, whose servers
    run as users of their own images) they are readable by all, and out_dir itself is the owner's only.
    """
    mode = 0o644 if shared else 0o600
    if shared:
        out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(out_dir, 0o700)
    written: dict[str, Path] = {}
    tls = make_certificates(out_dir / TLS_MOUNT)
    if shared:  # PgBouncer reads the key as its own user; PostgreSQL's copy is made 0600 in its container
        os.chmod(tls.server_key, 0o644)
    written.update({f"{TLS_MOUNT}/{p.name}": p for p in (tls.ca_cert, tls.server_cert, tls.server_key)})
    for service in topo.services.values():
        template_dir = service.labels.get("lab.templates")
        if service.templated_mounts and not template_dir:
            raise ConfigError(f"service {service.name} mounts config files but has no lab.templates label")
        values = service_values(topo, service, placement, creds)
        for mount in service.templated_mounts:
            assert template_dir is not None
            template = topo.compose_dir / template_dir / Path(mount.rendered).name
            if not template.is_file():
                raise ConfigError(f"service {service.name}: template {template} does not exist")
            target = out_dir / mount.rendered
            target.parent.mkdir(parents=True, exist_ok=True)
            write_private(target, render_template(template, values), mode)
            written[mount.rendered] = target
    return written


def logs_dir(path: Path) -> Path:
    """The directory containers write their logs to: any of their users may create a file, none list or remove
    another's (mode 1733)."""
    path.mkdir(exist_ok=True)
    os.chmod(path, 0o1733)
    return path


def write_compose_secrets(
    creds: Credentials, rendered_dir: Path, logs: Path, extra: dict[str, str] | None = None
) -> Path:
    """The env file `docker compose` needs beside compose/.env for a rendered directory (and the run's own values)."""
    path = rendered_dir / "secrets.env"
    values = {
        **creds.compose_secrets(),
        "LAB_RENDERED_DIR": str(rendered_dir),
        "LAB_LOGS_DIR": str(logs),
        **(extra or {}),
    }
    lines = [f"{k}={v}" for k, v in values.items()]
    write_private(path, "\n".join(lines) + "\n")
    return path


def api_keys(creds: Credentials, lifetime_s: int = 86400) -> dict[str, str]:
    """Supabase's anon and service_role keys: HS256 JWTs signed with the run's JWT secret."""
    import time

    import jwt

    now = int(time.time())
    return {
        role: jwt.encode(
            {"iss": "pooler-lab", "role": role, "iat": now, "exp": now + lifetime_s},
            creds.jwt_secret,
            algorithm="HS256",
        )
        for role in ("anon", "service_role")
    }
