"""Which images the Docker backend runs: the official ones, or a local set built from Debian's packages.

The official images (compose/.env) are the default wherever they are present or a
registry answers. Machines that reach no registry build the local set
(compose/images/, named in compose/images.local.env): a bookworm base made with
`debootstrap` from the machine's own apt mirror and imported into the engine, then one
image per service, all built with the docker SDK (`docker build --network host`).
Built images are reused while they are built from what the repository holds (a label
carries a digest of their build context); `./pooler-lab docker images`, and any Docker
run, builds what is missing or stale.

Which image a service runs is the compose file's to say, so a new service kind brings its
image with its compose block: its `image: ${VARIABLE:-...}` names the variable, its
`lab.image` label the folder of compose/images/ its local image is built from
(`lab.image.base`: the folder of the local image it is built on), `lab.image.always_local`
that both sets build it here, and its kind (ServiceKind.image_files) the files the build
puts beside the folder's (a build of the lab's, or the lab's own code).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from dotenv import dotenv_values

from lab.errors import ConfigError, EnvironmentProblem, MissingDependency
from lab.machine.binaries import system_binary
from lab.options import IMAGE_SETS
from lab.paths import COMPOSE_DIR
from lab.topology import compose
from lab.topology.services import kind_of

IMAGES_DIR = COMPOSE_DIR / "images"
LOCAL_ENV = COMPOSE_DIR / "images.local.env"
OFFICIAL_ENV = COMPOSE_DIR / ".env"
BASE = "pooler-lab/debian:bookworm"
REGISTRY = ("registry-1.docker.io", 443)
Progress = Callable[[str], None]


@dataclass(frozen=True)
class LocalImage:
    """One image of the local set: its tag, its directory under compose/images/, and files the build puts beside it."""

    tag: str
    directory: str
    base: str = BASE
    extra: tuple[tuple[Path, str], ...] = ()  # (file, its name in the build context)
    #: built here in either set: the lab's own code or build, or an image no project publishes that the lab checked
    always_local: bool = False

    def digest(self) -> str:
        """What the image is built from (its directory's files, the extra files, its base's name): an image labelled
        with another digest is stale (a Dockerfile or the stand-in changed since) and is built again."""
        import hashlib

        h = hashlib.sha256(self.base.encode())
        for path in sorted((IMAGES_DIR / self.directory).rglob("*")):
            if path.is_file():
                h.update(path.name.encode() + b"\0" + path.read_bytes())
        for path, name in self.extra:
            h.update(name.encode() + b"\0" + path.read_bytes())
        return h.hexdigest()[:16]


def _services(profiles: Iterable[str]) -> list[compose.Service]:
    return list(compose.load(profiles=tuple(profiles)).services.values())


def local_set(profiles: Iterable[str] = (), progress: Progress = print) -> list[LocalImage]:
    """The local images a run with these profiles needs, one per `lab.image` folder, in the compose file's order (an
    image another is built on comes first where the waves of ensure_local need it)."""
    tags = {k: v for k, v in dotenv_values(LOCAL_ENV).items() if v}
    services = [s for s in _services(profiles) if s.labels.get("lab.image")]
    folders: dict[str, compose.Service] = {}
    for svc in services:
        folders.setdefault(svc.labels["lab.image"], svc)
    for folder, svc in folders.items():
        if svc.image_variable not in tags:
            raise ConfigError(f"{LOCAL_ENV}: no local image for {svc.image_variable} (service {svc.name})")
        if not (IMAGES_DIR / folder).is_dir():
            raise ConfigError(f"service {svc.name}: lab.image {folder!r} is no folder of {IMAGES_DIR}")
    tag_of = {folder: tags[svc.image_variable] for folder, svc in folders.items() if svc.image_variable}
    images = []
    for folder, svc in folders.items():
        base = svc.labels.get("lab.image.base")
        if base is not None and base not in tag_of:
            raise ConfigError(f"service {svc.name}: lab.image.base {base!r} is the lab.image of no service")
        images.append(
            LocalImage(
                tag_of[folder],
                folder,
                base=tag_of[base] if base else BASE,
                extra=kind_of(svc).image_files(svc, progress),
                always_local=svc.labels.get("lab.image.always_local") == "true",
            )
        )
    return images


def official(profiles: Iterable[str] = ()) -> list[str]:
    """The official images a run with these profiles pulls (those built here in either set left out)."""
    return list(
        dict.fromkeys(
            s.image for s in _services(profiles) if s.image and s.labels.get("lab.image.always_local") != "true"
        )
    )


def env_file(images: str) -> Path | None:
    """The env file that names the images of a choice: None for the official ones (compose/.env has them)."""
    return LOCAL_ENV if images == "local" else None


def _image(client, tag: str):
    """The engine's image of that tag, or None."""
    import docker

    try:
        return client.images.get(tag)
    except docker.errors.ImageNotFound:
        return None


