"""`python -m lab sweep`: one matrix run per version, each in its own cached environment, rows carrying the version."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lab.errors import LabError
from lab.results.rows import read_rows
from lab.sweep import Spec

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.lifecycle


def test_spec_parsing_and_refusals() -> None:
    assert Spec.parse("psycopg[binary]==3.1.20").requirement == "psycopg[binary]==3.1.20"
    assert Spec.parse("asyncpg").version is None
    with pytest.raises(LabError, match="NAME==VERSION"):
        Spec.parse("asyncpg>=0.29")
    with pytest.raises(LabError, match="no client configuration uses 'httpx'; sweepable packages: asyncpg"):
        Spec.parse("httpx==0.28.1").clients()


def test_sweep_over_two_asyncpg_versions(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "lab",
            "sweep",
            "asyncpg==0.30.0",
            "asyncpg==0.31.0",
            "--scenarios",
            "repeated-query",
            "--topologies",
            "direct,pgbouncer-transaction",  # where asyncpg's versions may differ, and where they must not
            "--results",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    versions = {}
    for path in (tmp_path / "runs").glob("*-sweep-asyncpg-*.jsonl"):
        rows = list(read_rows(path))
        assert rows, path
        versions[path.name] = {r.client["packages"]["asyncpg"] for r in rows}
    assert sorted(v for vs in versions.values() for v in vs) == ["0.30.0", "0.31.0"]
    assert "differ between versions" in done.stderr
