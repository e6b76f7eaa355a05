"""pgagroal 1.6: a pooler with a transaction pipeline and a session pipeline, built from Debian trixie's source.

Debian bookworm does not package pgagroal; the lab builds trixie's 1.6.0 on first use (`lab.build` label,
RECIPE, lab.machine.builds) into its cache. pgagroal answers the client's SCRAM exchange itself against its users
file (the "vault": each role's password AES-encrypted under a master key, lab.topology.services.vault) and logs in to
the server with the password; the transaction pipeline refuses to start without that file, without a limits file
(pgagroal_databases.conf) or with unknown users allowed.

pgagroal refuses root and reads its master key from `<home>/.pgagroal/master.key`, where `<home>` is the passwd entry's
home directory (`$HOME` is ignored) and the lab's unprivileged user has none. So natively each service gets a home of
its own under the run's state directory, named in a passwd file of the run's through nss_wrapper (Debian's
libnss-wrapper, LD_PRELOAD): nothing on the machine changes and parallel runs keep their own keys. The master key and
the users file are computed here from the run's Credentials and written 0600; no password is printed or logged.

It runs under a small shell (SUPERVISE) that starts it again when the lab asks; it is ready once its prefill is done
(about 0.2 s). Stop: SIGTERM to the group ends the shell and pgagroal; a worker still waiting for a server connection
ignores SIGTERM, so the lab's stop_group kills the group after its grace. Its version comes from `pgagroal --version`
(natively, and by `docker exec` in a container): it reports none over SQL.

What it does to clients (pgagroal 1.6.0, observed by the lab; the expectation rules hold the rows to it):
- asyncpg and pg8000 cannot log in over SCRAM: pgagroal assumes libpq's 24-character client nonce (security.c
  client_scram256 copies a fixed 57 bytes as client-final-message-without-proof), asyncpg sends 32, pg8000 64;
- a login takes a server connection for the whole authentication, so in a busy transaction pool logins wait, polling
  every 500 ms, while clients already in take every free one;
- in the transaction pipeline every failed login keeps the server connection it took for good (worker.c returns it
  only `if (config->pipeline != PIPELINE_TRANSACTION)`), so failed logins drain the pool;
- a server connection the server ended (the lab's end_server_connections before each matrix cell) is handed on, and
  the retries that follow count connections twice; a session-pipeline worker started before a server connection was
  opened aborts on libev's assertion when handed it. Hence `fresh`: the lab restarts pgagroal where a cell would
  otherwise inherit any of that, and waits for its prefill before any client;
- startup parameters (options, application_name, jit) are dropped silently whenever a users file is used.
"""

from __future__ import annotations

import base64
import os
import re
import signal
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import psycopg

from lab.errors import ConfigError, MissingDependency, StartupError
from lab.machine.apt import install_missing
from lab.machine.builds import Recipe, cmake
from lab.topology.compose import Service
from lab.topology.model import Endpoint, Topology
from lab.topology.ports import HOST
from lab.topology.processes import RunAs
from lab.topology.render import JIT_OFF_USER, Credentials
from lab.topology.runstate import RUNTIME_BASE
from lab.topology.services.base import (
    READY_TIMEOUT,
    DockerSite,
    LogEvent,
    NativeSite,
    Progress,
    ServiceKind,
    binary_version,
    pg_probe,
    wait_ready,
)
from lab.topology.services.vault import (
    container_version,
    encrypt_password,
    new_key,
    render_natively,
    rendered_dir,
    wait_for_login,
    write_secret_file,
)