def _present(client, tag: str) -> bool:
    return _image(client, tag) is not None


def _current(client, image: LocalImage) -> bool:
    """Built here from what the repository now holds (its lab.context label)?"""
    found = _image(client, image.tag)
    return found is not None and found.labels.get("lab.context") == image.digest()


def registry_answers(timeout: float = 3.0) -> bool:
    import socket

    try:
        with socket.create_connection(REGISTRY, timeout=timeout):
            return True
    except OSError:
        return False


def choose(client, images: str, profiles: Iterable[str] = ()) -> tuple[str, str]:
    """official | local | auto → (the choice, why). auto: official where they are here or a registry answers, else local."""
    if images not in IMAGE_SETS:
        raise ConfigError(f"--images {images!r}: choose official, local or auto")
    if images != "auto":
        return images, f"--images {images}"
    wanted = official(profiles)
    if all(_present(client, t) for t in wanted):
        return "official", "the official images are on this machine"
    if registry_answers():
        return "official", f"a registry answers ({REGISTRY[0]})"
    return (
        "local",
        f"no registry answers ({REGISTRY[0]}) and the official images are not here: local images from Debian's packages",
    )


def obtainable(client) -> tuple[bool, str]:
    """Can a run get its images here: the local or the official set present, a registry to pull from, or what
    building the local set needs (debootstrap, and root to run it)? (yes/no, which way or why not)"""
    import os

    if all(_current(client, i) for i in local_set()):
        return True, "local images built"
    if all(_present(client, t) for t in official()):
        return True, "official images present"
    if system_binary("debootstrap") is not None and os.geteuid() == 0:
        return True, "local images can be built (about 2 min, once)"
    if registry_answers():
        return True, "official images can be pulled"
    return False, (
        "no images: none are here, no registry answers, and building them needs debootstrap as root "
        "(`./pooler-lab docker images`)"
    )


def _apt_sources() -> list[Path]:
    """This machine's apt source files: deb822 ones, then the classic list (where they exist)."""
    return [
        p
        for p in [*sorted(Path("/etc/apt/sources.list.d").glob("*.sources")), Path("/etc/apt/sources.list")]
        if p.is_file()
    ]


def _mirror() -> str:
    """The Debian mirror this machine's apt uses (debootstrap fetches the base from it)."""
    for path in _apt_sources():
        try:
            text = path.read_text()
        except OSError:
            continue
        m = re.search(r"^URIs:\s*(\S+/debian)\s*$", text, re.M) or re.search(
            r"^deb\s+(?:\[[^]]*\]\s+)?(\S+/debian)\s+bookworm", text, re.M
        )
        if m:
            return m.group(1)
    return "http://deb.debian.org/debian"


def _build_base(client, progress: Progress) -> None:
    debootstrap = system_binary("debootstrap")
    if debootstrap is None:
        raise MissingDependency(
            "debootstrap not found; install it with `sudo apt-get install debootstrap` "
            "(`./pooler-lab docker images` does this for you)"
        )
    mirror = _mirror()
    progress(f"building the base image {BASE}: debootstrap bookworm from {mirror} (about a minute, once)")
    with tempfile.TemporaryDirectory(prefix="pooler-lab-base-") as tmp:
        root = Path(tmp) / "root"
        done = subprocess.run(
            [str(debootstrap), "--variant=minbase", "bookworm", str(root), mirror], capture_output=True, text=True
        )
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise EnvironmentProblem(f"debootstrap bookworm from {mirror} failed: {' | '.join(tail)}")
        # the machine's own apt sources (with updates and security), so images get the versions the host has
        for src in _apt_sources():
            if src.stat().st_size:
                shutil.copy2(src, root / "etc/apt" / src.relative_to("/etc/apt"))
        for deb in (root / "var/cache/apt/archives").glob("*.deb"):
            deb.unlink()
        archive = Path(tmp) / "base.tar"
        subprocess.run(["tar", "-C", str(root), "-cf", str(archive), "."], check=True, capture_output=True)
        repo, tag = BASE.split(":")
        client.api.import_image_from_file(str(archive), repository=repo, tag=tag)


