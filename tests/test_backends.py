"""Both backends start the topology compose/ describes, from the same files and settings."""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
import pytest
import yaml

from lab.paths import COMPOSE_DIR
from lab.topology.backends.docker import DockerBackend, choose, engine_status
from lab.topology.compose import load
from lab.topology.runstate import RUNTIME_BASE

ENGINE, WHY = engine_status()


def test_auto_picks_docker_only_when_an_engine_answers() -> None:
    assert choose("auto") == ("docker" if ENGINE else "native")
    assert choose("native") == "native"


@pytest.mark.skipif(ENGINE, reason="a Docker engine answers here")
def test_docker_backend_refuses_clearly_without_an_engine() -> None:
    from lab.errors import MissingDependency

    with pytest.raises(MissingDependency, match="--backend docker: .*--backend native"):
        choose("docker")


def test_an_engine_without_compose_v2_is_not_usable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Debian's docker.io: an engine answers, `docker compose` does not exist. Auto runs native and says why;
    --backend docker stops with one line naming the cause. (The engine is simulated; the plugin probe is real.)"""
    from lab.errors import MissingDependency
    from lab.topology.backends import docker as backend

    compose_ok, compose_why = backend.compose_v2()
    if compose_ok:
        pytest.skip(f"{compose_why} is installed here")
    assert "Compose v2" in compose_why or "no `docker` command" in compose_why
    monkeypatch.setattr(backend, "_engine", lambda: (True, "Docker engine 20.10.24"))
    backend.engine_status.cache_clear()
    try:
        assert choose("auto") == "native"
        assert "answers, but" in engine_status()[1]
        with pytest.raises(MissingDependency, match="Docker engine 20.10.24 answers, but"):
            choose("docker")
    finally:
        backend.engine_status.cache_clear()


def test_native_run_renders_exactly_the_files_compose_mounts(topology) -> None:  # type: ignore[no-untyped-def]
    compose = yaml.safe_load((COMPOSE_DIR / "docker-compose.yml").read_text())
    mounted = {
        re.match(r"\$\{LAB_RENDERED_DIR[^}]*\}/([^:]+):", v).group(1)  # type: ignore[union-attr]
        for svc in compose["services"].values() if not svc.get("profiles")
        for v in svc.get("volumes", []) if "/tls:" not in v
    }
    rendered_dir = RUNTIME_BASE / topology.run_id / "config"
    rendered = {str(p.relative_to(rendered_dir)) for p in rendered_dir.rglob("*") if p.is_file() and p.parent.name != "tls"}
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
        ep = topology.endpoint(svc.topology)
        with psycopg.connect(host=ep.host, port=ep.port, dbname="pgbouncer", autocommit=True, prepare_threshold=None, **admin) as conn:
            config = {row[0]: row[1] for row in conn.execute("SHOW CONFIG").fetchall()}
        assert config["pool_mode"] == svc.pool_mode
        assert config["default_pool_size"] == str(svc.pool_size)
        assert config["auth_type"] == "scram-sha-256"
        assert config["max_client_conn"] == topo.settings["PGBOUNCER_MAX_CLIENT_CONN"]


@pytest.mark.skipif(not ENGINE, reason=f"the Docker backend needs a Docker engine: {WHY}")
def test_docker_backend_brings_up_the_compose_topology() -> None:
    with DockerBackend() as topo:
        assert {"direct", "pgbouncer-transaction", "pgbouncer-session", "rest"} <= set(topo.endpoints)
        for name in ("direct", "pgbouncer-transaction", "pgbouncer-session"):
            ep = topo.endpoint(name)
            assert ep.facts["backend"] == "docker" and ep.facts["server_version"]
            with psycopg.connect(ep.dsn(), connect_timeout=10) as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
        assert topo.endpoint("pgbouncer-transaction").facts["pooler_version"]
        assert topo.endpoint("rest").facts["stand_in"] is False
    assert not Path(RUNTIME_BASE / topo.run_id).exists()
