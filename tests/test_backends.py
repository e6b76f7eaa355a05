"""Both backends start the topology compose/ describes, from the same files and settings."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
import yaml

from lab.machine.docker_engine import PLUGIN
from lab.paths import COMPOSE_DIR, ROOT
from lab.topology.backends.choice import choose, engine_status
from lab.topology.backends.docker import DockerBackend
from lab.topology.compose import load
from lab.topology.runstate import RUNTIME_BASE
from lab.topology.scram import scram_secret

ENGINE, WHY = engine_status()


def test_auto_keeps_to_the_users_own_choice_not_to_whatever_engine_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An engine that another user started does not switch this user's runs to Docker: auto is native until the user
    chooses Docker on purpose, and then Docker while an engine with Compose v2 answers."""
    from lab.topology.backends import choice

    monkeypatch.setenv("POOLER_LAB_BACKEND_FILE", str(tmp_path / "backend"))
    assert choose("auto") == "native"
    assert choice.explain("auto", "native").startswith("backend: native (auto: no backend chosen before")
    (tmp_path / "backend").write_text("docker\n")
    assert choose("auto") == ("docker" if ENGINE else "native")
    assert choose("native") == "native" and choice.remembered() == "native"
    assert choose("auto") == "native"


@pytest.mark.skipif(ENGINE, reason="a Docker engine answers here")
def test_docker_backend_refuses_clearly_without_an_engine() -> None:
    from lab.errors import MissingDependency

    with pytest.raises(MissingDependency, match=r"--backend docker: no Docker engine answers.*--backend native"):
        choose("docker")


