"""Config rendering: one set of templates, two placements, nothing left unfilled."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from lab.errors import ConfigError
from lab.paths import COMPOSE_DIR
from lab.topology.compose import interpolate, load, load_settings
from lab.topology.render import Credentials, Placement, render, render_template

CREDS = Credentials(superuser_password="su-secret", app_password="app-secret")


def _native(tmp_path: Path) -> dict[str, Path]:
    topo = load()
    ports = {name: 40000 + i for i, name in enumerate(topo.services)}
    tls_ports = {"nginx": 41000}
    return render(
        topo, Placement.native(topo, ports, tls_ports, tmp_path, tmp_path / "sock", tmp_path / "state"), CREDS, tmp_path
    )


def test_every_mounted_file_is_rendered_without_placeholders(tmp_path: Path) -> None:
    written = _native(tmp_path)
    compose = yaml.safe_load((COMPOSE_DIR / "docker-compose.yml").read_text())
    mounts = [
        v
        for svc in compose["services"].values()
        if not svc.get("profiles")
        for v in svc.get("volumes", [])
        if v.startswith("${LAB_RENDERED_DIR") and "/tls:" not in v
    ]
    templates = {k: p for k, p in written.items() if not k.startswith("tls/")}
    assert len(templates) == len(mounts) > 0  # every mounted template rendered, nothing more
    assert {"tls/ca.crt", "tls/server.crt", "tls/server.key"} <= set(written)
    for path in templates.values():
        text = path.read_text()
        assert "${" not in text, path
        assert path.stat().st_mode & 0o077 == 0, f"{path} holds passwords and must be private"


def test_native_placement_fills_ports_modes_and_passwords(tmp_path: Path) -> None:
    written = _native(tmp_path)
    topo = load()
    server_port = 40000 + list(topo.services).index("postgres")
    tx = written["pgbouncer-transaction/pgbouncer.ini"].read_text()
    session = written["pgbouncer-session/pgbouncer.ini"].read_text()
    assert re.search(r"^pool_mode = transaction$", tx, re.M) and re.search(r"^pool_mode = session$", session, re.M)
    assert f"default_pool_size = {topo.settings['PGBOUNCER_TRANSACTION_POOL_SIZE']}" in tx
    assert f"host=127.0.0.1 port={server_port}" in tx
    assert "auth_type = scram-sha-256" in tx
    assert f"auth_file = {tmp_path}/pgbouncer-transaction/userlist.txt" in tx
    userlist = written["pgbouncer-session/userlist.txt"].read_text()
    secret = CREDS.scram("lab_app", "app-secret")
    assert f'"lab_app" "{secret}"' in userlist and "app-secret" not in userlist  # a secret, never the password
    pgconf = written["postgres/postgresql.conf"].read_text()
    assert f"max_connections = {topo.settings['POSTGRES_MAX_CONNECTIONS']}" in pgconf
    assert "password_encryption = scram-sha-256" in pgconf
    assert f"LOGIN PASSWORD '{secret}'" in written["postgres/init.sql"].read_text()  # the same secret on the server


def test_docker_placement_uses_service_names_and_container_paths(tmp_path: Path) -> None:
    topo = load()
    written = render(topo, Placement.docker(topo), CREDS, tmp_path)
    tx = written["pgbouncer-transaction/pgbouncer.ini"].read_text()
    assert "host=postgres port=5432" in tx
    assert "listen_port = 6543" in tx
    assert "auth_file = /etc/pgbouncer/userlist.txt" in tx
    assert "listen_port = 5432" in written["pgbouncer-session/pgbouncer.ini"].read_text()
    nginx = written["nginx/nginx.conf"].read_text()
    assert "listen *:8000;" in nginx and "listen *:8443 ssl;" in nginx and "server postgrest:3000;" in nginx
    assert "ssl_certificate /etc/lab-tls/server.crt;" in nginx
    assert "proxy_set_header Host $host;" in nginx  # nginx's own variables survive rendering


def test_placeholder_without_value_names_file_and_placeholder(tmp_path: Path) -> None:
    template = tmp_path / "x.ini"
    template.write_text("pool_mode = ${NO_SUCH_VALUE}\n")
    with pytest.raises(ConfigError, match=r"x\.ini: placeholder \$\{NO_SUCH_VALUE\} has no value"):
        render_template(template, {})


def test_settings_must_be_whole_numbers(tmp_path: Path) -> None:
    text = (
        (COMPOSE_DIR / ".env")
        .read_text()
        .replace("PGBOUNCER_TRANSACTION_POOL_SIZE=2", "PGBOUNCER_TRANSACTION_POOL_SIZE=two")
    )
    (tmp_path / ".env").write_text(text)
    with pytest.raises(ConfigError, match="PGBOUNCER_TRANSACTION_POOL_SIZE='two' is not a whole number"):
        load_settings(tmp_path)


def test_ports_must_be_tcp_ports(tmp_path: Path) -> None:
    text = (COMPOSE_DIR / ".env").read_text().replace("LAB_SESSION_PORT=5432", "LAB_SESSION_PORT=99999")
    (tmp_path / ".env").write_text(text)
    with pytest.raises(ConfigError, match="LAB_SESSION_PORT=99999 is not a TCP port"):
        load_settings(tmp_path)


def test_compose_interpolation_forms() -> None:
    env = {"A": "1", "EMPTY": ""}
    assert interpolate("${A}-${B:-dflt}-${EMPTY:-x}-${EMPTY-y}-$$", env) == "1-dflt-x--$"
    with pytest.raises(ConfigError, match="variable B is required: give it"):
        interpolate("${B:?give it}", env)


def test_pool_sizes_make_clients_share_backends() -> None:
    """The premise of every transaction-mode failure: more client connections than server ones."""
    from lab.workloads.harness import POOL_SIZE

    topo = load()
    tx = next(s for s in topo.poolers if s.pool_mode == "transaction")
    assert tx.pool_size is not None and tx.pool_size < POOL_SIZE
    session = next(s for s in topo.poolers if s.pool_mode == "session")
    assert session.pool_size is not None and session.pool_size >= 5  # the RCA's max_size=5 fits


def test_each_pgbouncer_renders_its_own_settings(tmp_path: Path) -> None:
    """PgBouncer 1.24 runs twice in every run: with its defaults (and track_extra_parameters), and with
    max_prepared_statements = 0; 1.18's file has neither setting, which it does not know."""
    topo = load()
    ports = {name: 40000 + i for i, name in enumerate(topo.services)}
    written = render(
        topo,
        Placement.native(topo, ports, {"nginx": 41000}, tmp_path, tmp_path / "s", tmp_path / "st"),
        CREDS,
        tmp_path,
    )
    default = written["pgbouncer-prepared/pgbouncer.ini"].read_text()
    assert "track_extra_parameters = search_path" in default and "\nmax_prepared_statements" not in default
    assert "max_prepared_statements = 0" in written["pgbouncer-prepared-off/pgbouncer.ini"].read_text()
    old = written["pgbouncer-transaction/pgbouncer.ini"].read_text()
    assert "\nmax_prepared_statements" not in old and "track_extra_parameters" not in old


