"""Where the lab's files are (the repository's own folders, fixed relative to this package), and how a private file is written."""

import os
from pathlib import Path


def _root() -> Path:
    """The repository root, where compose/, experiments/ and results/ are: the checkout this package lives in, or,
    for a lab installed with `pip install .`, POOLER_LAB_ROOT or the directory pytest or the command runs from (or
    one above it)."""
    here = Path(__file__).resolve().parent.parent
    candidates = [Path(os.environ["POOLER_LAB_ROOT"])] if os.environ.get("POOLER_LAB_ROOT") else []
    candidates += [here, Path.cwd(), *Path.cwd().parents]
    for candidate in candidates:
        if (candidate / "compose" / "docker-compose.yml").is_file() and (candidate / "experiments").is_dir():
            return candidate.resolve()
    return here


#: The repository root; compose/, experiments/, docs/ and results/ hang off it.
ROOT = _root()
COMPOSE_DIR = ROOT / "compose"
RESULTS_DIR = ROOT / "results"
EXPERIMENTS_DIR = ROOT / "experiments"
EXPECTATIONS_FILE = EXPERIMENTS_DIR / "expectations.toml"
#: What the lab builds and installs outside the repository (servers built from source, client runtimes, sweep
#: environments, Docker's Compose plugin): per user, or /var/cache/pooler-lab as root, whose home the unprivileged
#: user the servers run as cannot enter. POOLER_LAB_CACHE moves it.
CACHE_DIR = Path(
    os.environ.get(
        "POOLER_LAB_CACHE",
        "/var/cache/pooler-lab" if os.geteuid() == 0 else Path.home() / ".cache" / "pooler-lab",
    )
)


def write_private(path: Path, data: str | bytes, mode: int = 0o600) -> Path:
    """Create `path` with `mode` from the first byte (never chmod'ed afterwards, so no watcher can read
    a password in between), replacing what was there."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
    return path