@pytest.mark.skipif(not ENGINE, reason=f"needs a Docker engine that answers: {WHY}")
def test_an_engine_without_compose_v2_is_not_usable(tmp_path: Path, compose_containers, run_dirs) -> None:  # type: ignore[no-untyped-def]
    """Debian's docker.io: a real engine answers, Compose v2 is nowhere (the lab's cache is empty, the system has no
    plugin). Auto runs native and says why; --backend docker stops with one line naming the cause, status 3, and
    leaves no run directory and no container."""
    from lab.machine.docker_engine import compose_command

    if compose_command() is not None and compose_command()[0][0] != str(PLUGIN):  # type: ignore[index]
        pytest.skip("the system has its own Compose v2 plugin: an engine without one cannot be made here")
    env = {**os.environ, "POOLER_LAB_CACHE": str(tmp_path / "empty-cache")}
    before = run_dirs()
    done = subprocess.run(
        [sys.executable, "-m", "lab", "run", "--backend", "docker", "--experiments", "wire"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 3, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert (
        len(lines) == 1 and "answers, but Compose v2 is not installed" in lines[0] and "Traceback" not in done.stderr
    ), done.stderr
    for command in (
        ["up", "--backend", "docker"],
        ["sweep", "asyncpg", "--backend", "docker"],
    ):  # the same, before anything starts
        refused = subprocess.run(
            [sys.executable, "-m", "lab", *command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )
        assert refused.returncode == 3 and "Compose v2 is not installed" in refused.stderr, (command, refused.stderr)
        assert "Traceback" not in refused.stderr
    auto = subprocess.run(
        [
            sys.executable,
            "-m",
            "lab",
            "run",
            "--experiments",
            "wire",
            "--clients",
            "asyncpg-default",
            "--topologies",
            "direct",
            "--results",
            str(tmp_path / "results"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert auto.returncode == 0, auto.stdout[-2000:] + auto.stderr[-2000:]
    assert auto.stderr.splitlines()[0].startswith("backend: native (auto:"), auto.stderr
    assert run_dirs() <= before
    assert not compose_containers()


def test_native_run_renders_exactly_the_files_compose_mounts(topology) -> None:  # type: ignore[no-untyped-def]
    compose = yaml.safe_load((COMPOSE_DIR / "docker-compose.yml").read_text())
    mounted = {
        m.group(1)
        for svc in compose["services"].values()
        if not svc.get("profiles")
        for v in svc.get("volumes", [])
        if "/tls:" not in v and (m := re.match(r"\$\{LAB_RENDERED_DIR[^}]*\}/([^:]+):", v))
    }
    rendered_dir = RUNTIME_BASE / topology.run_id / "config"
    rendered = {
        str(p.relative_to(rendered_dir)) for p in rendered_dir.rglob("*") if p.is_file() and p.parent.name != "tls"
    }
    assert rendered == mounted


def test_native_processes_run_with_the_compose_settings(topology) -> None:  # type: ignore[no-untyped-def]
    topo = load()
    admin = {"user": topology.superuser, "password": topology.superuser_password}
    direct = topology.endpoint("direct")
    with psycopg.connect(direct.dsn(**admin)) as conn:
        assert conn.execute("SHOW max_connections").fetchone()[0] == topo.settings["POSTGRES_MAX_CONNECTIONS"]
        assert conn.execute("SHOW password_encryption").fetchone()[0] == "scram-sha-256"
        hba = conn.execute("SELECT auth_method FROM pg_hba_file_rules WHERE type = 'host'").fetchall()
        assert hba and {m for (m,) in hba} == {"scram-sha-256"}  # POSTGRES_INITDB_ARGS --auth-host=scram-sha-256
    for svc in topo.poolers:
        if svc.kind != "pgbouncer":  # SHOW CONFIG is PgBouncer's; the other kinds have tests of their own
            continue
        ep = topology.endpoint(svc.topology)
        with psycopg.connect(
            host=ep.host, port=ep.port, dbname="pgbouncer", autocommit=True, prepare_threshold=None, **admin
        ) as conn:
            config = {row[0]: row[1] for row in conn.execute("SHOW CONFIG").fetchall()}
        assert config["pool_mode"] == svc.pool_mode
        assert config["default_pool_size"] == str(svc.pool_size)
        assert config["auth_type"] == "scram-sha-256"
        assert config["max_client_conn"] == topo.settings["PGBOUNCER_MAX_CLIENT_CONN"]


def test_poolers_hold_the_servers_own_scram_secrets(topology) -> None:  # type: ignore[no-untyped-def]
    """PostgreSQL stores, for a password, the secret lab.topology.scram computes from it and the salt; every role of
    the poolers' auth_file has on the server the very secret the file holds; and through each pooler a client gets
    a server connection PgBouncer had to open anew, which it can only do by SCRAM pass-through with those secrets."""
    admin = {"user": topology.superuser, "password": topology.superuser_password}
    rendered = RUNTIME_BASE / topology.run_id / "config"
    with psycopg.connect(topology.endpoint("direct").dsn(**admin), autocommit=True) as conn:
        conn.execute("CREATE ROLE lab_scram_probe LOGIN PASSWORD 'probe-password'")
        try:
            stored = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = 'lab_scram_probe'").fetchone()[0]
        finally:
            conn.execute("DROP ROLE lab_scram_probe")
        salt = base64.b64decode(stored.split("$")[1].split(":")[1])
        assert scram_secret("probe-password", salt) == stored
        on_server = dict(
            conn.execute("SELECT rolname, rolpassword FROM pg_authid WHERE rolpassword IS NOT NULL").fetchall()
        )
        for svc in load().poolers:
            if svc.kind != "pgbouncer":  # userlist.txt is PgBouncer's; the other kinds keep vaults of their own
                continue
            userlist = dict(
                re.findall(r'^"([^"]+)" "([^"]+)"', (rendered / svc.name / "userlist.txt").read_text(), re.M)
            )
            assert userlist and all(on_server[role] == secret for role, secret in userlist.items())
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
            [topology.endpoint("direct").user],
        )
    for svc in load().poolers:
        if svc.kind != "pgbouncer":
            continue
        ep = topology.endpoint(svc.topology)
        with psycopg.connect(ep.dsn(), prepare_threshold=None, connect_timeout=5) as conn:
            assert conn.execute("SELECT current_user").fetchone()[0] == ep.user


@pytest.mark.skipif(not ENGINE, reason=f"the Docker backend needs a Docker engine with Compose v2: {WHY}")
def test_docker_backend_brings_up_the_compose_topology(compose_containers) -> None:  # type: ignore[no-untyped-def]
    """Every endpoint answers, rows would carry the images, the server writes its log where the lab reads it; `stop`
    leaves no container and no run directory."""
    from lab.observe.logins import log_path

    backend = DockerBackend()
    with backend as topo:
        project = (backend.state.topology or {})["compose_project"]  # type: ignore[union-attr]
        assert {"direct", "pgbouncer-transaction", "pgbouncer-session", "rest"} <= set(topo.endpoints)
        for name in ("direct", "pgbouncer-transaction", "pgbouncer-session"):
            ep = topo.endpoint(name)
            assert ep.facts.backend == "docker" and ep.facts.server_version and ep.facts.server_image
            with psycopg.connect(ep.dsn(), connect_timeout=10) as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
        assert topo.endpoint("pgbouncer-transaction").facts.pooler_version == "1.18.0"
        assert topo.endpoint("pgbouncer-transaction").facts.image
        rest = topo.endpoint("rest")
        assert rest.facts.stand_in is (rest.facts.images == "local")
        assert "connection authorized" in log_path(topo.run_id, "postgres").read_text()
        assert compose_containers(project)
    assert not Path(RUNTIME_BASE / topo.run_id).exists()
    assert not compose_containers(project)


@pytest.mark.skipif(not ENGINE, reason=f"the Docker backend needs a Docker engine with Compose v2: {WHY}")
def test_a_failed_docker_bring_up_says_why_in_one_line_and_leaves_nothing(
    tmp_path: Path,
    compose_containers,  # type: ignore[no-untyped-def]
    run_dirs,
) -> None:
    """A PgBouncer setting it rejects: `up --wait` fails; the error names the service and quotes its log, and no
    container, volume or run directory is left."""
    import docker

    from lab.errors import StartupError

    compose = tmp_path / "compose"
    shutil.copytree(COMPOSE_DIR, compose, ignore=shutil.ignore_patterns(".rendered", "images"))
    ini = compose / "pgbouncer" / "pgbouncer.ini"
    ini.write_text(ini.read_text().replace("pool_mode = ${POOL_MODE}", "pool_mode = ${POOL_MODE}\nno_such_setting = 1"))
    before = run_dirs()
    client = docker.from_env()
    volumes = {v.name for v in client.volumes.list()}
    backend = DockerBackend(compose_dir=compose)
    with pytest.raises(StartupError) as raised, backend:
        pass
    message = str(raised.value)
    assert "\n" not in message and "pgbouncer" in message and "no_such_setting" in message, message
    assert run_dirs() <= before
    assert not compose_containers()
    assert {v.name for v in client.volumes.list()} == volumes
    client.close()


def test_a_local_image_is_stale_once_what_it_is_built_from_changes(tmp_path: Path) -> None:
    """The stand-in's image carries the digest of its build context: an edit of lab/proxies/postgrest.py (here, of a
    copy) makes the image that was built before stale, so the next Docker run builds it again."""
    from dataclasses import replace

    from lab.topology.backends.images import local_set

    standin = next(i for i in local_set() if i.directory == "postgrest-standin")
    copy = tmp_path / "standin.py"
    copy.write_bytes(standin.extra[0][0].read_bytes())
    before = replace(standin, extra=((copy, "standin.py"),)).digest()
    assert before == standin.digest()
    copy.write_text(copy.read_text() + "\n# changed\n")
    assert replace(standin, extra=((copy, "standin.py"),)).digest() != before
