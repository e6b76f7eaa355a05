"""PostgreSQL: the server every topology ends at.

Natively: Debian's server binaries (initdb, postgres) of the newest major installed, a
cluster initialised per run with the compose file's POSTGRES_INITDB_ARGS, the rendered
postgresql.conf, and the rendered init.sql run once it answers (the official image runs it
from /docker-entrypoint-initdb.d). Its log lines carry their SQLSTATE (log_line_prefix ends
with %e), so the server view reads what the server said beside what a client raised.
"""

from __future__ import annotations

import glob
import os
import re
import shlex
import shutil
import signal
from pathlib import Path

import psycopg

from lab.errors import MissingDependency
from lab.paths import write_private
from lab.topology.compose import Service
from lab.topology.model import Endpoint
from lab.topology.ports import HOST
from lab.topology.processes import give_to, run
from lab.topology.services.base import DockerSite, NativeSite, Progress, ServiceKind, pg_probe, wait_ready


def bindir() -> Path:
    """The newest PostgreSQL server binaries installed (Debian keeps them off PATH)."""

    def major(path: str) -> int:
        part = Path(path).parts[-3]
        return int(part) if part.isdigit() else 0

    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=major)
    if candidates:
        return Path(candidates[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise MissingDependency(
        "PostgreSQL server binaries (initdb, postgres) not found; install them with "
        "`sudo apt-get install postgresql` (./pooler-lab does this for you)"
    )


def server_version(conn: psycopg.Connection) -> str:
    return str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]


class Postgres(ServiceKind):
    name = "postgres"
    # SIGINT is "fast shutdown" (disconnect clients, no waiting), SIGQUIT "immediate shutdown"
    stop_signal = signal.SIGINT
    death_signal = signal.SIGQUIT
    login_pattern = "connection authorized:"
    log_events = re.compile(
        r"\] \S*@\S* (?P<state>[0-9A-Z]{5}) (?P<level>WARNING|ERROR|FATAL|PANIC):\s+(?P<message>.*)"
    )

    def binary(self, svc: Service, progress: Progress = print) -> Path:
        return bindir() / "postgres"

    def native(self, svc: Service, site: NativeSite) -> dict[str, Endpoint]:
        binaries = bindir()
        data = site.rundir / "data"
        self._initdb(binaries, svc, site, data)
        server = site.spawn(
            svc,
            [str(binaries / "postgres"), "-D", str(data), "-c", f"config_file={site.config(svc, 'postgresql.conf')}"],
            self,
        )
        creds = site.creds
        admin = wait_ready(server, pg_probe(site.ports[svc.name], creds.superuser, creds.superuser_password), svc.name)
        assert isinstance(admin, psycopg.Connection)
        with admin:
            admin.execute(site.config(svc, "init.sql").read_text().encode())
            version = server_version(admin)
        site.progress(f"postgres {version} ready on {HOST}:{site.ports[svc.name]}")
        facts = self.facts(svc, site.base, None, server_version=version)
        endpoint = site.pg_endpoint(svc, facts)
        database = svc.environment.get("POSTGRES_DB", "postgres")
        return {svc.topology: endpoint if database == "postgres" else _with_database(endpoint, database)}

    def _initdb(self, binaries: Path, svc: Service, site: NativeSite, data: Path) -> None:
        creds = site.creds
        pwfile = data.parent / "pwfile"
        write_private(pwfile, creds.superuser_password + "\n")
        give_to(site.owner, pwfile)
        args = shlex.split(svc.environment.get("POSTGRES_INITDB_ARGS", ""))
        user = svc.environment.get("POSTGRES_USER", creds.superuser)
        try:
            run(
                [
                    str(binaries / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    user,
                    f"--pwfile={pwfile}",
                    "--no-sync",
                    "--no-instructions",
                    *args,
                ],
                site.owner,
                site.logs / "initdb.log",
                env={"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"},
            )
        finally:
            pwfile.unlink(missing_ok=True)

    def docker(self, svc: Service, site: DockerSite) -> dict[str, Endpoint]:
        port = site.service_ports(svc)[0]
        creds = site.creds
        with psycopg.connect(
            host=HOST,
            port=port,
            user=creds.superuser,
            password=creds.superuser_password,
            dbname="postgres",
            connect_timeout=10,
        ) as conn:
            version = server_version(conn)
        facts = self.facts(svc, site.base, None, server_version=version, server_image=site.image(svc.name))
        return {svc.topology: site.pg_endpoint(svc.topology, port, facts)}


def _with_database(endpoint: Endpoint, database: str) -> Endpoint:
    from dataclasses import replace

    return replace(endpoint, database=database)
