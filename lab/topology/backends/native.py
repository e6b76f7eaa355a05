"""The compose topology as local processes: real PostgreSQL, PgBouncer and nginx on 127.0.0.1.

Everything comes from compose/: the services, their roles and pool settings, the
initdb arguments, PostgREST's environment, and the config files (rendered from the
same templates the Docker backend mounts). Only placement differs: free ports, a
per-run directory, and binaries from the Debian packages instead of images. A
service whose binary no registry here provides (PostgREST) runs the module its
`lab.stand_in` label names, with the service's own environment.
"""

from __future__ import annotations

import glob
import http.client
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

from lab.errors import MissingDependency, StartupError
from lab.paths import COMPOSE_DIR, write_private
from lab.topology.backends import Backend
from lab.topology.compose import ComposeTopology, Service, load
from lab.topology.model import Endpoint, Topology
from lab.topology.ports import HOST, ensure_free, free_ports
from lab.topology.processes import RunAs, Server, give_to, run, run_as, run_as_self, system_binary
from lab.topology.render import Credentials, Placement, api_keys, render
from lab.topology.runstate import RunState
from lab.topology.services import endpoint_facts, server_version

READY_TIMEOUT = 30.0
Progress = Callable[[str], None]


def postgres_bindir() -> Path:
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


def _system_binary(name: str, package: str) -> Path:
    found = system_binary(name)
    if found is None:
        raise MissingDependency(
            f"{name} not found; install it with `sudo apt-get install {package}` (./pooler-lab does this for you)"
        )
    return found


def pgbouncer_binary() -> Path:
    return _system_binary("pgbouncer", "pgbouncer")


def nginx_binary() -> Path:
    return _system_binary("nginx", "nginx")


def binary_version(binary: Path) -> str:
    """`pgbouncer --version` → 'PgBouncer 1.18.0' → '1.18.0'; `nginx -v` → 'nginx/1.22.1' → '1.22.1'."""
    flag = "-v" if binary.name == "nginx" else "--version"
    done = subprocess.run([str(binary), flag], capture_output=True, text=True, timeout=10)
    first = (done.stdout or done.stderr).strip().splitlines()
    match = re.search(r"(\d+\.\d+(?:\.\d+)?)", first[0]) if first else None
    return match.group(1) if match else "unknown"


