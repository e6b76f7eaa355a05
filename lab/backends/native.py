"""The compose topology as local processes: real PostgreSQL and PgBouncer on 127.0.0.1.

Everything comes from compose/: the services, their roles and pool settings, the
initdb arguments, and the config files (rendered from the same templates the Docker
backend mounts). Only placement differs: free ports, a per-run directory, a socket
directory, and the binaries from the Debian packages instead of images.
"""

from __future__ import annotations

import glob
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

from lab import COMPOSE_DIR
from lab.compose import ComposeTopology, Service, load
from lab.config import Credentials, Placement, render
from lab.errors import MissingDependency, StartupError
from lab.ports import HOST, ensure_free, free_port
from lab.processes import RunAs, Server, give_to, run, run_as, spawn
from lab.runstate import DEATH_SIGNALS, STOP_SIGNALS, RunState, reap_stale
from lab.topology import Endpoint, Topology

READY_TIMEOUT = 30.0
Progress = Callable[[str], None]


def postgres_bindir() -> Path:
    """The newest PostgreSQL server binaries installed (Debian keeps them off PATH)."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0
    )
    if candidates:
        return Path(candidates[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise MissingDependency(
        "PostgreSQL server binaries (initdb, postgres) not found; install them with "
        "`sudo apt-get install postgresql` (./pooler-lab does this for you)"
    )


def pgbouncer_binary() -> Path:
    found = shutil.which("pgbouncer") or ("/usr/sbin/pgbouncer" if os.access("/usr/sbin/pgbouncer", os.X_OK) else None)
    if not found:
        raise MissingDependency(
            "pgbouncer not found; install it with `sudo apt-get install pgbouncer` (./pooler-lab does this for you)"
        )
    return Path(found)


def binary_version(binary: Path) -> str:
    """`pgbouncer --version` → 'PgBouncer 1.18.0' → '1.18.0'."""
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=10).stdout
    return out.splitlines()[0].split()[-1] if out.strip() else "unknown"


def _wait_ready(server: Server, conninfo: str, what: str, timeout: float = READY_TIMEOUT) -> psycopg.Connection:
    """Until a real login and query succeed: an open port is not a ready server."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if not server.alive():
            raise StartupError(f"{what} exited during start-up (code {server.popen.returncode}); its log ends:\n{server.log_tail()}")
        try:
            conn = psycopg.connect(conninfo, connect_timeout=2, autocommit=True, prepare_threshold=None)
            conn.execute("SELECT 1")
            return conn
        except psycopg.Error as exc:
            last = exc
            time.sleep(0.1)
    raise StartupError(f"{what} not ready after {timeout:.0f}s (last error: {last}); its log ends:\n{server.log_tail()}")


