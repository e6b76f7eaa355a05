"""The expectation table: what each cell is expected to do, kept as data and held to on every run.

Rules live in experiments/expectations.toml. Each names the cells it covers with
globs (client, topology, scenario) and optional conditions on the endpoint's facts
(pool mode, pooler version range), the outcome it expects, a one-line reason and the
documentation that explains it. The first rule that applies wins, so specific rules
come before general ones. A cell no rule covers is an error, not a silent pass.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from lab.errors import ConfigError
from lab.results.outcome import KINDS, PHASES, Outcome

#: A rule whose outcome is "any" records the cell without holding it: for cells whose outcome
#: depends on what earlier clients left on shared server connections, never for a claim's evidence.
ANY = "any"
#: pooler_version = "undeclared": the rule applies where nobody said which version runs (a target file without one).
UNDECLARED = "undeclared"
#: the fields that take one value or a list of them (any of which applies, or is expected)
LISTS = ("client", "topology", "scenario", "pooler", "phase", "sqlstate")
FIELDS = {
    "client",
    "topology",
    "scenario",
    "pooler",
    "pool_mode",
    "pooler_version",
    "prepared_statements",
    "server_connections",
    "client_versions",
    "outcome",
    "error_class",
    "sqlstate",
    "phase",
    "reason",
    "docs",
}


@dataclass(frozen=True)
class Expectation:
    outcome: str
    reason: str
    client: str | tuple[str, ...] = "*"  # a glob, or several (the configurations a rule lists by name)
    topology: str | tuple[str, ...] = "*"
    scenario: str | tuple[str, ...] = "*"
    #: a glob (or several) over the endpoint's pooler family: none | pgbouncer | pgpool | pgagroal | supavisor | ...;
    #: a rule that may meet a pooler names the families it was observed on, so a new pooler meets no other's rules
    pooler: str | tuple[str, ...] = "*"
    pool_mode: str | None = None
    pooler_version: str | None = None  # a PEP 440 specifier, e.g. "<1.21", or "undeclared"
    #: "tracked" | "not tracked": whether the pooler tracks protocol-level prepared statements (PgBouncer 1.21+ with
    #: max_prepared_statements > 0; lab.topology.services.prepared_statements); a rule with it needs the fact known
    prepared_statements: str | None = None
    #: "fresh" | "inherited": whether the cell starts on server connections the lab opened for it (it ends the
    #: pooler's server connections before each cell) or on ones earlier clients used (a target, where the lab never
    #: ends server connections: what an application or an earlier run prepared there is met)
    server_connections: str | None = None
    client_versions: tuple[tuple[str, str], ...] = ()  # (distribution, specifier): {asyncpg = ">=0.30"} in the file
    error_class: str | None = None
    #: one SQLSTATE, or the ones any of which is expected: where the server reports two faces of one failure in the
    #: same cell and which one the application meets first is a race between its workers (psycopg's 42P05/26000)
    sqlstate: str | tuple[str, ...] | None = None
    phase: str | tuple[str, ...] | None = None  # one phase, or the phases any of which is expected
    docs: tuple[str, ...] = ()
    index: int = 0  # position in the file, for messages

    def applies(
        self, client: str, topology: str, scenario: str, facts: dict[str, Any], versions: dict[str, str] | None = None
    ) -> bool:
        if not (
            any(fnmatchcase(client, glob) for glob in _alternatives(self.client))
            and any(fnmatchcase(topology, glob) for glob in _alternatives(self.topology))
            and any(fnmatchcase(scenario, glob) for glob in _alternatives(self.scenario))
        ):
            return False
        if not any(fnmatchcase(str(facts.get("pooler") or "none"), g) for g in _alternatives(self.pooler)):
            return False
        if self.pool_mode is not None and facts.get("pool_mode") != self.pool_mode:
            return False
        if self.prepared_statements is not None and facts.get("prepared_statements") != self.prepared_statements:
            return False
        if self.server_connections is not None and server_connections(facts) != self.server_connections:
            return False
        if self.pooler_version == UNDECLARED:
            if facts.get("pooler_version"):
                return False
        elif self.pooler_version is not None:
            try:
                if Version(str(facts.get("pooler_version"))) not in SpecifierSet(self.pooler_version):
                    return False
            except InvalidVersion:
                return False
        for dist, spec in self.client_versions:
            try:
                if versions is None or Version(versions.get(dist, "")) not in SpecifierSet(spec):
                    return False
            except InvalidVersion:
                return False
        return True

    def mismatches(self, observed: Outcome) -> list[str]:
        """What differs between the observed outcome and this expectation; empty when it matches."""
        diffs: list[str] = []
        if self.outcome == ANY:
            return diffs
        if observed.kind != self.outcome:
            diffs.append(f"outcome {observed.kind!r}, expected {self.outcome!r}")
        for name in ("error_class", "sqlstate", "phase"):
            want = getattr(self, name)
            allowed = want if isinstance(want, tuple) else (want,)
            if want is not None and getattr(observed, name) not in allowed:
                shown = " or ".join(repr(w) for w in allowed)
                diffs.append(f"{name} {getattr(observed, name)!r}, expected {shown}")
        return diffs

    def describe(self) -> str:
        parts = [self.outcome]
        for n in ("phase", "error_class", "sqlstate"):
            value = getattr(self, n)
            if value:
                parts.append(f"{n}={' or '.join(value) if isinstance(value, tuple) else value}")
        return " ".join(parts) + f" (rule {self.index}: {self.reason})"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["docs"] = list(self.docs)
        data["client_versions"] = dict(self.client_versions)
        for name in LISTS:
            if isinstance(getattr(self, name), tuple):
                data[name] = list(getattr(self, name))
        return data


def server_connections(facts: dict[str, Any]) -> str:
    """ "inherited" on a target (the lab ends none of its server connections), "fresh" where the lab runs the pooler."""
    return "inherited" if facts.get("backend") == "target" else "fresh"


def _alternatives(value: Any) -> tuple[Any, ...]:
    """A field that takes one value or a list of them, as the values (none where it is not set)."""
    return tuple(value) if isinstance(value, (list, tuple)) else (value,) if value is not None else ()


def load(path: Path) -> list[Expectation]:
    try:
        doc = tomllib.loads(path.read_text())
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (the expectation table is TOML)") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the expectation table: {exc}") from None
    unknown_keys = set(doc) - {"rule"}
    if unknown_keys:
        raise ConfigError(
            f"{path}: unknown top-level key(s) {', '.join(sorted(unknown_keys))}; the table holds [[rule]] entries"
        )
    if not isinstance(doc.get("rule", []), list) or not all(isinstance(r, dict) for r in doc.get("rule", [])):
        raise ConfigError(f"{path}: `rule` must be [[rule]] tables")
    rules = []
    for i, raw in enumerate(doc.get("rule", []), 1):
        where = f"{path}: rule {i}"
        unknown = set(raw) - FIELDS
        if unknown:
            raise ConfigError(
                f"{where}: unknown field(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(FIELDS))}"
            )
        if raw.get("prepared_statements") not in (None, "tracked", "not tracked"):
            raise ConfigError(f'{where}: prepared_statements must be "tracked" or "not tracked"')
        if raw.get("server_connections") not in (None, "fresh", "inherited"):
            raise ConfigError(f'{where}: server_connections must be "fresh" or "inherited"')
        for name in ("client", "topology", "scenario", "pooler"):
            value = raw.get(name, "*")
            if not isinstance(value, str) and not (
                isinstance(value, list) and value and all(isinstance(v, str) for v in value)
            ):
                raise ConfigError(f"{where}: {name} = {value!r} must be a glob or a list of globs")
        for name in (
            "pool_mode",
            "pooler_version",
            "error_class",
            "reason",
        ):
            if name in raw and not isinstance(raw[name], str):
                raise ConfigError(f"{where}: {name} = {raw[name]!r} must be a string")
        if not isinstance(raw.get("docs", []), list) or not all(isinstance(d, str) for d in raw.get("docs", [])):
            raise ConfigError(f"{where}: docs must be a list of strings")
        if raw.get("outcome") not in (*KINDS, ANY):
            raise ConfigError(f"{where}: outcome must be one of {', '.join(KINDS)} (or {ANY!r}, recorded but not held)")
        phases, states = _alternatives(raw.get("phase")), _alternatives(raw.get("sqlstate"))
        if any(p not in PHASES for p in phases):
            raise ConfigError(f"{where}: phase must be one of {', '.join(PHASES)} (or a list of them)")
        if not all(isinstance(c, str) and len(c) == 5 for c in states) or (
            isinstance(raw.get("sqlstate"), list) and len(states) < 2
        ):
            raise ConfigError(
                f"{where}: sqlstate = {raw['sqlstate']!r} must be a 5-character SQLSTATE (or a list of several)"
            )
        # a list in the file (the values any of which is expected) is a tuple in the rule
        raw = {
            **raw,
            **{name: tuple(raw[name]) for name in LISTS if isinstance(raw.get(name), list)},
        }
        if not str(raw.get("reason", "")).strip():
            raise ConfigError(f"{where}: every rule needs a one-line reason")
        if raw.get("pooler_version") not in (None, UNDECLARED):
            try:
                SpecifierSet(raw["pooler_version"])
            except InvalidSpecifier:
                raise ConfigError(
                    f"{where}: pooler_version {raw['pooler_version']!r} is not a version range like '<1.21'"
                ) from None
        cv = raw.get("client_versions", {})
        if not isinstance(cv, dict):
            raise ConfigError(f'{where}: client_versions must be a table like {{asyncpg = ">=0.30"}}')
        for dist, spec in cv.items():
            try:
                if not isinstance(spec, str):
                    raise InvalidSpecifier(str(spec))
                SpecifierSet(spec)
            except InvalidSpecifier:
                raise ConfigError(f"{where}: client_versions.{dist} {spec!r} is not a version range") from None
        rules.append(
            Expectation(
                **{**raw, "docs": tuple(raw.get("docs", ())), "index": i, "client_versions": tuple(sorted(cv.items()))}
            )
        )
    if not rules:
        raise ConfigError(f"{path}: no [[rule]] entries")
    return rules


def lookup(
    rules: list[Expectation],
    client: str,
    topology: str,
    scenario: str,
    facts: dict[str, Any],
    versions: dict[str, str] | None = None,
) -> Expectation:
    for rule in rules:
        if rule.applies(client, topology, scenario, facts, versions):
            return rule
    raise LookupError(
        f"no expectation covers {client} / {topology} / {scenario}; add a rule to experiments/expectations.toml"
    )


def check_names(rules: list[Expectation], known: Mapping[str, Sequence[str]]) -> list[Expectation]:
    """Refuse a rule whose client, topology or scenario glob matches no name the lab has: it could never apply."""
    for rule in rules:
        for kind in ("client", "topology", "scenario"):
            for pattern in _alternatives(getattr(rule, kind)):
                if not any(fnmatchcase(name, pattern) for name in known[kind]):
                    raise ConfigError(
                        f"expectation rule {rule.index}: {kind} {pattern!r} matches no {kind} the lab has "
                        f"({', '.join(known[kind])})"
                    )
    return rules