def wait_ready(server: Server, probe: Callable[[], object], what: str, timeout: float = READY_TIMEOUT) -> object:
    """Until a real request succeeds: an open port is not a ready server."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if not server.alive():
            raise StartupError(
                f"{what} exited during start-up (code {server.popen.returncode}); its log ends:\n{server.log_tail()}"
            )
        try:
            return probe()
        # HTTPException: something else answered on the port (another process won it);
        # keep polling, so that our server's own exit and log become the error.
        except (psycopg.Error, OSError, urllib.error.URLError, http.client.HTTPException) as exc:
            last = exc
            time.sleep(0.1)
    raise StartupError(
        f"{what} not ready after {timeout:.0f}s (last error: {last}); its log ends:\n{server.log_tail()}"
    )


def _pg_probe(port: int, user: str, password: str) -> Callable[[], psycopg.Connection]:
    def probe() -> psycopg.Connection:
        conn = psycopg.connect(
            host=HOST,
            port=port,
            user=user,
            password=password,
            dbname="postgres",
            connect_timeout=2,
            autocommit=True,
            prepare_threshold=None,
        )
        conn.execute("SELECT 1")
        return conn

    return probe


def _http_probe(url: str, headers: dict[str, str] | None = None) -> Callable[[], int]:
    def probe() -> int:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=2) as resp:
            return resp.status

    return probe


class NativeBackend(Backend):
    """Starts, describes and stops one run of the topology. Use as a context manager."""

    name = "native"

    def __init__(
        self,
        compose_dir: Path = COMPOSE_DIR,
        fixed_ports: bool = False,
        persistent: bool = False,
        progress: Progress | None = None,
        run_id: str | None = None,
        profiles: tuple[str, ...] = (),
    ) -> None:
        self.run_id = run_id
        self.profiles = profiles
        self.compose_dir = compose_dir
        self.fixed_ports = fixed_ports
        self.persistent = persistent
        super().__init__(progress)
        self.state: RunState | None = None
        self.servers: list[Server] = []
        self.owner: RunAs | None = None

    def start(self) -> Topology:
        self.reap()
        bindir, pgbouncer, nginx = postgres_bindir(), pgbouncer_binary(), nginx_binary()
        creds = Credentials.generate()
        topo = load(self.compose_dir, creds.compose_secrets(), profiles=self.profiles)
        for svc in topo.with_role("tenant-router"):
            raise MissingDependency(
                f"service {svc.name} (profile {', '.join(svc.profiles)}) has no native binary and no stand-in "
                "here: run it with --backend docker (the lab's own tenant router stands in for it natively)"
            )
        binaries = {svc.name: self._pooler_binary(svc, pgbouncer) for svc in topo.poolers}
        ports, tls_ports = self._ports(topo)
        self.owner = owner = run_as()
        self.state = state = RunState.create(persistent=self.persistent, run_id=self.run_id)
        rundir = state.directory
        rendered, logs, sockets, data, states = (rundir / d for d in ("config", "logs", "sockets", "data", "state"))
        for d in (rendered, logs, sockets, states):
            d.mkdir()
        for svc in topo.services.values():
            (states / svc.name).mkdir()
        render(topo, Placement.native(topo, ports, tls_ports, rendered, sockets, states), creds, rendered)
        give_to(owner, rendered, logs, sockets, states)
        if owner.switches:
            os.chown(rundir, owner.uid, owner.gid)

        # -- the server ---------------------------------------------------------------
        server_svc = topo.server
        t0 = time.monotonic()
        self._initdb(bindir, server_svc, creds, data, logs, owner)
        self.progress(f"initdb done ({time.monotonic() - t0:.1f}s)")
        pg = self._spawn(
            "postgres",
            [
                str(bindir / "postgres"),
                "-D",
                str(data),
                "-c",
                f"config_file={rendered / server_svc.name / 'postgresql.conf'}",
            ],
            logs,
        )
        admin = wait_ready(pg, _pg_probe(ports[server_svc.name], creds.superuser, creds.superuser_password), "postgres")
        assert isinstance(admin, psycopg.Connection)
        with admin:
            admin.execute((rendered / server_svc.name / "init.sql").read_text().encode())
            version = server_version(admin)
        self.progress(f"postgres {version} ready on {HOST}:{ports[server_svc.name]}")
        base = {"backend": self.name, "server_version": version}
        endpoints = {server_svc.topology: self._pg_endpoint(server_svc, ports, creds, endpoint_facts(server_svc, base))}

        # -- the poolers --------------------------------------------------------------
        for svc in topo.poolers:
            binary = binaries[svc.name]
            pooler_version = binary_version(binary)
            proc = self._spawn(
                svc.name, [str(binary), str(rendered / svc.name / "pgbouncer.ini")], logs, kind="pgbouncer"
            )
            wait_ready(proc, _pg_probe(ports[svc.name], creds.app_user, creds.app_password), svc.name).close()  # type: ignore[attr-defined]
            facts = {**endpoint_facts(svc, base, pooler_version), "pooler_binary": str(binary)}
            endpoints[svc.topology] = self._pg_endpoint(svc, ports, creds, facts)
            self.progress(f"pgbouncer {pooler_version} ({svc.pool_mode} mode) ready on {HOST}:{ports[svc.name]}")

        # -- the REST tier: stand-in for PostgREST, nginx in front -----------------------
        keys = api_keys(creds)
        for svc in topo.with_role("rest"):
            rest_facts = self._start_rest(svc, topo, ports, logs)
        for svc in topo.with_role("gateway"):
            proc = self._spawn(
                svc.name,
                [
                    str(nginx),
                    "-e",
                    "stderr",
                    "-p",
                    str(states / svc.name),
                    "-c",
                    str(rendered / svc.name / "nginx.conf"),
                ],
                logs,
                kind="nginx",
            )
            wait_ready(
                proc, _http_probe(f"http://{HOST}:{ports[svc.name]}/rest/v1/", {"apikey": keys["anon"]}), svc.name
            )
            gateway = f"nginx {binary_version(nginx)}"
            endpoints[svc.topology] = Endpoint(
                topology=svc.topology,
                host=HOST,
                port=ports[svc.name],
                tls_port=tls_ports[svc.name],
                database="postgres",
                user="",
                password="",
                keys=keys,
                ca_file=str(rendered / "tls" / "ca.crt"),
                facts={**base, **rest_facts, "gateway": gateway, "path": "/rest/v1/"},
            )
            self.progress(
                f"{gateway} -> {rest_facts['rest_server']} ready on http://{HOST}:{ports[svc.name]} and https://{HOST}:{tls_ports[svc.name]}"
            )

        topology = Topology(
            run_id=state.run_id,
            backend=self.name,
            endpoints=endpoints,
            superuser=creds.superuser,
            superuser_password=creds.superuser_password,
        )
        state.topology = topology.to_dict()
        state.save()
        return topology

    def stop(self) -> None:
        """Stop every process of this run (also after a partial start) and remove its directory."""
        for server in reversed(self.servers):
            server.stop()
        self.servers.clear()
        if self.state is not None:
            self.state.stop()
            self.state = None

    # -- steps -----------------------------------------------------------------------
    @staticmethod
    def _pooler_binary(svc: Service, default: Path) -> Path:
        """Debian's pgbouncer, or for services labelled lab.binary=pgbouncer-built the one the lab built."""
        if svc.labels.get("lab.binary") != "pgbouncer-built":
            return default
        from lab.tools.pgbouncer_build import built

        binary = built()
        if binary is None:
            raise MissingDependency(
                f"service {svc.name} needs a PgBouncer with prepared-statement support (1.21+), which Debian bookworm does not "
                "ship; build it once with `./pooler-lab build-pgbouncer` (or pass --prepared-pgbouncer to `run`, which builds it)"
            )
        return binary

    def _ports(self, topo: ComposeTopology) -> tuple[dict[str, int], dict[str, int]]:
        tls_names = [s.name for s in topo.services.values() if len(s.container_ports) > 1]
        picked = iter(free_ports(len(tls_names) + len(topo.services)))
        tls_ports = {name: next(picked) for name in tls_names}
        if not self.fixed_ports:
            return {name: next(picked) for name in topo.services}, tls_ports
        fixed = {
            "direct": int(topo.settings["LAB_DIRECT_PORT"]),
            "pgbouncer-transaction": int(topo.settings["LAB_TRANSACTION_PORT"]),
            "pgbouncer-session": int(topo.settings["LAB_SESSION_PORT"]),
        }
        ports = {}
        for svc in topo.services.values():
            port = fixed.get(svc.topology) or next(picked)
            ensure_free(port, f"{svc.name} ({svc.topology})")
            ports[svc.name] = port
        return ports, tls_ports

    def _initdb(self, bindir: Path, svc: Service, creds: Credentials, data: Path, logs: Path, owner: RunAs) -> None:
        pwfile = data.parent / "pwfile"
        write_private(pwfile, creds.superuser_password + "\n")
        give_to(owner, pwfile)
        args = shlex.split(svc.environment.get("POSTGRES_INITDB_ARGS", ""))
        user = svc.environment.get("POSTGRES_USER", creds.superuser)
        try:
            run(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    user,
                    f"--pwfile={pwfile}",
                    "--no-sync",
                    "--no-instructions",
                    *args,
                ],
                owner,
                logs / "initdb.log",
                env={"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"},
            )
        finally:
            pwfile.unlink(missing_ok=True)

    def _start_rest(self, svc: Service, topo: ComposeTopology, ports: dict[str, int], logs: Path) -> dict[str, object]:
        """PostgREST's environment from the compose file, placed on this machine; the stand-in runs it."""
        if not svc.stand_in:
            raise MissingDependency(f"service {svc.name}: no native binary and no lab.stand_in label")
        env = {k: v for k, v in svc.environment.items() if k.startswith("PGRST_")}
        uri = urlsplit(env["PGRST_DB_URI"])
        netloc = uri.netloc.rsplit("@", 1)[0] + f"@{HOST}:{ports[topo.server.name]}"
        env.update(
            PGRST_DB_URI=urlunsplit(uri._replace(netloc=netloc)),
            PGRST_SERVER_HOST=HOST,
            PGRST_SERVER_PORT=str(ports[svc.name]),
        )
        proc = self._spawn(
            svc.name, [sys.executable, "-m", svc.stand_in], logs, kind="proxy", as_owner=False, extra_env=env
        )
        wait_ready(proc, _http_probe(f"http://{HOST}:{ports[svc.name]}/"), f"{svc.name} stand-in")
        from lab.topology.standin import describe

        return {"rest_server": describe(), "stand_in": True, "stand_in_for": svc.labels.get("lab.topology", svc.name)}

    def _spawn(
        self,
        name: str,
        argv: list[str],
        logs: Path,
        kind: str = "postgres",
        as_owner: bool = True,
        extra_env: dict[str, str] | None = None,
    ) -> Server:
        """Servers that refuse root run as the lab user; the lab's own Python processes run as we do."""
        assert self.state is not None and self.owner is not None
        server = self.state.start(
            name, argv, self.owner if as_owner else run_as_self(), kind, python=not as_owner, extra_env=extra_env
        )
        self.servers.append(server)
        return server

    def _pg_endpoint(self, svc: Service, ports: dict[str, int], creds: Credentials, facts: dict) -> Endpoint:
        assert self.state is not None
        return Endpoint(
            topology=svc.topology,
            host=HOST,
            port=ports[svc.name],
            database=svc.environment.get("POSTGRES_DB", "postgres") if svc.role == "server" else "postgres",
            user=creds.app_user,
            password=creds.app_password,
            facts=facts,
            ca_file=str(
                self.state.directory / "config" / "tls" / "ca.crt"
            ),  # the run's CA signs every server's certificate
        )
