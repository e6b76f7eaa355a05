"""A target: endpoints the lab did not start. The tests start PostgreSQL and PgBouncer (with TLS) themselves,
describe them in a target file, and run the lab against them knowing nothing but the file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from lab.errors import ConfigError
from lab.proxies.tenant import TenantRouter
from lab.topology.backends.target import TargetFile, failure_kind
from lab.topology.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
PASSWORD_ENV = "LAB_TEST_TARGET_PASSWORD"


def _endpoint(
    name: str,
    port: int,
    pooler: str,
    mode: str,
    version: str | None,
    sslmode: str = "require",
    user: str = "lab_app",
    env: str = PASSWORD_ENV,
) -> str:
    lines = [
        f"[endpoints.{name}]",
        f'url = "postgresql://{user}@127.0.0.1:{port}/postgres?sslmode={sslmode}"',
        f'password_env = "{env}"',
        f'pooler = "{pooler}"',
        f'pool_mode = "{mode}"',
        "max_connections = 10",
    ]
    if version:
        lines.append(f'pooler_version = "{version}"')
    return "\n".join(lines) + "\n"


def _target_of(topology, path: Path, rest: bool = False) -> Path:  # type: ignore[no-untyped-def]
    eps = []
    for name in ("direct", "pgbouncer-transaction", "pgbouncer-session"):
        ep = topology.endpoint(name)
        pooler = ep.facts.pooler or "none"
        eps.append(_endpoint(name, ep.port, pooler, ep.facts.pool_mode or "none", ep.facts.pooler_version))
    text = 'name = "test-target"\n\n' + "\n".join(eps)
    if rest:  # the local REST tier (nginx over the run's CA, in front of the PostgREST stand-in) as the target's
        ep = topology.endpoint("rest")
        text += f'\n[rest]\nurl = "https://127.0.0.1:{ep.tls_port}"\nanon_key_env = "LAB_TEST_ANON_KEY"\nca_file = "{ep.ca_file}"\n'
    path.write_text(text)
    return path


def test_a_run_against_a_target_carries_its_name_and_writes_no_secret(topology, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    password = topology.endpoint("direct").password
    target = _target_of(topology, tmp_path / "target.toml")
    results = tmp_path / "results"
    env = {**os.environ, PASSWORD_ENV: password}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "lab",
            "run",
            "--target",
            str(target),
            "--network",
            "none",
            "--clients",
            "asyncpg-default,asyncpg-no-cache,psycopg-async-default,state-probe,asyncpg",
            "--results",
            str(results),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    rows = [json.loads(line) for f in (results / "runs").glob("*.jsonl") for line in f.read_text().splitlines()]
    experiments = {r["experiment"] for r in rows}
    assert {"matrix", "wire", "session-state", "latency", "loop-lag"} <= experiments, experiments
    assert all(r["topology"]["target"] == "test-target" and r["topology"]["backend"] == "target" for r in rows)
    assert all(r["topology"]["sslmode"] == "require" for r in rows if r["experiment"] == "matrix")
    # beside what the file declares, what the lab observed there
    assert all(
        r["topology"]["server_version"].startswith("15")
        and r["topology"]["tls_version"].startswith("TLSv1")
        and r["topology"]["measured_rtt_ms"] > 0
        for r in rows
        if r["experiment"] == "matrix"
    )
    # what the transaction pooler does to asyncpg's named statements shows on the target as it does locally
    tx = next(r for r in rows if r["cell"] == "asyncpg-default-pgbouncer-transaction-repeated-query")
    assert tx["outcome"]["sqlstate"] == "26000" and tx["matches"] is True
    for where, content in [
        ("the output", done.stdout + done.stderr),
        *((str(p), p.read_text(errors="replace")) for p in results.rglob("*") if p.is_file()),
    ]:
        assert password not in content, f"the target's password is in {where}"
    with psycopg.connect(topology.endpoint("direct").dsn()) as conn:
        left = conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'pooler\\_lab\\_%'").fetchone()[0]
    assert left == 0, "the run's schema was dropped at the end"


def test_target_check_names_what_failed(topology, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    direct = topology.endpoint("direct")
    transaction = topology.endpoint("pgbouncer-transaction")
    with TenantRouter(transaction.host, transaction.port, "realproject") as router:
        text = 'name = "checks"\n\n' + "\n".join(
            [
                _endpoint("good", direct.port, "none", "none", None),
                _endpoint("refused", free_port(), "none", "none", None),
                _endpoint("wrong-password", direct.port, "none", "none", None, env="LAB_TEST_WRONG_PASSWORD"),
                _endpoint("tls-required", router.port, "supavisor", "transaction", None),  # the router speaks no TLS
                _endpoint(
                    "unknown-tenant",
                    router.port,
                    "supavisor",
                    "transaction",
                    None,
                    sslmode="disable",
                    user="lab_app.wrongref",
                ),
            ]
        )
        path = tmp_path / "checks.toml"
        path.write_text(text)
        env = {**os.environ, PASSWORD_ENV: direct.password, "LAB_TEST_WRONG_PASSWORD": "not-the-password"}
        done = subprocess.run(
            [sys.executable, "-m", "lab", "target", "check", str(path)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
    lines = {line.split(":", 1)[0]: line for line in done.stdout.splitlines()}
    assert done.returncode == 3, done.stdout + done.stderr
    assert (
        lines["good"].startswith("good: ok: PostgreSQL 15")
        and "TLS TLSv1." in lines["good"]
        and "round trip" in lines["good"]
    )
    assert lines["refused"].startswith("refused: refused:")
    assert lines["wrong-password"].startswith("wrong-password: authentication:") and "28P01" in lines["wrong-password"]
    assert lines["tls-required"].startswith("tls-required: TLS:")
    assert lines["unknown-tenant"].startswith("unknown-tenant: tenant routing:") and "XX000" in lines["unknown-tenant"]
    assert direct.password not in done.stdout + done.stderr


@pytest.mark.parametrize(
    "body, message",
    [
        (
            'name = "x"\n[endpoints.d]\nurl = "postgresql://u:secret@h/db"\npassword_env = "P"\npooler = "none"\npool_mode = "none"\n',
            "url carries a password",
        ),
        (
            'name = "x"\n[endpoints.d]\nurl = "postgresql://u@h/db"\npassword_env = "NOT_SET_ANYWHERE"\npooler = "none"\npool_mode = "none"\n',
            "NOT_SET_ANYWHERE .* is not set",
        ),
        (
            'name = "x"\n[endpoints.d]\nurl = "postgresql://u@h/db"\npassword_env = "P"\npooler = "pgfrob"\npool_mode = "none"\n',
            "pooler 'pgfrob' is not one of",
        ),
        (
            'name = "x"\n[endpoints.d]\nurl = "postgresql://u@h:99999/db"\npassword_env = "P"\npooler = "none"\npool_mode = "none"\n',
            "not a TCP port",
        ),
        (
            'name = "x"\n[endpoints.d]\nurl = "postgresql://u@h/db?sslmode=verify-full"\npassword_env = "P"\npooler = "none"\npool_mode = "none"\n',
            "verify-full needs ca_file",
        ),
        (
            'name = "x"\n[endpoints.d]\nurl = "postgresql://u@h/db"\npassword_env = "P"\npooler = "none"\npool_mode = "none"\nmax_connections = 0\n',
            "max_connections must be",
        ),
        ('name = "x y"\n', "`name` must be"),
        (
            'name = "x"\n[endpoints.d]\nurl = "postgresql://u@h/db?password=p"\npassword_env = "P"\npooler = "none"\npool_mode = "none"\n',
            "url carries a password",
        ),
        (
            'name = "x"\n[endpoints.d]\nurl = "postgresql://u@h/db?application_name=x"\npassword_env = "P"\npooler = "none"\npool_mode = "none"\n',
            "application_name not taken",
        ),
        (
            'name = "x"\n[endpoints.d]\nurl = "postgresql://u@h:0/db"\npassword_env = "P"\npooler = "none"\npool_mode = "none"\n',
            "not a TCP port",
        ),
        (
            'name = "x"\n[endpoints.d]\nurl = "postgresql://u@[::1/db"\npassword_env = "P"\npooler = "none"\npool_mode = "none"\n',
            "not a URL",
        ),
        ("\udcff\udcfe", "not a text file"),
    ],
)
def test_bad_target_files_are_refused_with_one_line(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "t.toml"
    path.write_bytes(body.encode("utf-8", "surrogateescape"))
    with pytest.raises(ConfigError, match=message):
        TargetFile.load(path, env={"P": "x"})


def test_a_target_endpoint_never_shows_its_password(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text(
        'name = "x"\n[endpoints.d]\nurl = "postgresql://u@h/db"\npassword_env = "P"\npooler = "none"\npool_mode = "none"\n'
    )
    target = TargetFile.load(path, env={"P": "hunter2-secret"})
    assert "hunter2-secret" not in repr(target) and "hunter2-secret" not in repr(target.topology("r"))
    assert "hunter2-secret" in target.topology("r").endpoint("d").dsn()


def test_failure_kinds() -> None:
    class E(Exception):
        sqlstate = "XX000"

    assert failure_kind(E("(ENOTFOUND) tenant/user a.b not found")) == ("tenant routing", "XX000")
    assert failure_kind(OSError('could not translate host name "nope" to address'))[0] == "DNS"


def test_tenant_routing_on_a_supavisor_target(topology, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A target endpoint declared as Supavisor (here the lab's router, in front of the local transaction pooler):
    the tenant cells log in as Supabase's `role.ref`, a wrong ref and no ref, and the refusals are held at connect."""
    pooler = topology.endpoint("pgbouncer-transaction")
    with TenantRouter(pooler.host, pooler.port, "realproject") as router:
        path = tmp_path / "supavisor.toml"
        path.write_text(
            'name = "fake-supabase"\n\n'
            + _endpoint(
                "transaction",
                router.port,
                "supavisor",
                "transaction",
                None,
                sslmode="disable",
                user="lab_app.realproject",
            )
        )
        results = tmp_path / "results"
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "lab",
                "run",
                "--target",
                str(path),
                "--read-only",
                "--network",
                "none",
                "--clients",
                "asyncpg-default,psycopg-async-no-prepare",
                "--scenarios",
                "tenant-right-user,tenant-wrong-ref,tenant-no-ref",
                "--results",
                str(results),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, PASSWORD_ENV: pooler.password},
        )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    rows = {
        r["cell"]: r for f in (results / "runs").glob("*.jsonl") for r in map(json.loads, f.read_text().splitlines())
    }
    assert len(rows) == 6
    wrong = rows["asyncpg-default-transaction-tenant-wrong-ref"]
    assert (
        wrong["outcome"]["sqlstate"] == "XX000" and wrong["outcome"]["phase"] == "connect" and wrong["matches"] is True
    )
    assert wrong["measures"]["user"] == "lab_app.someoneelse"
    assert rows["psycopg-async-no-prepare-transaction-tenant-right-user"]["outcome"]["kind"] == "ok"
    assert rows["asyncpg-default-transaction-tenant-no-ref"]["measures"]["user"] == "lab_app"


