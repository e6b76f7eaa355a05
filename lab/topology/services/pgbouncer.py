"""PgBouncer: the pooler Supabase ran before Supavisor, and the one most applications meet.

Natively: Debian's pgbouncer, or a version the lab builds from a verified source tarball on
first use (`lab.build` label, lab.machine.builds: Debian trixie's 1.24 by default, or any
version `build-pgbouncer --tarball` built). It runs as the
unprivileged user from its rendered pgbouncer.ini. Its version comes from `--version`
natively and from the admin console (SHOW VERSION) in a container, so a row says what
answered. Whether it tracks protocol-level prepared statements follows from its version and
`max_prepared_statements` (`prepared_statements`), which the expectation rules key on.
"""

from __future__ import annotations

import re
import signal
from pathlib import Path

import psycopg
from packaging.version import InvalidVersion, Version

from lab.machine.builds import Recipe, autotools
from lab.topology.compose import Service
from lab.topology.model import Endpoint
from lab.topology.ports import HOST
from lab.topology.services.base import (
    DockerSite,
    NativeSite,
    Progress,
    ServiceKind,
    binary_version,
    debian_binary,
    pg_probe,
    wait_ready,
)

#: PgBouncer's per-connection prefix (C-0x55d..: db/user@127.0.0.1:40000), per run noise
_CONNECTION = re.compile(r"^[CS]-0x[0-9a-f]+: \S+ ")


def prepared_statements(version: str | None, settings: str | None) -> str | None:
    """ "tracked" from 1.21 with max_prepared_statements > 0 (the default is 0 in 1.21-1.23 and 200 from 1.24),
    "not tracked" before 1.21 or with 0; None without a version. A 1.24 with the setting at 0 is held to the same
    rules as 1.18."""
    if not version:
        return None
    try:
        v = Version(version)
    except InvalidVersion:
        return None
    if v < Version("1.21"):
        return "not tracked"
    m = re.search(r"max_prepared_statements\s*=\s*(\d+)", settings or "")
    limit = int(m.group(1)) if m else (200 if v >= Version("1.24") else 0)
    return "tracked" if limit > 0 else "not tracked"


def admin_version(host: str, port: int, user: str, password: str) -> str:
    """The admin console's SHOW VERSION ('PgBouncer 1.18.0' -> '1.18.0'), as an admin_users member."""
    with psycopg.connect(
        host=host,
        port=port,
        user=user,
        password=password,
        dbname="pgbouncer",
        autocommit=True,
        prepare_threshold=None,
        connect_timeout=10,
    ) as conn:
        text = str(conn.execute("SHOW VERSION").fetchone()[0])  # type: ignore[index]
    return text.split()[-1] if text else "unknown"


#: PgBouncer from Debian trixie's source (bookworm ships 1.18), or any release from its tarball (build-pgbouncer)
RECIPE = Recipe(
    "pgbouncer",
    "bin/pgbouncer",
    ("gcc", "make", "pkg-config", "libevent-dev", "libssl-dev"),
    autotools,
    image_files=(("bin/pgbouncer", "pgbouncer"),),  # compose/images/pgbouncer-built, on the 1.18 image's libraries
    tarball_command="./pooler-lab build-pgbouncer --tarball PATH-OR-URL --sha256 HEX",
)


class PgBouncer(ServiceKind):
    name = "pgbouncer"
    family = "pgbouncer"
    # SIGINT is "safe shutdown" and waits for clients, SIGTERM exits at once
    stop_signal = signal.SIGTERM
    death_signal = signal.SIGTERM
    login_pattern = "login attempt:"
    log_events = re.compile(r" (?P<level>WARNING|ERROR|FATAL) (?P<message>.*)")

    def prepared_statements(self, version: str | None, settings: str | None) -> str | None:
        return prepared_statements(version, settings)

    def clean_message(self, message: str) -> str:
        return _CONNECTION.sub("", message)

    recipe = RECIPE

    def binary(self, svc: Service, progress: Progress = print) -> Path:
        """Debian's pgbouncer, or the version the service's `lab.build` label names, built by the lab on first use."""
        return self.built_binary(svc, progress) or debian_binary("pgbouncer", "pgbouncer")

    def native(self, svc: Service, site: NativeSite) -> dict[str, Endpoint]:
        binary = self.binary(svc, site.progress)
        version = binary_version(binary)
        proc = site.spawn(svc, [str(binary), str(site.config(svc, "pgbouncer.ini"))], self)
        probe = pg_probe(site.ports[svc.name], site.creds.app_user, site.creds.app_password)
        wait_ready(proc, probe, svc.name).close()  # type: ignore[attr-defined]
        site.progress(f"pgbouncer {version} ({svc.pool_mode} mode) ready on {HOST}:{site.ports[svc.name]}")
        facts = self.facts(svc, site.base, version, pooler_binary=str(binary))
        return {svc.topology: site.pg_endpoint(svc, facts)}

    def docker(self, svc: Service, site: DockerSite) -> dict[str, Endpoint]:
        port = site.service_ports(svc)[0]
        version = admin_version(HOST, port, site.creds.superuser, site.creds.superuser_password)
        site.progress(f"pgbouncer {version} ({svc.pool_mode} mode) ready on {HOST}:{port}")
        facts = self.facts(svc, site.base, version, image=site.image(svc.name))
        return {svc.topology: site.pg_endpoint(svc.topology, port, facts)}
