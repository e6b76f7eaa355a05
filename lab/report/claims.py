"""The claims table (C1-C14): verdicts computed from rows by rules in code. Filled in by issue 4."""

from __future__ import annotations

from lab.report.data import Rows


def opening_markdown(data: Rows) -> str:
    return ""


def claims_markdown(data: Rows) -> str:
    return "_Claim verdicts are not computed yet._"
