"""pgpool-II and pgagroal as the native backend starts them (lab.topology.services.pgpool, .pgagroal): on a topology of
their own (the server and these three services from compose/, nothing else: a run narrowed to their topologies), with
real logins through each, the versions their binaries report, their vaults of AES-encrypted passwords, pgagroal's
restart between cells, and nothing left running after the stop.

    .venv/bin/python -m pytest tests/test_poolers.py
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from lab.observe.logins import count
from lab.observe.server_view import fresh_pooler
from lab.topology.backends.native import NativeBackend
from lab.topology.model import Topology
from lab.topology.runstate import RUNTIME_BASE
from lab.topology.services.pgagroal import Pgagroal
from lab.topology.services.pgpool import Pgpool
from lab.topology.services.vault import encrypt_password, ephemeral_range

SERVICES = {
    "pgpool": "pgpool-session",
    "pgagroal-transaction": "pgagroal-transaction",
    "pgagroal-session": "pgagroal-session",
}
VERSIONS = {"pgpool": "4.3.5", "pgagroal": "1.6.0"}


def _own_processes(rundir: Path) -> list[int]:
    """Processes that carry the run's directory (every server the lab starts has it in its environment)."""
    marker = str(rundir).encode()
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            ours = marker in (proc / "environ").read_bytes() or marker in (proc / "cmdline").read_bytes()
            if ours and (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                found.append(int(proc.name))
        except OSError:
            continue
    return found


@pytest.fixture(scope="module")
def poolers() -> Iterator[Topology]:
    """The server and the three services of these kinds only (the run narrowed to their topologies), started
    natively."""
    backend = NativeBackend(topologies=tuple(SERVICES.values()))
    with backend as topology:
        yield topology
    rundir = RUNTIME_BASE / topology.run_id
    assert not rundir.exists()
    assert not _own_processes(rundir), "a process of the run outlived its stop"


def test_each_kind_logs_in_through_its_pooler_and_says_what_it_is(poolers: Topology) -> None:
    low, _ = ephemeral_range()
    for service, name in SERVICES.items():
        ep = poolers.endpoint(name)
        facts = ep.facts
        family = "pgpool" if service == "pgpool" else "pgagroal"
        assert (facts.pooler, facts.kind, facts.service) == (family, family, service)
        assert facts.pooler_version == VERSIONS[family]  # what the binary said
        assert facts.pool_mode == ("transaction" if name.endswith("transaction") else "session")
        assert facts.pool_size and facts.prepared_statements == "not tracked"
        assert ep.port < low, f"{name} listens at {ep.port}, inside the ephemeral range"
        fresh_pooler(poolers, ep)  # as before every cell: pgagroal was parked while the others' were checked
        before = count(poolers.run_id, service, family)
        with psycopg.connect(ep.dsn(), connect_timeout=5, prepare_threshold=None) as conn:
            assert conn.execute("SELECT current_user").fetchone() == (ep.user,)  # SCRAM end to end, through the vault
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(ep.dsn(password="not-the-password"), connect_timeout=5)
        after = count(poolers.run_id, service, family)
        assert before is not None and after is not None and after > before, f"{name}: its log counted no login"
        # pgagroal's transaction pipeline keeps the server connection a failed login took: restarted before a next cell
        assert fresh_pooler(poolers, ep) is (name == "pgagroal-transaction")


def test_vaults_are_private_and_no_file_or_log_holds_a_password(poolers: Topology) -> None:
    rundir = RUNTIME_BASE / poolers.run_id
    secrets = ("pgpool/pool_passwd", "pgpool/pgpoolkey")
    secrets += tuple(f"{s}/{f}" for s in SERVICES if s != "pgpool" for f in ("pgagroal_users.conf", "master.key"))
    for name in secrets:
        path = rundir / "config" / name
        assert path.stat().st_size and stat.S_IMODE(path.stat().st_mode) == 0o600, name
    password = poolers.endpoint("direct").password
    assert password not in repr(poolers)
    for path in [*(rundir / "config").rglob("*"), *(rundir / "state").rglob("*"), *(rundir / "logs").rglob("*")]:
        if path.is_file():
            assert password.encode() not in path.read_bytes(), path


def test_the_vault_encryption_is_what_the_poolers_own_tools_write() -> None:
    """pgagroal-admin, pg_enc and `openssl enc -aes-256-cbc -md sha1 -nosalt` all write this for the pair (checked by
    hand against the first two); openssl again here, for passwords of every block length."""
    assert encrypt_password("apppass-123", "masterkey-0123456789") == "3Sdu9/dRDvjcNVc/g8iqFw=="
    if shutil.which("openssl") is None:
        pytest.skip("no openssl binary to compare with")
    for password in ("", "x", "0123456789abcdef", "a-password-of-more-than-one-block-" * 3):
        done = subprocess.run(
            ["openssl", "enc", "-aes-256-cbc", "-md", "sha1", "-nosalt", "-a", "-A", "-pass", "pass:the-key"],
            input=password.encode(),
            capture_output=True,
            check=True,
        )
        assert encrypt_password(password, "the-key") == done.stdout.decode().strip()


def test_pgagroal_holds_no_server_connection_while_cells_run_elsewhere(poolers: Topology) -> None:
    """Its prefill would take nine of the server's 22 connections for clients for the whole run: parked before a cell
    through another pooler (or none), back before its own."""

    def held() -> int:
        with psycopg.connect(poolers.admin_dsn(), autocommit=True) as conn:
            row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgagroal'").fetchone()
        return int(row[0]) if row else 0

    assert fresh_pooler(poolers, None) is False  # a cell through none of them: both pgagroal services parked
    deadline = time.monotonic() + 5
    while held() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert held() == 0
    ep = poolers.endpoint("pgagroal-transaction")
    assert fresh_pooler(poolers, ep) is True
    assert held() >= (ep.facts.pool_size or 1) + 1  # its prefill again
    with psycopg.connect(ep.dsn(), connect_timeout=5, prepare_threshold=None) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_pgagroal_is_restarted_where_ending_its_server_connections_would_break_it(poolers: Topology) -> None:
    """The lab ends the poolers' server connections before each matrix cell; pgagroal 1.6 then hands the dead one on.
    fresh_pooler restarts it (a new main process), after which a query works; pgpool needs nothing."""
    for name in ("pgagroal-transaction", "pgagroal-session", "pgpool-session"):
        ep = poolers.endpoint(name)
        fresh_pooler(poolers, ep)  # running (not parked) when its server connections are ended
        assert fresh_pooler(poolers, ep, end_connections=True) is name.startswith("pgagroal")
        with psycopg.connect(ep.dsn(), connect_timeout=5, prepare_threshold=None) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert fresh_pooler(poolers, ep) is False  # nothing happened to it since
    # a cell elsewhere parked pgagroal-transaction: it is started again before its own
    assert fresh_pooler(poolers, poolers.endpoint("pgagroal-transaction")) is True


def test_log_lines_are_read_as_the_server_view_reads_them() -> None:
    agroal = Pgagroal()
    warn = agroal.parse_log(
        "p", "2026-12-07 01:32:25 WARN  pipeline_transaction.c:390 Failure during obtaining connection"
    )
    assert warn is not None and (warn.level, warn.message) == ("WARNING", "Failure during obtaining connection")
    abort = agroal.parse_log("p", "pgagroal: ev_epoll.c:134: epoll_modify: Assertion `(...)' failed.")
    assert abort is not None and abort.level == "FATAL"
    assert agroal.parse_log("p", "2026-12-07 01:30:26 INFO  worker.c:101 connect: user=a database=b address=1") is None
    pool = Pgpool()
    error = pool.parse_log("p", "2026-12-07 01:46:13.780: psql pid 18920: ERROR:  authentication failed")
    assert error is not None and (error.level, error.message) == ("ERROR", "authentication failed")
    assert pool.login_pattern and agroal.login_pattern == " connect: user="


def test_no_pooler_process_runs_as_root(poolers: Topology) -> None:
    """pgagroal refuses root; pgpool would not, and runs as the servers' user all the same."""
    if os.geteuid() != 0:
        pytest.skip("the lab switches users only as root")
    rundir = RUNTIME_BASE / poolers.run_id
    for pid in _own_processes(rundir):
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
            uid = int(Path(f"/proc/{pid}/status").read_text().split("Uid:")[1].split()[0])
        except (OSError, IndexError):
            continue
        if name in ("pgpool", "pgagroal"):
            assert uid != 0, f"{name} (pid {pid}) runs as root"
