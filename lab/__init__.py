"""pooler-lab: reproduce Python PostgreSQL client / connection pooler incompatibilities."""

from pathlib import Path

#: The repository root; compose/, experiments/ and results/ hang off it.
ROOT = Path(__file__).resolve().parent.parent
COMPOSE_DIR = ROOT / "compose"
RESULTS_DIR = ROOT / "results"
