"""pgpool-II 4.3: a pooler that pools per session only, the one Debian bookworm ships (`pgpool2`).

pgpool-II 4.3 has no transaction or statement mode: a client owns one child process, and its backend, for its whole
session; when it disconnects the child keeps the backend (connection_cache) for the next client with the same user,
database and startup parameters, after `reset_query_list` (ABORT; DISCARD ALL). So nothing of a client's session
(named prepared statements, SET, temporary tables) is shared while it is connected, and none of it outlives it.

Natively: Debian's pgpool2 (installed with apt where missing), run as the unprivileged user in the foreground from
its rendered pgpool.conf, on a port below the ephemeral range (`vault.below_ephemeral`). pgpool answers the client's
SCRAM exchange itself and logs in to the server with the role's password, so pool_passwd holds each role's password
AES-encrypted under a key of the run's (`vault`): computed here from the run's Credentials, written 0600 beside the
rendered templates, never printed. It is ready about 0.2 s after start; SIGINT is its fast shutdown (SIGTERM would
wait for every client). Its version comes from `pgpool --version` natively and from `SHOW pool_version` in a
container (over the simple protocol: pgpool answers it only there, in a second result set).
"""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import psycopg

from lab.machine.apt import install_missing, installed
from lab.topology.compose import Service
from lab.topology.model import Endpoint
from lab.topology.ports import HOST
from lab.topology.render import JIT_OFF_USER, Credentials
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
from lab.topology.services.vault import (
    encrypt_password,
    new_key,
    render_natively,
    rendered_dir,
    wait_for_login,
    write_secret_file,
)

#: pgpool's per-line prefix (log_line_prefix = '%m: %a pid %p: '): timestamp, application name, pid
_LINE = re.compile(r": (?P<level>WARNING|ERROR|FATAL):\s+(?P<message>.*)$")
#: what differs from run to run in a message: client addresses and ports, session times
_NOISE = re.compile(r"\b(host|port)=\S+|session time: \S+")
#: Debian's policy hook: apt starts no service while it answers 101 (pgpool2's package would start a pgpool)
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")


def pool_passwd(creds: Credentials, key: str) -> str:
    """pool_passwd: each role the lab's clients log in as, with its password AES-encrypted under `key` (what
    `pg_enc -m -k KEYFILE -u USER PASSWORD` writes)."""
    roles = {creds.app_user: creds.app_password, JIT_OFF_USER: creds.app_password}
    return "".join(f"{role}:AES{encrypt_password(password, key)}\n" for role, password in roles.items())


def install_pgpool(progress: Progress) -> None:
    """Debian's pgpool2, with apt, without letting the package start a pgpool of its own: as root, a policy-rc.d that
    refuses every service start is put in place for the install (and removed after it) where the machine has none."""
    if installed("pgpool2"):
        return
    progress("installing pgpool2 (Debian's pgpool-II 4.3) with apt")
    guard = os.geteuid() == 0 and not POLICY_RC_D.exists()
    if guard:
        POLICY_RC_D.write_text("#!/bin/sh\n# pooler-lab: no service starts while pgpool2 is installed\nexit 101\n")
        POLICY_RC_D.chmod(0o755)
    try:
        install_missing(("pgpool2",), "pgpool-II (the pgpool service kind)")
    finally:
        if guard:
            POLICY_RC_D.unlink(missing_ok=True)


def show_pool_version(port: int, user: str, password: str) -> str:
    """`SHOW pool_version` through pgpool ('4.3.5 (tamahomeboshi)' -> '4.3.5'). pgpool answers it only over the
    simple query protocol (psycopg sends a query without parameters that way) and in a second result set: the first
    is empty."""
    with psycopg.connect(
        host=HOST, port=port, user=user, password=password, dbname="postgres", connect_timeout=10, autocommit=True
    ) as conn:
        cur = conn.cursor()
        cur.execute("SHOW pool_version")
        while True:
            row = cur.fetchone() if cur.description else None
            if row:
                return str(row[0]).split()[0]
            if not cur.nextset():
                return "unknown"


class Pgpool(ServiceKind):
    name = "pgpool"
    family = "pgpool"
    # SIGINT is the fast shutdown (the whole group gone in about 0.05 s); SIGTERM, the smart one, waits for clients
    stop_signal = signal.SIGINT
    death_signal = signal.SIGINT
    # one line per connection attempt, failed ones included: the line with user= ("frontend disconnection") is only
    # written when the session ends
    login_pattern = "LOG:  new connection received"
    log_events = _LINE

    def prepared_statements(self, version: str | None, settings: str | None) -> str | None:
        """pgpool keeps no map of protocol-level prepared statements: it needs none, since a client keeps its backend
        for its whole session."""
        return "not tracked"

    def clean_message(self, message: str) -> str:
        return _NOISE.sub(lambda m: (m.group(1) or "session time") + "=…", message)

    def binary(self, svc: Service, progress: Progress = print) -> Path:
        install_pgpool(progress)
        return debian_binary("pgpool", "pgpool2")

    def native(self, svc: Service, site: NativeSite) -> dict[str, Endpoint]:
        binary = self.binary(svc, site.progress)
        version = binary_version(binary)
        port = render_natively(svc, site)
        config = site.config(svc)
        key = new_key()
        write_secret_file(config / "pool_passwd", pool_passwd(site.creds, key), site.owner)
        write_secret_file(config / "pgpoolkey", key + "\n", site.owner)
        argv = [
            str(binary),
            "-n",  # foreground: the lab owns the process and its group
            "-D",  # discard pgpool_status: no "down" state of an earlier start is restored
            "-f",
            str(config / "pgpool.conf"),
            "-a",
            str(config / "pool_hba.conf"),
            "-F",
            str(config / "pcp.conf"),
            "-k",
            str(config / "pgpoolkey"),
        ]
        proc = site.spawn(svc, argv, self)
        probe = pg_probe(port, site.creds.app_user, site.creds.app_password)
        wait_ready(proc, probe, svc.name).close()  # type: ignore[attr-defined]
        site.progress(f"pgpool-II {version} (session pooling) ready on {HOST}:{port}")
        facts = self.facts(svc, site.base, version, pooler_binary=str(binary))
        return {svc.topology: site.pg_endpoint(svc, facts)}

    def docker(self, svc: Service, site: DockerSite) -> dict[str, Endpoint]:
        """The container waits for its pool_passwd and key (compose's entrypoint): the lab writes them into the
        rendered files compose mounts, key last, then waits for a real login."""
        port = site.service_ports(svc)[0]
        config = rendered_dir(site) / svc.name
        key = new_key()
        write_secret_file(config / "pool_passwd", pool_passwd(site.creds, key), None)
        write_secret_file(config / "pgpoolkey", key + "\n", None)
        wait_for_login(port, site, svc.name)
        version = show_pool_version(port, site.creds.app_user, site.creds.app_password)
        site.progress(f"pgpool-II {version} (session pooling) ready on {HOST}:{port}")
        facts = self.facts(svc, site.base, version, image=site.image(svc.name))
        return {svc.topology: site.pg_endpoint(svc.topology, port, facts)}
