"""Not a service kind: what the pgpool-II and pgagroal kinds share.

Both poolers answer a client's SCRAM exchange themselves and then log in to the server with the role's clear
password, so each needs every role's password, not the SCRAM secret PgBouncer's userlist.txt holds. Both keep it
AES-256-CBC-encrypted under a key of their own, with key and IV from OpenSSL's EVP_BytesToKey (SHA-1, no salt, one
round) of the key's text: pgagroal's users file (`user:BASE64`, what `pgagroal-admin user add` writes) and
pgpool-II's pool_passwd (`user:AESBASE64`, what `pg_enc -m` writes). The kinds compute those lines here from the
run's Credentials, so no clear password is ever written to a file, passed on a command line or printed.

Also here: the files a kind writes beside its rendered templates, and a listening port below the kernel's ephemeral
range (pgpool-II failed to bind a port inside it that a client's connection had just used).
"""

from __future__ import annotations

import base64
import hashlib
import os
import random
import re
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from lab.errors import StartupError
from lab.paths import write_private
from lab.topology.ports import HOST
from lab.topology.processes import RunAs
from lab.topology.render import Placement, render_template, service_values

if TYPE_CHECKING:
    from lab.topology.compose import Service
    from lab.topology.services.base import DockerSite, NativeSite


def _evp_bytes_to_key(secret: bytes, key_len: int = 32, iv_len: int = 16) -> tuple[bytes, bytes]:
    """OpenSSL's EVP_BytesToKey with SHA-1, no salt and one round: how both poolers derive their AES key and IV
    from the key's text (pgagroal 1.6.0: src/libpgagroal/security.c `derive_key_iv`; pgpool-II: the scheme of
    `pg_enc`, whose output this reproduces)."""
    derived, block = b"", b""
    while len(derived) < key_len + iv_len:
        block = hashlib.sha1(block + secret).digest()
        derived += block
    return derived[:key_len], derived[key_len : key_len + iv_len]


def encrypt_password(password: str, key: str) -> str:
    """base64(AES-256-CBC(password)) under `key`: byte for byte what `pgagroal-admin user add`, `pg_enc -m` and
    `openssl enc -aes-256-cbc -md sha1 -nosalt -a` write (checked against all three when these kinds were written)."""
    aes_key, iv = _evp_bytes_to_key(key.encode())
    padder = padding.PKCS7(128).padder()
    data = padder.update(password.encode()) + padder.finalize()
    encryptor = Cipher(algorithms.AES(aes_key), modes.CBC(iv)).encryptor()
    return base64.b64encode(encryptor.update(data) + encryptor.finalize()).decode()


def new_key() -> str:
    """A per-run key for a vault: printable, because both poolers read it as text (pgagroal from base64)."""
    return secrets.token_hex(24)


def write_secret_file(path: Path, text: str, owner: RunAs | None) -> None:
    """A file of secrets beside the service's rendered templates.

    Natively (`owner` given): created 0600 and handed to the user the servers run as, before the server starts.
    In Docker (`owner` None): the file compose bind-mounts was rendered already, so it is rewritten in place; a
    container sees a bind-mounted file by its inode, and a new file would stay invisible to it."""
    if owner is not None:
        write_private(path, text, 0o600)
        if owner.switches:
            os.chown(path, owner.uid, owner.gid)
        return
    with open(path, "r+b") as f:
        f.truncate(0)
        f.write(text.encode())


def ephemeral_range() -> tuple[int, int]:
    """The kernel's range for the local ports of outgoing connections (Linux: 32768-60999 unless changed)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def below_ephemeral(port: int, taken: set[int] | frozenset[int] = frozenset()) -> int:
    """`port` where it lies below the ephemeral range, else a free one below it.

    The lab's port picker asks the kernel for a free port, which comes from the ephemeral range; any client's
    outgoing connection may then use that very number as its local port, and a server that binds it afterwards
    fails (pgpool-II 4.3: `bind on socket failed with error "Address already in use"`, twice in a row at 57432 with
    only a TIME-WAIT connection there). Below the range no outgoing connection ever takes the port."""
    low, _ = ephemeral_range()
    if port < low or low <= 2048:
        return port
    candidates = list(range(max(1024, low - 12768), low))
    random.shuffle(candidates)
    for candidate in candidates:
        if candidate in taken:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((HOST, candidate))
            except OSError:
                continue
        return candidate
    return port


def render_natively(svc: Service, site: NativeSite) -> int:
    """Render the service's own templates again, natively, with two placements of its own; returns its port.

    - its port below the ephemeral range (`below_ephemeral`), recorded in `site.ports` so its endpoint names it;
    - its own log file in the run's logs/ (LOG_FILE): pgagroal writes the log the lab reads (logins, warnings) to
      a file only; on the console it colours every line. The lab captures the process's stderr into the same file
      (both append), so what only reaches stderr (libev's assertion failures) is there too.

    Same templates and values as lab.topology.render, so both backends still render the same files."""
    taken = {p for name, p in site.ports.items() if name != svc.name} | set(site.tls_ports.values())
    site.ports[svc.name] = port = below_ephemeral(site.ports[svc.name], taken)
    config = site.rundir / "config"
    placement = replace(
        Placement.native(site.topo, site.ports, site.tls_ports, config, site.rundir / "sockets", site.rundir / "state"),
        log_dir=str(site.logs),
    )
    values = service_values(site.topo, svc, placement, site.creds)
    for mount in svc.templated_mounts:
        template = site.topo.compose_dir / svc.labels["lab.templates"] / Path(mount.rendered).name
        write_secret_file(config / mount.rendered, render_template(template, values), site.owner)
    return port


# -- Docker --------------------------------------------------------------------------------------------------------


def rendered_dir(site: DockerSite) -> Path:
    """The run's rendered-config directory, whose files compose mounts: the run's CA is rendered into its tls/."""
    return Path(site.ca_file).parent.parent


def wait_for_login(
    port: int, site: DockerSite, what: str, ready: Callable[[], object] | None = None, timeout: float = 30.0
) -> None:
    """Until a real login through a container's pooler works (or `ready`, the kind's own test, passes): its container
    waits for the vault the lab writes after `compose up`, so its port opens only then."""
    from lab.topology.services.base import pg_probe

    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if ready is not None:
                ready()
            else:
                pg_probe(port, site.creds.app_user, site.creds.app_password)().close()
            return
        except (psycopg.Error, OSError) as exc:
            last = exc
            time.sleep(0.1)
    raise StartupError(f"{what}: no login through it {timeout:.0f}s after the lab wrote its vault (last error: {last})")


def container_version(service: str, command: list[str], project: str) -> str:
    """The version a binary prints about itself inside the running container of a compose service of the run's
    project (`docker exec`): what answered, not what the image's tag says."""
    import docker

    client = docker.from_env()
    try:
        labels = [f"com.docker.compose.service={service}", f"com.docker.compose.project={project}"]
        found = client.containers.list(filters={"label": labels})
        if not found:
            return "unknown"
        _, output = found[0].exec_run(command)  # the exit code says nothing: `pgagroal --version` exits 1
        text = output.decode(errors="replace") if isinstance(output, bytes) else ""
        match = re.search(r"(\d+\.\d+(?:\.\d+)?)", text)
        return match.group(1) if match else "unknown"
    finally:
        client.close()