@pytest.mark.parametrize("host_network", [False, True], ids=["bridge", "host"])
def test_every_profile_renders_for_containers_and_compose_v2_accepts_the_result(
    tmp_path: Path, host_network: bool
) -> None:
    """`lab render` with every profile, for either network mode: no placeholder left, files readable by the
    containers' own users (inside a directory only the owner enters), and the real Compose v2 (where the lab has
    one) accepts the file with the run's env files: every image, port and mount resolved."""
    import os
    import subprocess

    from lab.machine.docker_engine import compose_command
    from lab.topology.backends.docker import HOST_NETWORK_FILE
    from lab.topology.render import logs_dir, write_compose_secrets

    profiles = ("supavisor",)
    creds = Credentials.generate()
    described = load(profiles=profiles)
    run_env: dict[str, str] = {}
    for i, (published, listen) in enumerate(pv for s in described.services.values() for pv in s.port_variables):
        run_env.update({listen: str(42000 + i), "LAB_DB_HOST": "127.0.0.1"} if host_network else {published: ""})
    topo = load(secrets={**creds.compose_secrets(), **run_env}, profiles=profiles)
    out = tmp_path / "config"
    written = render(topo, Placement.docker(topo, host_network), creds, out, shared=True)
    assert {"pgbouncer-prepared/pgbouncer.ini", "pgbouncer-prepared-off/pgbouncer.ini"} <= set(written)
    for path in written.values():
        assert "${" not in path.read_text(), path
        assert path.stat().st_mode & 0o044 == 0o044, f"{path}: a container's own user must read it"
    assert out.stat().st_mode & 0o077 == 0, "the rendered directory is the owner's only"
    listen = (out / "pgbouncer-transaction" / "pgbouncer.ini").read_text()
    assert (
        f"listen_addr = {'127.0.0.1' if host_network else '*'}" in listen
        and "logfile = /lab-logs/pgbouncer-transaction.log" in listen
    )
    found = compose_command()
    if found is None:
        pytest.skip("no Compose v2 here to validate the file with (`./pooler-lab docker start` fetches one)")
    env_file = write_compose_secrets(creds, out, logs_dir(tmp_path / "logs"), run_env)
    files = [
        "-f",
        str(COMPOSE_DIR / "docker-compose.yml"),
        *(["-f", str(COMPOSE_DIR / HOST_NETWORK_FILE)] if host_network else []),
    ]
    done = subprocess.run(
        [
            *found[0],
            *files,
            "--env-file",
            str(COMPOSE_DIR / ".env"),
            "--env-file",
            str(env_file),
            *[a for p in profiles for a in ("--profile", p)],
            "config",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COMPOSE_PROJECT_NAME": "pooler-lab-config-test"},
    )
    assert done.returncode == 0, done.stderr
    config = __import__("json").loads(done.stdout)
    assert set(config["services"]) == set(topo.services)
    for name, svc in config["services"].items():
        if host_network:
            assert svc.get("network_mode") == "host" and not svc.get("ports"), name
        else:
            assert all(p["host_ip"] == "127.0.0.1" and not p.get("published") for p in svc["ports"]), (
                name,
                svc["ports"],
            )