def test_the_rest_tier_and_the_network_model_on_a_target(topology, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The RCA's attempt 3 and the REST-vs-direct comparison against a target's REST tier, on its own network: a
    table of the run's own in public (announced to PostgREST, dropped at the end), https only, rows carrying the
    measured round trip the report's model uses."""
    password, key = topology.endpoint("direct").password, topology.endpoint("rest").keys["anon"]
    target = _target_of(topology, tmp_path / "target.toml", rest=True)
    results = tmp_path / "results"
    env = {**os.environ, PASSWORD_ENV: password, "LAB_TEST_ANON_KEY": key}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "lab",
            "run",
            "--target",
            str(target),
            "--clients",
            "httpx-per-call,httpx-shared,asyncpg-default",
            "--scenarios",
            "rca-attempt-3,single-insert",
            "--results",
            str(results),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    rows = [json.loads(line) for f in (results / "runs").glob("*.jsonl") for line in f.read_text().splitlines()]
    rest = [r for r in rows if r["experiment"] == "rest"]
    assert len(rest) == 2 and all(
        r["measures"]["tls"] and r["matches"] and r["measures"]["last_status"] == 201 for r in rest
    )
    assert rest[0]["measures"]["last_body"][0]["inserted_by"] == "anon"  # the stand-in switched to the JWT's role
    network = [r for r in rows if r["experiment"] == "network"]
    assert {r["measures"]["rtt_ms"] for r in network} == {0} and all(
        r["measures"]["tls"] for r in network if r["topology"]["name"] == "rest"
    )
    assert all(r["topology"]["measured_rtt_ms"] > 0 for r in network)
    report = subprocess.run(
        [sys.executable, "-m", "lab", "report", "--rows", str(results / "latest.jsonl"), "--results", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert report.returncode == 0, report.stderr
    text = (tmp_path / "report.md").read_text()
    assert "REST overhead on the target's own network" in text and "**Target:** test-target" in text
    for where, content in [
        ("the output", done.stdout + done.stderr),
        *((str(p), p.read_text(errors="replace")) for p in results.rglob("*") if p.is_file()),
    ]:
        assert password not in content and key not in content, f"a secret is in {where}"
    with psycopg.connect(topology.endpoint("direct").dsn()) as conn:
        left = conn.execute("SELECT count(*) FROM pg_class WHERE relname LIKE 'pooler\\_lab\\_%'").fetchone()[0]
    assert left == 0, "the run's tables were dropped at the end"


def test_a_target_never_gets_more_connections_than_it_allows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lab.options import LabOptions
    from lab.plan import CONNECTIONS, Plan

    monkeypatch.setenv("P", "x")
    path = tmp_path / "t.toml"
    path.write_text(
        'name = "small"\n'
        + "".join(
            f'[endpoints.{n}]\nurl = "postgresql://u.ref@h/db"\npassword_env = "P"\npooler = "{p}"\npool_mode = "{m}"\nmax_connections = {k}\n'
            for n, p, m, k in (("direct", "none", "none", 2), ("transaction", "supavisor", "transaction", 5))
        )
    )
    plan = Plan.build(LabOptions(target=path))
    for cell in plan.all():
        limit = {"direct": 2, "transaction": 5}[cell.topology]
        assert CONNECTIONS.get(cell.experiment, 1) <= limit, cell.id
    assert not [c for c in plan.all() if c.topology == "direct" and c.experiment in ("matrix", "session-state")]
    assert plan.of("tenant") and not plan.of("limits") and not plan.of("rest")
    assert {c.case.rtt_ms for c in plan.of("network")} == {0.0}


def test_a_target_run_against_a_pgbouncer_the_lab_did_not_start_exits_0(topology, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A PgBouncer configured as the lab's own, described by a file without TLS (as the lab's own DSNs): every cell
    that runs there holds to the rules, and what its preconditions do not hold for (the two-application cells, which
    need fresh server connections; TLS cells on an endpoint not declared to speak TLS) is not run, the rows saying
    why."""
    password = topology.endpoint("direct").password
    ep = topology.endpoint("pgbouncer-transaction")
    target = tmp_path / "target.toml"
    target.write_text(
        'name = "by-hand"\n\n'
        + _endpoint("pgbouncer-transaction", ep.port, "pgbouncer", "transaction", "1.18.0", "disable")
    )
    results = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, "-m", "lab", "run", "--target", str(target), "--experiments", "matrix,apps,network,session-state",
         "--rtts", "0", "--results", str(results)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, PASSWORD_ENV: password},
    )  # fmt: skip
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    rows = [json.loads(line) for f in (results / "runs").glob("*.jsonl") for line in f.read_text().splitlines()]
    assert {r["experiment"] for r in rows} == {"matrix", "network", "session-state"}, "no two-application cell"
    assert not [r["cell"] for r in rows if r["experiment"] == "network" and r["topology"]["tls"]], "no TLS cell there"
    assert all(any(n.startswith("apps:") for n in r["selection"]["not_run"]) for r in rows)
    assert all(r["matches"] is not False for r in rows)


def test_target_check_ends_against_a_server_that_authenticates_and_then_says_nothing(tmp_path: Path) -> None:
    """A server that completes the login and never answers a query: `target check` ends with one line."""
    import socket
    import struct
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    held: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            held.append(conn)
            first = conn.recv(8)
            if len(first) == 8 and struct.unpack("!ii", first)[1] == 80877103:  # SSLRequest: no TLS here
                conn.sendall(b"N")
            conn.recv(65536)  # the startup message
            ready = b"R" + struct.pack("!ii", 8, 0)  # AuthenticationOk
            status = b"server_version\x0015.0\x00"
            ready += b"S" + struct.pack("!i", 4 + len(status)) + status
            ready += b"K" + struct.pack("!iii", 12, 1, 2) + b"Z" + struct.pack("!i", 5) + b"I"
            conn.sendall(ready)  # and then nothing, ever

    threading.Thread(target=serve, daemon=True).start()
    target = tmp_path / "silent.toml"
    target.write_text('name = "silent"\n\n' + _endpoint("direct", port, "none", "none", None, "disable"))
    try:
        done = subprocess.run(
            [sys.executable, "-m", "lab", "target", "check", str(target)],
            cwd=ROOT, capture_output=True, text=True, timeout=60, env={**os.environ, PASSWORD_ENV: "x"},
        )  # fmt: skip
    finally:
        listener.close()
        for conn in held:
            conn.close()
    assert done.returncode == 3, done.stdout + done.stderr
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("direct: timeout:") and "no answer" in lines[0], done.stdout
    assert "Traceback" not in done.stderr