#: its log lines (log_line_prefix "%Y-%m-%d %H:%M:%S"): time, level, source file and line, message
_LINE = re.compile(r"^\S+ \S+ (?P<level>WARN|ERROR|FATAL)\s+\S+:\d+ (?P<message>.*)$")
#: what reaches stderr only: libev's (and the C library's) assertion failures in a worker, which then aborts
_ASSERTION = re.compile(r"^pgagroal: (?P<message>.*Assertion.*)$")
#: per run noise in a message: addresses, slots, file descriptors, pids
_NOISE = re.compile(r"\b(address|slot|fd|pid)[= ]\S+", re.IGNORECASE)
NSS_WRAPPER_PACKAGE = "libnss-wrapper"
#: What runs pgagroal, natively and in the container: a shell that starts it again when the lab asks for a fresh pooler
#: (the marker file named by $LAB_RESTART, then SIGKILL to every pgagroal process; the killed one leaves its pid file,
#: $LAB_PIDFILE, which would stop the next), keeps it stopped while the marker $LAB_PARK is there, and otherwise ends
#: with it. The shell is the process the lab records and stops (its group goes with it); on SIGTERM or SIGINT it ends
#: pgagroal.
SUPERVISE = (
    'trap \'[ -n "$child" ] && kill -TERM "$child" 2>/dev/null; exit 143\' TERM INT; child=; '
    'while :; do while [ -e "$LAB_PARK" ]; do sleep 0.05; done; rm -f "$LAB_RESTART"; '
    '"$@" & child=$!; wait "$child"; code=$?; child=; '
    '[ -e "$LAB_RESTART" ] || [ -e "$LAB_PARK" ] || exit "$code"; rm -f "$LAB_PIDFILE"; done'
)
#: what its log says when a server connection was lost to a client for good (pgagroal 1.6 never takes it back): a
#: worker's abort, a client given up on after blocking_timeout, a limit's count gone wrong; and, in the transaction
#: pipeline, any failed login ("connect: address=", no user: worker.c returns its slot only in the other pipelines)
LEAK_MARKERS = ("Assertion", "Failure during obtaining connection", "Invalid data for user")
TRANSACTION_LEAK_MARKERS = (*LEAK_MARKERS, "connect: address=")
#: after the server has the prefill's connections: until pgagroal's main process has them too (the prefilling process
#: hands each one over through its management socket), a worker it starts meanwhile would not have them
PREFILL_SETTLE_S = 0.1
#: what the server's log says when it ended a backend (pg_terminate_backend: end_server_connections)
ENDED_MARKER = " 57P01 FATAL"

#: trixie's 1.6.0. Its build needs rst2man (python3-docutils: the man pages cannot be switched off) and libsystemd on
#: Linux; the Sources stanza's other Build-Depends (debhelper-compat, postgresql-all) serve only Debian's packaging and
#: its tests. Its local image (compose/images/pgagroal-built) carries the binaries and the library they find through
#: their RPATH ($ORIGIN/../lib), by their paths under the install prefix.
RECIPE = Recipe(
    "pgagroal",
    "bin/pgagroal",
    (
        "cmake",
        "gcc",
        "make",
        "pkg-config",
        "libssl-dev",
        "libev-dev",
        "libcjson-dev",
        "libsystemd-dev",
        "python3-docutils",
    ),
    cmake,
    image_files=tuple(
        (name, f"pgagroal/{name}")
        for name in ("bin/pgagroal", "bin/pgagroal-cli", "bin/pgagroal-admin", "lib/libpgagroal.so.1")
    ),
)


def users_file(creds: Credentials, master_key: str) -> str:
    """pgagroal_users.conf: each role the lab's clients log in as, with its password AES-encrypted under the master key
    (what `pgagroal-admin -f FILE -U USER -P PASSWORD user add` writes)."""
    roles = {creds.app_user: creds.app_password, JIT_OFF_USER: creds.app_password}
    return "".join(f"{role}:{encrypt_password(password, master_key)}\n" for role, password in roles.items())


def master_key_file(master_key: str) -> str:
    """master.key: base64 of the key, without a newline (what `pgagroal-admin -P KEY master-key` writes)."""
    return base64.b64encode(master_key.encode()).decode()


