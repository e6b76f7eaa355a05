"""Where the lab's files are: the repository's own folders, fixed relative to this package."""

from pathlib import Path

#: The repository root; compose/, experiments/, docs/ and results/ hang off it.
ROOT = Path(__file__).resolve().parent.parent
COMPOSE_DIR = ROOT / "compose"
RESULTS_DIR = ROOT / "results"
EXPERIMENTS_DIR = ROOT / "experiments"
EXPECTATIONS_FILE = EXPERIMENTS_DIR / "expectations.toml"