def _build(client, image: LocalImage, progress: Progress) -> None:
    import docker

    with tempfile.TemporaryDirectory(prefix="pooler-lab-image-") as tmp:
        context = Path(tmp)
        shutil.copytree(IMAGES_DIR / image.directory, context, dirs_exist_ok=True)
        for path, name in image.extra:
            (context / name).parent.mkdir(parents=True, exist_ok=True)  # a name may keep its package's path
            shutil.copy2(path, context / name)
        t0 = time.monotonic()
        try:
            client.images.build(
                path=str(context),
                tag=image.tag,
                network_mode="host",
                buildargs={"BASE": image.base},
                rm=True,
                forcerm=True,
                labels={"lab.built_from": f"compose/images/{image.directory}", "lab.context": image.digest()},
            )
        except docker.errors.BuildError as exc:
            tail = [str(c.get("stream", c.get("error", ""))).strip() for c in exc.build_log][-5:]
            raise EnvironmentProblem(
                f"building {image.tag} failed: {exc.msg}; last lines: {' | '.join(t for t in tail if t)}"
            ) from None
        progress(f"built {image.tag} ({time.monotonic() - t0:.0f}s)")


def ensure_local(
    client,
    profiles: Iterable[str] = (),
    progress: Progress = print,
    rebuild: bool = False,
    only_always_local: bool = False,
) -> list[str]:
    """Build the local images that are missing (all of them with rebuild); the tags a run needs. `only_always_local`:
    just the images built here in either set (the lab's own, in the official set)."""
    from concurrent.futures import ThreadPoolExecutor

    import docker

    needed = local_set(profiles, progress)
    if only_always_local:
        needed = [i for i in needed if i.always_local]
    missing = [i for i in needed if rebuild or not _current(client, i)]
    replaced = {
        found.id for tag in [*([BASE] if rebuild else []), *(i.tag for i in missing)] if (found := _image(client, tag))
    }
    if rebuild or not _present(client, BASE):
        _build_base(client, progress)

    def build(image: LocalImage) -> None:
        own = docker.from_env(timeout=600)  # a client per thread
        try:
            _build(own, image, progress)
        finally:
            own.close()

    # images on the base are independent (apt downloads and dpkg overlap); those on another local image come after it
    for wave in ([i for i in missing if i.base == BASE], [i for i in missing if i.base != BASE]):
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(build, wave))
    for image_id in replaced:  # the images a rebuild replaced, now untagged: the lab's own, so it removes them
        try:
            client.images.remove(image_id)
        except docker.errors.APIError:
            pass  # still used by a container or tagged elsewhere: left alone
    return [i.tag for i in needed]


def prepare(
    client,
    images: str,
    profiles: Iterable[str] = (),
    progress: Progress = print,
    rebuild: bool = False,
) -> str:
    """Choose the image set and, for the local one, build what is missing or stale: the choice."""
    profiles = tuple(profiles)
    chosen, why = choose(client, images, profiles)
    progress(f"images: {chosen} ({why})")
    if chosen == "local":
        official_only = [s.name for s in _services(profiles) if not s.labels.get("lab.image")]
        if official_only:
            raise MissingDependency(
                f"{', '.join(official_only)} needs its official image (--images official, where a registry "
                "answers): no local one can be built from Debian's packages"
            )
        tags = ensure_local(client, profiles, progress, rebuild=rebuild)
        progress(f"local images ready: {', '.join(tags)}")
    else:  # the lab's own code has no official image: built here from the same files in either set
        tags = ensure_local(client, profiles, progress, rebuild=rebuild, only_always_local=True)
        progress(f"the lab's own images ready: {', '.join(tags)}")
    return chosen


def describe(client, tag: str) -> str:
    """'name@sha256:…' where the image came from a registry, else 'name (id sha256:…, built here)'."""
    image = client.images.get(tag)
    digests = image.attrs.get("RepoDigests") or []
    if digests:
        return str(digests[0])
    return f"{tag} ({image.id[:19]}, built here)"