def nss_wrapper_library() -> Path:
    """libnss_wrapper.so of Debian's libnss-wrapper (installed with apt where missing)."""
    install_missing((NSS_WRAPPER_PACKAGE,), "pgagroal's per-run home directory (nss_wrapper)")
    found = sorted(Path("/usr/lib").glob("*/libnss_wrapper.so")) + sorted(Path("/usr/lib").glob("libnss_wrapper.so"))
    if not found:
        raise MissingDependency(f"libnss_wrapper.so not found although {NSS_WRAPPER_PACKAGE} is installed")
    return found[0]


def home_of_its_own(state: Path, owner: RunAs, master_key: str) -> dict[str, str]:
    """A home directory for the service (`state`/home, holding .pgagroal/master.key) and the environment that makes
    nss_wrapper report it as the home of the user the servers run as: pgagroal's getpwuid() then finds the run's key
    there, whatever /etc/passwd says."""
    home = state / "home"
    keys = home / ".pgagroal"
    keys.mkdir(parents=True, exist_ok=True, mode=0o700)
    keys.chmod(0o700)  # pgagroal refuses a key directory or file that its group or others may read
    write_secret_file(keys / "master.key", master_key_file(master_key), owner)
    passwd, group = state / "nss-passwd", state / "nss-group"
    passwd.write_text(f"{owner.name}:x:{owner.uid}:{owner.gid}::{home}:/usr/sbin/nologin\n")
    group.write_text(f"{owner.name}:x:{owner.gid}:\n")
    if owner.switches:
        for path in (home, keys, passwd, group):
            os.chown(path, owner.uid, owner.gid)
    return {
        "LD_PRELOAD": str(nss_wrapper_library()),
        "NSS_WRAPPER_PASSWD": str(passwd),
        "NSS_WRAPPER_GROUP": str(group),
    }


