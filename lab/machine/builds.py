"""Servers the lab builds from source, for machines whose distribution ships another version (or none).

Debian bookworm ships PgBouncer 1.18; the lab also runs PgBouncer 1.24 (and pgagroal, which
bookworm does not package). A service kind names its Recipe (lab.topology.services); for each
the lab takes the source package of Debian's next release
(trixie) from Debian's own archive, checks the tarball against the SHA-256 in the archive's
Sources index, installs the build dependencies with apt, and builds into a cache outside the
repository (`CACHE_DIR/<package>/<version>`). A user with internet can also build any other
release from a tarball they name with its SHA-256. Every row measured through a built server
carries its version.
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lab.errors import MissingDependency
from lab.machine.apt import install_missing
from lab.paths import CACHE_DIR

ARCHIVE = "http://deb.debian.org/debian"
SUITE = os.environ.get("POOLER_LAB_BUILD_SUITE", os.environ.get("POOLER_LAB_PGBOUNCER_SUITE", "trixie"))
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Recipe:
    """How one server is built: its Debian source package, the binary it installs, what building it needs."""

    package: str
    binary: str  # relative to the install prefix
    build_packages: tuple[str, ...]
    #: the build commands, given the unpacked source and the install prefix
    steps: Callable[[Path, Path], list[list[str]]]
    #: what a container image of the build carries: (path under the prefix, its name in the image's build context)
    image_files: tuple[tuple[str, str], ...] = ()
    #: the lab's command that builds another version from a tarball, where it has one
    tarball_command: str | None = None

    @property
    def cache(self) -> Path:
        return CACHE_DIR / self.package


def autotools(src: Path, prefix: Path) -> list[list[str]]:
    """configure, make, make install."""
    return [
        ["./configure", f"--prefix={prefix}", "--without-cares", "--with-openssl"],
        ["make", "-j2"],
        ["make", "install"],
    ]


def cmake(src: Path, prefix: Path) -> list[list[str]]:
    """An out-of-tree cmake build. The installed binaries find the project's own library through an RPATH relative
    to themselves: without it pgagroal stops with `libpgagroal.so.1: cannot open shared object file` (cmake drops
    the build tree's RPATH on install)."""
    return [
        [
            "cmake",
            "-S",
            ".",
            "-B",
            "build",
            "-DCMAKE_BUILD_TYPE=Release",
            f"-DCMAKE_INSTALL_PREFIX={prefix}",
            "-DCMAKE_INSTALL_RPATH=$ORIGIN/../lib",  # no shell: cmake gets $ORIGIN literally, as the loader wants it
        ],
        ["cmake", "--build", "build", "-j2"],
        ["cmake", "--install", "build"],
    ]


def tarball(location: str, sha256: str, recipe: Recipe) -> Tarball:
    """A source tarball the user names (a path, or an http(s) URL) with the SHA-256 it must have; its version is read
    from its name (pgbouncer-1.23.1.tar.gz -> 1.23.1)."""
    if len(sha256) != 64 or any(c not in "0123456789abcdefABCDEF" for c in sha256):
        raise MissingDependency(f"--sha256 {sha256!r} is not a SHA-256 (64 hexadecimal digits)")
    name = location.rstrip("/").rsplit("/", 1)[-1]
    stem = name
    for ext in (".tar.gz", ".tgz", ".tar.xz", ".tar.bz2"):
        stem = stem.removesuffix(ext)
    version = stem.removeprefix(f"{recipe.package}_").removeprefix(f"{recipe.package}-").replace(".orig", "")
    if not version or not version[0].isdigit():
        raise MissingDependency(f"{name}: cannot read a {recipe.package} version from the tarball's name")
    if not location.startswith(("http://", "https://")) and not Path(location).is_file():
        raise MissingDependency(f"{location}: no such file")
    return Tarball(version, location, sha256, name)


def ensure(recipe: Recipe, version: str, progress: Progress = print) -> Path:
    """The binary of that version: built already, or built now from Debian's source if that is the version the
    archive serves; any other version must be built from a tarball first (`build-pgbouncer --tarball`)."""
    binary = built(recipe, version)
    if binary is not None:
        return binary
    source = debian_source(recipe.package)
    if source.version != version:
        how = recipe.tarball_command or "lab.machine.builds.build(recipe, tarball(PATH-OR-URL, SHA256, recipe))"
        raise MissingDependency(
            f"{recipe.package} {version} is not built and Debian {SUITE} serves {source.version}; build it from its "
            f"source tarball: {how}"
        )
    return build(recipe, source, progress)


def built(recipe: Recipe, version: str | None = None) -> Path | None:
    """The binary of that version the lab has built (None: the newest built), if any."""
    if version is not None:
        binary = recipe.cache / version / recipe.binary
        return binary if binary.exists() else None

    def key(path: Path) -> list[int]:
        return [int(x) for x in path.relative_to(recipe.cache).parts[0].split(".") if x.isdigit()]

    found = sorted(recipe.cache.glob(f"*/{recipe.binary}"), key=key)
    return found[-1] if found else None


@dataclass(frozen=True)
class Tarball:
    """A source tarball to build, and the SHA-256 it must have."""

    version: str
    url: str  # http(s):// or a local path
    sha256: str
    name: str


def debian_source(package: str, suite: str = SUITE) -> Tarball:
    """The upstream tarball of a source package in the suite's Sources index, with its SHA-256."""
    url = f"{ARCHIVE}/dists/{suite}/main/source/Sources.xz"
    try:
        with urllib.request.urlopen(url, timeout=60) as resp:
            text = lzma.decompress(resp.read()).decode("utf-8", "replace")
    except OSError as exc:
        raise MissingDependency(f"cannot reach Debian's archive ({ARCHIVE}) for {package}'s source: {exc}") from None
    for stanza in text.split("\n\n"):
        if not stanza.startswith(f"Package: {package}\n"):
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
            if len(parts) == 3 and ".orig.tar." in parts[2]:
                version = parts[2].removeprefix(f"{package}_").split(".orig.tar.")[0]
                return Tarball(version, f"{ARCHIVE}/{fields['Directory']}/{parts[2]}", parts[0], parts[2])
    raise MissingDependency(f"no {package} source package in Debian {suite}'s Sources index ({url})")


def build(recipe: Recipe, source: Tarball | None = None, progress: Progress = print) -> Path:
    """Fetch (or read), verify and build; returns the binary. Cached: a built version is only looked up."""
    source = source or debian_source(recipe.package)
    prefix = recipe.cache / source.version
    binary = prefix / recipe.binary
    if binary.exists():
        return binary
    install_missing(recipe.build_packages, f"building {recipe.package}")
    progress(f"building {recipe.package} {source.version} from {source.name} into {prefix} (once; about a minute)")
    with tempfile.TemporaryDirectory(prefix=f"{recipe.package}-build-") as tmp:
        archive = Path(tmp) / source.name
        if source.url.startswith(("http://", "https://")):
            with urllib.request.urlopen(source.url, timeout=120) as resp:
                archive.write_bytes(resp.read())
        else:
            shutil.copyfile(source.url, archive)
        digest = hashlib.sha256(archive.read_bytes()).hexdigest()
        if digest != source.sha256.lower():
            raise MissingDependency(
                f"{source.name}: SHA-256 {digest} is not the expected {source.sha256}; not building it"
            )
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
            top = tar.getnames()[0].split("/")[0]
        src = Path(tmp) / top
        log = Path(tmp) / "build.log"
        for step in recipe.steps(src, prefix):
            with open(log, "ab") as out:
                done = subprocess.run(step, cwd=src, stdout=out, stderr=subprocess.STDOUT)
            if done.returncode != 0:
                shutil.rmtree(prefix, ignore_errors=True)
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
                raise MissingDependency(
                    f"building {recipe.package} {source.version} failed at `{' '.join(step)}`:\n{tail}"
                )
    # the unprivileged user the servers run as must reach the binary
    for path in (CACHE_DIR, recipe.cache, *prefix.rglob("*"), prefix):
        if path.is_dir():
            os.chmod(path, 0o755)
    return binary
