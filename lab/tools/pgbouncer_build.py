"""A PgBouncer with protocol-level prepared statements (1.21+), for machines whose distribution ships an older one.

Debian bookworm ships 1.18. The lab takes the source package of Debian's next
release (trixie) from Debian's own archive, checks the tarball against the
SHA-256 in the archive's signed-by-Release Sources index, and builds it into a
cache outside the repository (~/.cache/pooler-lab/pgbouncer/<version>; /var/cache/pooler-lab when root). Opt-in:
`python -m lab build-pgbouncer`, or `run --prepared-pgbouncer`, which builds it
when missing. Every row measured through it carries its version.
"""

from __future__ import annotations

import hashlib
import lzma
import os
import shutil
import subprocess
import tarfile
import tempfile
import urllib.request
from pathlib import Path

from lab.errors import MissingDependency

ARCHIVE = "http://deb.debian.org/debian"
SUITE = os.environ.get("POOLER_LAB_PGBOUNCER_SUITE", "trixie")
# root's home is closed to the unprivileged user PgBouncer runs as, so root builds into /var/cache
_DEFAULT_CACHE = Path("/var/cache/pooler-lab") if os.geteuid() == 0 else Path.home() / ".cache" / "pooler-lab"
CACHE = Path(os.environ.get("POOLER_LAB_CACHE", _DEFAULT_CACHE)) / "pgbouncer"
BUILD_PACKAGES = ("gcc", "make", "pkg-config", "libevent-dev", "libssl-dev")


def built() -> Path | None:
    """The newest PgBouncer the lab has built, if any."""
    found = sorted(CACHE.glob("*/bin/pgbouncer"), key=lambda p: [int(x) for x in p.parts[-3].split(".") if x.isdigit()])
    return found[-1] if found else None


def _source_entry() -> tuple[str, str, str, str]:
    """(upstream version, directory, tarball name, sha256) of pgbouncer in the suite's Sources index."""
    url = f"{ARCHIVE}/dists/{SUITE}/main/source/Sources.xz"
    with urllib.request.urlopen(url, timeout=60) as resp:
        text = lzma.decompress(resp.read()).decode("utf-8", "replace")
    for stanza in text.split("\n\n"):
        if not stanza.startswith("Package: pgbouncer\n"):
            continue
        fields: dict[str, str] = {}
        key = None
        for line in stanza.splitlines():
            if line.startswith(" ") and key:
                fields[key] += "\n" + line.strip()
            elif ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        for line in fields.get("Checksums-Sha256", "").splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[2].endswith(".orig.tar.gz"):
                version = parts[2].removeprefix("pgbouncer_").removesuffix(".orig.tar.gz")
                return version, fields["Directory"], parts[2], parts[0]
    raise MissingDependency(f"no pgbouncer source package in Debian {SUITE}'s Sources index ({url})")


def _build_deps() -> None:
    missing = [p for p in BUILD_PACKAGES if subprocess.run(["dpkg", "-s", p], capture_output=True).returncode != 0]
    if not missing:
        return
    if os.geteuid() != 0:
        raise MissingDependency(
            f"building PgBouncer needs {' '.join(missing)}: run `sudo apt-get install {' '.join(missing)}`"
        )
    done = subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
        capture_output=True,
        text=True,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )
    if done.returncode != 0:
        raise MissingDependency(f"apt-get install {' '.join(missing)} failed: {done.stderr.strip()[-500:]}")


def build(progress=print) -> Path:  # type: ignore[no-untyped-def]
    """Download, verify and build; returns the binary. Cached: a second call only looks."""
    try:
        version, directory, tarball, sha256 = _source_entry()
    except OSError as exc:
        raise MissingDependency(f"cannot reach Debian's archive ({ARCHIVE}) for PgBouncer's source: {exc}") from None
    prefix = CACHE / version
    binary = prefix / "bin" / "pgbouncer"
    if binary.exists():
        return binary
    _build_deps()
    progress(f"building PgBouncer {version} from Debian {SUITE}'s source into {prefix} (once; about a minute)")
    with tempfile.TemporaryDirectory(prefix="pgbouncer-build-") as tmp:
        archive = Path(tmp) / tarball
        with urllib.request.urlopen(f"{ARCHIVE}/{directory}/{tarball}", timeout=120) as resp:
            archive.write_bytes(resp.read())
        digest = hashlib.sha256(archive.read_bytes()).hexdigest()
        if digest != sha256:
            raise MissingDependency(
                f"{tarball}: SHA-256 {digest} does not match Debian's index ({sha256}); not building it"
            )
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        src = Path(tmp) / f"pgbouncer-{version}"
        log = Path(tmp) / "build.log"
        for step in (
            ["./configure", f"--prefix={prefix}", "--without-cares", "--with-openssl"],
            ["make", "-j2"],
            ["make", "install"],
        ):
            with open(log, "ab") as out:
                done = subprocess.run(step, cwd=src, stdout=out, stderr=subprocess.STDOUT)
            if done.returncode != 0:
                shutil.rmtree(prefix, ignore_errors=True)
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
                raise MissingDependency(f"building PgBouncer {version} failed at `{' '.join(step)}`:\n{tail}")
    for path in (CACHE.parent, CACHE, *prefix.rglob("*"), prefix):
        if path.is_dir():
            os.chmod(path, 0o755)
    return binary