def _read_from(path: Path, offset: int) -> str:
    try:
        with path.open("rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _processes_running(config_file: str) -> list[tuple[int, int, str]]:
    """(pid, process group, name) of every process whose command line names this config file: the supervising shell
    (the group's leader) and pgagroal's main, worker and helper processes."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if config_file.encode() not in (proc / "cmdline").read_bytes():
                continue
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z":
            found.append((int(proc.name), int(fields[2]), name))
    return found


class Pgagroal(ServiceKind):
    name = "pgagroal"
    family = "pgagroal"
    # SIGTERM: the main process logs "pgagroal: shutdown" and exits in about 0.06 s; workers that ignore it go with the
    # group's SIGKILL (lab.topology.processes.stop_group)
    stop_signal = signal.SIGTERM
    death_signal = signal.SIGTERM
    # one line per successful login; the leading space keeps "disconnect: user=" out (log_disconnections is off
    # anyway). A failed login writes "connect: address=..." without a user.
    login_pattern = " connect: user="
    log_events = _LINE
    recipe = RECIPE
    # restarted between cells, and a failed login may keep a server connection for good: no census through it
    prepared_census = False

    def __init__(self) -> None:
        #: per (run, service): how long its log and the server's were when it last started
        self._started: dict[tuple[str, str], tuple[int, int]] = {}
        #: the (run, service)s stopped while cells run elsewhere (`park`)
        self._parked: set[tuple[str, str]] = set()

    def prepared_statements(self, version: str | None, settings: str | None) -> str | None:
        """pgagroal 1.6 keeps no map of protocol-level prepared statements: `track_prepared_statements = on` only sends
        DEALLOCATE ALL after each transaction (the lab leaves it off)."""
        return "not tracked"

    def parse_log(self, source: str, line: str) -> LogEvent | None:
        """Its WARN/ERROR/FATAL lines (WARN read as WARNING, as the other kinds name it), and a worker's assertion
        failure from libev, which pgagroal writes to stderr only (FATAL: the worker aborted)."""
        m = _LINE.search(line)
        if m is not None:
            level = "WARNING" if m["level"] == "WARN" else m["level"]
            return LogEvent(source, level, None, self.clean_message(m["message"].strip()))
        m = _ASSERTION.search(line)
        if m is not None:
            return LogEvent(source, "FATAL", None, self.clean_message(m["message"].strip()))
        return None

    def clean_message(self, message: str) -> str:
        return _NOISE.sub(lambda m: m.group(1) + "=…", message)

    def binary(self, svc: Service, progress: Progress = print) -> Path:
        """The version the service's `lab.build` label names, built by the lab on first use; and nss_wrapper."""
        nss_wrapper_library()
        built = self.built_binary(svc, progress)
        if built is None:
            raise ConfigError(f"service {svc.name}: a pgagroal service needs a lab.build label (bookworm has none)")
        return built

    def native(self, svc: Service, site: NativeSite) -> dict[str, Endpoint]:
        binary = self.binary(svc, site.progress)
        version = binary_version(binary)
        port = render_natively(svc, site)
        # each rendered file by the name pgagroal reads it as
        files = {Path(m.target).name: site.rundir / "config" / m.rendered for m in svc.templated_mounts}
        master_key = new_key()
        write_secret_file(files["pgagroal_users.conf"], users_file(site.creds, master_key), site.owner)
        write_secret_file(files["master.key"], master_key_file(master_key), site.owner)
        env = home_of_its_own(site.state_dir(svc), site.owner, master_key)
        # pgagroal appends its log to the file the lab captures its stderr into: the server's user must own it
        log = site.logs / f"{svc.name}.log"
        log.touch()
        if site.owner.switches:
            os.chown(log, site.owner.uid, site.owner.gid)
        env["LAB_RESTART"] = str(site.state_dir(svc) / "restart")
        env["LAB_PARK"] = str(site.state_dir(svc) / "park")
        env["LAB_PIDFILE"] = str(site.state_dir(svc) / "pgagroal.pid")  # pgagroal.conf's pidfile
        argv = [
            "/bin/sh",
            "-c",
            SUPERVISE,
            "pgagroal-supervise",
            str(binary),
            "-c",
            str(files["pgagroal.conf"]),
            "-a",
            str(files["pgagroal_hba.conf"]),
            "-u",
            str(files["pgagroal_users.conf"]),
            "-l",
            str(files["pgagroal_databases.conf"]),
        ]
        server = site.topo.server
        admin = (
            f"host={HOST} port={site.ports[server.name]} dbname=postgres user={site.creds.superuser} "
            f"password={site.creds.superuser_password}"
        )
        since = server_now(admin)
        proc = site.spawn(svc, argv, self, extra_env=env)
        probe = pg_probe(port, site.creds.app_user, site.creds.app_password)
        wait_ready(proc, lambda: self._ready(admin, since, svc.pool_mode, svc.pool_size, probe), svc.name)
        self._mark_started(site.state.run_id, svc.name, site.logs)
        site.progress(f"pgagroal {version} ({svc.pool_mode} pipeline) ready on {HOST}:{port}")
        facts = self.facts(svc, site.base, version, pooler_binary=str(binary))
        return {svc.topology: site.pg_endpoint(svc, facts)}

    def docker(self, svc: Service, site: DockerSite) -> dict[str, Endpoint]:
        """The container waits for its users file and master key (compose's entrypoint): the lab writes them into the
        rendered files compose mounts, the key last, then waits for a real login."""
        port = site.service_ports(svc)[0]
        config = rendered_dir(site) / svc.name
        master_key = new_key()
        server_port = site.ports[site.topo.server.port_variables[0][0]]
        admin = (
            f"host={HOST} port={server_port} dbname=postgres user={site.creds.superuser} "
            f"password={site.creds.superuser_password}"
        )
        since = server_now(admin)
        write_secret_file(config / "pgagroal_users.conf", users_file(site.creds, master_key), None)
        write_secret_file(config / "master.key", master_key_file(master_key), None)
        probe = pg_probe(port, site.creds.app_user, site.creds.app_password)
        wait_for_login(port, site, svc.name, lambda: self._ready(admin, since, svc.pool_mode, svc.pool_size, probe))
        run_id = rendered_dir(site).parent.name
        self._mark_started(run_id, svc.name, rendered_dir(site).parent / "logs")
        version = container_version(svc.name, ["pgagroal", "--version"], compose_project(run_id))
        site.progress(f"pgagroal {version} ({svc.pool_mode} pipeline) ready on {HOST}:{port}")
        facts = self.facts(svc, site.base, version, image=site.image(svc.name))
        return {svc.topology: site.pg_endpoint(svc.topology, port, facts)}

    # -- between cells ----------------------------------------------------------------------
    def fresh(self, topology: Topology, endpoint: Endpoint, ended: bool) -> bool:
        """Restart pgagroal where it could not serve the next cell as a fresh pooler would.

        pgagroal 1.6 takes neither of two things the lab's cells do to it:
        - server connections ended by the server (end_server_connections, before every matrix cell, whichever
          pooler it is for): the transaction pipeline hands the dead one to the next client, which fails at login or at
          its first query, and the retries and prefills that follow count a connection twice, so a later client waits
          `blocking_timeout` and is dropped;
        - a server connection a client took and never gave back: every failed login in the transaction pipeline
          (asyncpg's, a wrong password's), a worker's abort. After `pool size` of those no client gets one.
        A restart gives it what the cell needs, fresh server connections (prefilled anew) and all its slots. It is
        done only when one of those happened since it last started (its log and the server's say so), when the
        cell just had the server end them (`ended`) and the pipeline is the transaction one, or when it is parked."""
        facts = endpoint.facts
        assert facts.service is not None
        transaction = facts.pool_mode == "transaction"
        needed = (
            (topology.run_id, facts.service) in self._parked
            or (ended and transaction)
            or self._damaged(topology, facts.service, transaction, endpoint.user)
        )
        if not needed:
            return False
        self.restart(topology, endpoint)
        return True

    def park(self, topology: Topology, endpoint: Endpoint) -> bool:
        """Stopped (its supervising shell waits) while cells run through other topologies: its prefilled server
        connections, nine of the server's 22 for clients, would otherwise crowd out theirs (the bursts of
        experiments/test_limits.py found no slot). `fresh` starts it again before its own next cell."""
        facts = endpoint.facts
        assert facts.service is not None
        key = (topology.run_id, facts.service)
        if key in self._parked:
            return False
        self._signal(topology, facts.service, "park")
        self._parked.add(key)
        return True

    def _signal(self, topology: Topology, service: str, marker: str) -> None:
        """The marker (restart or park) for the supervising shell, then SIGKILL to every pgagroal process of the
        service (unpark: the park marker removed, and the shell starts it): it keeps nothing that outlives it (its shared memory is anonymous), and its server connections end
        with it. In a container the shell is process 1, which no signal from inside reaches: `kill -KILL -1` ends every
        other process of its user."""
        if topology.backend == "docker":
            signal_in_container(service, topology.run_id, marker)
            return
        rundir = RUNTIME_BASE / topology.run_id
        if marker == "unpark":  # the shell starts it once the park marker is gone
            (rundir / "state" / service / "park").unlink(missing_ok=True)
            return
        (rundir / "state" / service / marker).touch()
        config_file = str(rundir / "config" / service / "pgagroal.conf")
        for pid, group, name in _processes_running(config_file):
            if pid != group and name == "pgagroal":
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def _logs(self, topology: Topology, service: str) -> tuple[Path, Path]:
        logs = RUNTIME_BASE / topology.run_id / "logs"
        server = topology.endpoints.get("direct")
        return logs / f"{service}.log", logs / f"{(server.facts.service if server else None) or 'postgres'}.log"

    def _mark_started(self, run_id: str, service: str, logs: Path) -> None:
        server_log = sorted(p for p in logs.glob("postgres*.log"))
        self._started[(run_id, service)] = (
            _size(logs / f"{service}.log"),
            _size(server_log[0]) if server_log else 0,
        )

    def _damaged(self, topology: Topology, service: str, transaction: bool, user: str) -> bool:
        started = self._started.get((topology.run_id, service))
        if started is None:
            return True  # started by another process (`pooler-lab up`): nothing known, so once anew
        own, server = self._logs(topology, service)
        markers = TRANSACTION_LEAK_MARKERS if transaction else LEAK_MARKERS
        if any(m in _read_from(own, started[0]) for m in markers):
            return True
        roles = (user, JIT_OFF_USER)
        return any(
            ENDED_MARKER in line and any(f"] {role}@" in line for role in roles)
            for line in _read_from(server, started[1]).splitlines()
        )

    def restart(self, topology: Topology, endpoint: Endpoint) -> None:
        """Started anew by its supervising shell (killed first, unless parked); back when its prefill is done and a
        real login through it works."""
        facts = endpoint.facts
        assert facts.service is not None
        admin = topology.admin_dsn()
        since = server_now(admin)
        key = (topology.run_id, facts.service)
        if key in self._parked:
            self._signal(topology, facts.service, "unpark")
            self._parked.discard(key)
        else:
            self._signal(topology, facts.service, "restart")
        probe = pg_probe(endpoint.port, endpoint.user, endpoint.password)
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            try:
                self._ready(admin, since, facts.pool_mode, facts.pool_size, probe)
                break
            except (psycopg.Error, OSError) as exc:
                if time.monotonic() > deadline:
                    raise StartupError(
                        f"{facts.service} not back {READY_TIMEOUT:.0f}s after its restart: {exc}"
                    ) from None
                time.sleep(0.02)
        self._mark_started(topology.run_id, facts.service, RUNTIME_BASE / topology.run_id / "logs")

    def _ready(
        self, admin: str, since: datetime, pipeline: str | None, pool_size: int | None, probe: Callable[[], object]
    ) -> None:
        """Ready for clients: its prefill done (the server has the connections pgagroal opened under its own
        application_name since `since`), then a real login through it. A client that logs in while the prefill still
        runs meets pgagroal 1.6's races between the prefilling process and its own (a server connection counted twice,
        then `blocking_timeout` waited out; in the session pipeline a worker aborting on libev's assertion)."""
        expected = (pool_size or 1) + 1  # the limits file's INITIAL_SIZEs: the application's pool and one
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgagroal' AND backend_start >= %s",
                [since],
            ).fetchone()
        if not row or row[0] < expected:
            raise psycopg.OperationalError(f"prefill: {row[0] if row else 0} of {expected} server connections")
        time.sleep(PREFILL_SETTLE_S)
        probe().close()  # type: ignore[attr-defined]


def server_now(admin: str) -> datetime:
    """The server's clock: what a new backend's backend_start is compared with."""
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
        row = conn.execute("SELECT now()").fetchone()
    assert row is not None
    when: datetime = row[0]
    return when


def compose_project(run_id: str) -> str:
    """The compose project of a Docker run (lab.topology.backends.docker names it so)."""
    return "pooler-lab-" + run_id.lower().replace(".", "-")


#: what the supervising shell is told in a container: restart (marker, then kill), park (marker, then kill), unpark
_IN_CONTAINER = {
    "restart": 'touch "$LAB_RESTART" && kill -KILL -1',
    "park": 'touch "$LAB_PARK" && kill -KILL -1',
    "unpark": 'rm -f "$LAB_PARK"',
}


def signal_in_container(service: str, run_id: str, what: str) -> None:
    """The supervising shell of the service's container told `what` (_IN_CONTAINER), through `docker exec`."""
    import docker

    client = docker.from_env()
    try:
        labels = [f"com.docker.compose.service={service}", f"com.docker.compose.project={compose_project(run_id)}"]
        for container in client.containers.list(filters={"label": labels}):
            container.exec_run(["sh", "-c", _IN_CONTAINER[what]])
    finally:
        client.close()