class NativeBackend:
    """Starts, describes and stops one run of the topology. Use as a context manager."""

    name = "native"

    def __init__(
        self,
        compose_dir: Path = COMPOSE_DIR,
        fixed_ports: bool = False,
        persistent: bool = False,
        progress: Progress | None = None,
        run_id: str | None = None,
    ) -> None:
        self.run_id = run_id
        self.compose_dir = compose_dir
        self.fixed_ports = fixed_ports
        self.persistent = persistent
        self.progress = progress or (lambda msg: None)
        self.state: RunState | None = None
        self.servers: list[Server] = []

    # -- lifecycle -------------------------------------------------------------------
    def __enter__(self) -> Topology:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Topology:
        for line in reap_stale():
            self.progress(f"cleaned up after a killed run: {line}")
        bindir, pgbouncer = postgres_bindir(), pgbouncer_binary()
        creds = Credentials.generate()
        topo = load(self.compose_dir)
        ports = self._ports(topo)
        owner = run_as()
        self.state = state = RunState.create(persistent=self.persistent, run_id=self.run_id)
        rundir = state.directory
        rendered, logs, sockets, data = rundir / "config", rundir / "logs", rundir / "sockets", rundir / "data"
        for d in (rendered, logs, sockets):
            d.mkdir()
        render(topo, Placement.native(topo, ports, rendered, sockets), creds, rendered)
        give_to(owner, rendered, logs, sockets)
        os.chown(rundir, owner.uid, owner.gid) if owner.switches else None

        server_svc = topo.server
        t0 = time.monotonic()
        self._initdb(bindir, server_svc, creds, data, logs, owner)
        self.progress(f"initdb done ({time.monotonic() - t0:.1f}s)")
        pg = self._spawn(
            "postgres",
            [str(bindir / "postgres"), "-D", str(data), "-c", f"config_file={rendered / server_svc.name / 'postgresql.conf'}"],
            owner,
            logs,
        )
        admin = _wait_ready(pg, self._conninfo(ports[server_svc.name], creds.superuser, creds.superuser_password), "postgres")
        with admin:
            init_sql = (rendered / server_svc.name / "init.sql").read_text()
            admin.execute(init_sql.encode())
            server_version = admin.execute("SHOW server_version").fetchone()[0]
        self.progress(f"postgres {server_version} ready on {HOST}:{ports[server_svc.name]}")

        pooler_version = binary_version(pgbouncer)
        endpoints = {
            server_svc.topology: self._endpoint(server_svc, ports, creds, {"server_version": server_version}),
        }
        for svc in topo.poolers:
            proc = self._spawn(svc.name, [str(pgbouncer), str(rendered / svc.name / "pgbouncer.ini")], owner, logs, kind="pgbouncer")
            _wait_ready(proc, self._conninfo(ports[svc.name], creds.app_user, creds.app_password), svc.name).close()
            endpoints[svc.topology] = self._endpoint(
                svc,
                ports,
                creds,
                {
                    "server_version": server_version,
                    "pooler": "pgbouncer",
                    "pooler_version": pooler_version,
                    "pool_mode": svc.pool_mode,
                    "pool_size": svc.pool_size,
                },
            )
            self.progress(f"pgbouncer {pooler_version} ({svc.pool_mode} mode) ready on {HOST}:{ports[svc.name]}")
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
        """Stop every server of this run (also after a partial start) and remove its directory."""
        for server in reversed(self.servers):
            server.stop()
        self.servers.clear()
        if self.state is not None:
            self.state.stop()
            self.state = None

    # -- steps -----------------------------------------------------------------------
    def _ports(self, topo: ComposeTopology) -> dict[str, int]:
        if not self.fixed_ports:
            return {name: free_port() for name in topo.services}
        fixed = {
            "direct": int(topo.settings["LAB_DIRECT_PORT"]),
            "pgbouncer-transaction": int(topo.settings["LAB_TRANSACTION_PORT"]),
            "pgbouncer-session": int(topo.settings["LAB_SESSION_PORT"]),
        }
        ports = {}
        for svc in topo.services.values():
            port = fixed.get(svc.topology) or free_port()
            ensure_free(port, f"{svc.name} ({svc.topology})")
            ports[svc.name] = port
        return ports

    def _initdb(self, bindir: Path, svc: Service, creds: Credentials, data: Path, logs: Path, owner: RunAs) -> None:
        pwfile = data.parent / "pwfile"
        pwfile.write_text(creds.superuser_password + "\n")
        os.chmod(pwfile, 0o600)
        give_to(owner, pwfile)
        args = shlex.split(svc.environment.get("POSTGRES_INITDB_ARGS", ""))
        user = svc.environment.get("POSTGRES_USER", creds.superuser)
        try:
            run(
                [str(bindir / "initdb"), "-D", str(data), "-U", user, f"--pwfile={pwfile}", "--no-sync", "--no-instructions", *args],
                owner,
                logs / "initdb.log",
                env={"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"},
            )
        finally:
            pwfile.unlink(missing_ok=True)

    def _spawn(self, name: str, argv: list[str], owner: RunAs, logs: Path, kind: str = "postgres") -> Server:
        assert self.state is not None
        server = spawn(
            name,
            argv,
            owner,
            logs / f"{name}.log",
            stop_signal=STOP_SIGNALS[kind],
            death_signal=None if self.persistent else DEATH_SIGNALS[kind],
            env={"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8", "POOLER_LAB_RUN": str(self.state.directory)},
        )
        self.servers.append(server)
        self.state.add_process(name, server.pid, int(server.stop_signal))
        return server

    @staticmethod
    def _conninfo(port: int, user: str, password: str) -> str:
        return psycopg.conninfo.make_conninfo(host=HOST, port=port, user=user, password=password, dbname="postgres")

    def _endpoint(self, svc: Service, ports: dict[str, int], creds: Credentials, facts: dict) -> Endpoint:
        return Endpoint(
            topology=svc.topology,
            host=HOST,
            port=ports[svc.name],
            database=svc.environment.get("POSTGRES_DB", "postgres") if svc.role == "server" else "postgres",
            user=creds.app_user,
            password=creds.app_password,
            facts={"backend": self.name, "service": svc.name, "pooler": None, "pool_mode": None, **facts},
        )
