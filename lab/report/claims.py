"""The claims table (C1-C14 of docs/claims.md): each verdict computed from rows by a rule here.

A rule picks the rows that bear on its claim, decides the verdict from their
outcomes and measurements, and says in one finding what they show. Nothing is
typed in: with other rows (another driver version, another pooler) the same rules
give other verdicts. A claim whose rows are missing from the results gets
"not measured in these results" rather than a guess.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from lab.report.data import Rows, versions_of
from lab.report.fixes import fixes
from lab.report.network import medians, overhead_points, tls_version
from lab.report.rtt_model import DIRECT_REFERENCE, trips
from lab.report.text import code, link, text
from lab.results.rows import Row

HOLDS, FAILS, CONDITIONAL, LOCAL = (
    "holds",
    "does not hold",
    "holds only under stated conditions",
    "cannot be checked locally",
)
MISSING = "not measured in these results"

CLAIMS = {
    "C1": "`FATAL: Tenant or user not found` is caused by the pooler in transaction mode combined with asyncpg / psycopg 3.",
    "C2": "PgBouncer in transaction mode does not keep connection state between transactions.",
    "C3": "asyncpg and psycopg 3 send SCRAM-SHA-256 authentication parameters with every query.",
    "C4": 'The pooler therefore treats each query as a new connection whose tenant/user is already "finished".',
    "C5": 'Attempt 1 fails: `asyncpg.create_pool(..., server_settings={"jit": "off"})` against the transaction pooler.',
    "C6": 'Attempt 2 fails the same way: psycopg 3 `AsyncConnectionPool(..., kwargs={"options": "-c jit=off"})`.',
    "C7": "Attempt 3 works: an httpx POST to `{SUPABASE_URL}/rest/v1/{table}` with apikey, Bearer and `Prefer: return=representation`.",
    "C8": "The REST API is 100–200 ms slower than direct PostgreSQL.",
    "C9": "A direct connection is fully compatible with asyncpg / psycopg 3 but limited in connections and needs an application-side pool.",
    "C10": "A session-mode pooler keeps session state and is compatible with asyncpg / psycopg 3.",
    "C11": "psycopg2 is more compatible with PgBouncer; it blocks the event loop and needs a thread pool executor.",
    "C12": "SQLAlchemy async with its connection pool is a working solution.",
    "C13": "Recommended: psycopg 3 with a direct pool of 2–10 connections, REST as the fallback when the pool is exhausted.",
    "C14": "Session mode needs a dashboard change and exists only on paid plans.",
}


@dataclass
class Verdict:
    claim: str
    verdict: str
    finding: str
    rows: list[Row] = field(default_factory=list)
    docs: list[str] = field(default_factory=list)


def _pick(data: Rows, experiment: str, **match: object) -> list[Row]:
    out = []
    for r in data.of(experiment):
        ok = True
        for key, want in match.items():
            got = {
                "client": r.client["name"],
                "topology": r.topology["name"],
                "scenario": r.scenario,
                "pool_mode": r.topology.get("pool_mode"),
            }[key]
            ok = ok and (bool(want(got)) if callable(want) else got == want)
        if ok:
            out.append(r)
    return out


def _is_tenant_error(r: Row) -> bool:
    text = f"{r.outcome.message} {r.outcome.detail}".lower()
    return ("tenant" in text and "not found" in text) or "tenant identifier" in text


def doc_name(url: str) -> str:
    """A link's name a reader can scan: the site and the page (or repository and issue), not a number."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = parts.netloc.removeprefix("www.").removeprefix("docs.")
    path = [p for p in parts.path.split("/") if p]
    if host == "github.com" and len(path) >= 2:
        tail = (
            f" #{path[3]}"
            if len(path) >= 4 and path[2] in ("issues", "pull")
            else f" {path[-1]}"
            if len(path) > 2
            else ""
        )
        return f"{path[1]}{tail}"
    page = (path[-1] if path else "").removesuffix(".html")
    return f"{host.split('.')[0]} {page}{' #' + parts.fragment if parts.fragment else ''}".strip()


def _docs(rows: list[Row]) -> list[str]:
    seen: dict[str, None] = {}
    for r in rows:
        for d in (r.expected or {}).get("docs", []):
            seen[d] = None
    return list(seen)


def _fmt(r: Row) -> str:
    o = r.outcome
    if o.kind != "error":
        return o.kind
    code = o.sqlstate or o.error_class
    return f"{code} at {o.phase}: {o.message}" if o.phase else f"{code}: {o.message}"


def c1(data: Rows) -> Verdict:
    tenant = data.of("tenant")
    if not tenant:
        return Verdict("C1", MISSING, "no tenant-routing rows")
    wrong = [r for r in tenant if r.scenario in ("tenant-wrong-ref", "tenant-no-ref")]
    right = [r for r in tenant if r.scenario == "tenant-right-user"]
    tx_matrix = _pick(data, "matrix", pool_mode="transaction")
    wrong_at_connect = all(r.outcome.kind == "error" and r.outcome.phase == "connect" for r in wrong)
    tenant_errors_in_right = [r for r in right + tx_matrix if _is_tenant_error(r)]
    session_wrong = [r for r in wrong if r.topology.get("pool_mode") == "session"]
    right_failures = sorted(
        {f"{r.client['name']}: {r.outcome.sqlstate} at {r.outcome.phase}" for r in right if r.outcome.kind == "error"}
    )
    example = next((r for r in wrong if r.outcome.sqlstate), wrong[0] if wrong else None)
    verdict = FAILS if wrong_at_connect and not tenant_errors_in_right else CONDITIONAL
    finding = (
        f"All {len(wrong)} cells with a wrong or missing project ref fail at connect, before any query, for every driver "
        f"(and through the session pooler too: {len(session_wrong)} cells), with the router's FATAL "
        f"{example.outcome.sqlstate if example else 'XX000'} ({_fmt(example) if example else ''}). "
        f"With the right user name no cell shows a tenant error; what the transaction pooler does to asyncpg / psycopg 3 is "
        f"a prepared-statement error at a later query ({'; '.join(right_failures) or 'none'}). The tenant error comes from the user name, "
        f"not from the pool mode or the driver."
    )
    elsewhere = [r for r in data.of("auth") if r.scenario == "auth-wrong-region"]
    if elsewhere:
        same = all(
            _is_tenant_error(r) or "not found" in (r.outcome.message or "") + (r.outcome.detail or "")
            for r in elsewhere
        )
        finding += (
            f" The right user name and password at a pooler of another region get {'the same' if same else 'a'} tenant error in "
            f"{len(elsewhere)} of {len(elsewhere)} cells: the address is the other cause."
        )
    return Verdict("C1", verdict, finding, wrong + right + elsewhere, _docs(wrong + right + elsewhere))


def c2(data: Rows) -> Verdict:
    every = _pick(data, "session-state", pool_mode="transaction")
    rows = [r for r in every if r.scenario.startswith("state-")]
    leaks = [r for r in every if r.scenario.startswith("leak-")]
    if not rows:
        return Verdict("C2", MISSING, "no session-state rows through the transaction pooler")
    lost = [r for r in rows if r.m.state == "lost"]
    moved = [r for r in rows if not r.m.same_backend]
    kinds = ", ".join(f"{r.scenario.removeprefix('state-')}: {r.m.state}" for r in rows)
    kept = [r.scenario.removeprefix("state-") for r in rows if r.m.state == "kept"]
    verdict = HOLDS if len(lost) == len(rows) else CONDITIONAL
    extra = (
        (
            f" It does keep what it tracks: {', '.join(kept)} (parameters the server reports, which the pooler sets again on the "
            "next server connection); everything else set on a connection is lost or leaks to other clients."
        )
        if kept
        else ""
    )
    if leaks:
        leaked = [r.scenario.removeprefix("leak-") for r in leaks if r.m.state == "leaked"]
        extra += (
            f" Another client on the same server connection sees {', '.join(leaked) or 'none'} of what one client set "
            f"({len(leaked)} of {len(leaks)} settings leak: PgBouncer sets a tracked parameter again only where the next client "
            "has a value of its own)."
        )
    return Verdict(
        "C2",
        verdict,
        f"Through the transaction pooler, with the later transaction on another backend ({len(moved)}/{len(rows)} cells): "
        f"{kinds}.{extra}",
        rows + leaks,
        _docs(rows + leaks),
    )


def c3(data: Rows) -> Verdict:
    rows = [r for r in data.of("wire") if r.client["name"].startswith(("asyncpg", "psycopg"))]
    if not rows:
        return Verdict("C3", MISSING, "no wire-trace rows")
    per_connection = {r.m.authentication_requests / max(1, r.m.client_connections) for r in rows}
    per_query_max = max(r.m.authentication_requests / r.m.queries for r in rows)
    pooled_once = all(r.m.client_connections == 1 for r in rows)
    verdict = FAILS if pooled_once and per_query_max < 1 else HOLDS
    nullpool = [r for r in data.of("wire") if r.client["name"] == "sqlalchemy-asyncpg-pgbouncer"]
    extra = (
        (
            f" The only configuration that authenticates again and again is SQLAlchemy's NullPool ({nullpool[0].m.client_connections} "
            f"connections for {nullpool[0].m.queries} queries): one SCRAM exchange per new connection, not per query."
        )
        if nullpool
        else ""
    )
    return Verdict(
        "C3",
        verdict,
        f"On the wire, each asyncpg / psycopg 3 client connection authenticates once, at startup "
        f"({', '.join(f'{x:g}' for x in sorted(per_connection))} authentication requests per connection: SASL, SASLContinue, SASLFinal), "
        f"then sends {rows[0].m.queries} queries with no authentication message among them "
        f"(at most {per_query_max:.2f} authentication requests per query, all from connection setup).{extra}",
        rows,
        [*_docs(rows), "https://www.postgresql.org/docs/15/sasl-authentication.html"],
    )


def c4(data: Rows) -> Verdict:
    rows = [r for r in data.of("wire") if r.topology.get("pooler")]
    if not rows:
        return Verdict("C4", MISSING, "no wire-trace rows through a pooler")
    same = [r for r in rows if r.m.pooler_logins == r.m.client_connections]
    per_query = [r for r in rows if (r.m.pooler_logins or 0) >= r.m.queries]
    server = sum(r.m.server_logins or 0 for r in rows)
    verdict = FAILS if not [r for r in per_query if r.client["name"] != "sqlalchemy-asyncpg-pgbouncer"] else HOLDS
    return Verdict(
        "C4",
        verdict,
        f"PgBouncer logged one login per client connection in {len(same)}/{len(rows)} cells, whatever the number of queries "
        f"({rows[0].m.queries}); the server logged {server} new logins for all of them together (PgBouncer reuses its "
        f"server connections). Only a client that opens a connection per query (NullPool) makes a login per query.",
        rows,
        _docs(rows),
    )


def _attempt(data: Rows, claim: str, attempt: str) -> Verdict:
    """The attempt on PgBouncer (the matrix) and through the Supavisor-like router (the tenant experiment), said apart:
    PgBouncer refuses the startup parameter; Supavisor accepts and drops it, and the prepared-statement failure follows."""
    rows = _pick(data, "matrix", client=attempt)
    routed = _pick(data, "tenant", client=attempt)
    if not rows:
        return Verdict(claim, MISSING, f"no {attempt} rows")
    by_topology = {
        r.topology["name"]: r
        for r in rows
        if "ignore_startup_parameters" not in str(r.topology.get("pooler_settings") or "")
    }
    tx = [r for r in rows + routed if r.topology.get("pool_mode") == "transaction"]
    if not tx:
        return Verdict(claim, MISSING, "no transaction-pooler cell")
    fails_tx = all(r.outcome.kind == "error" for r in tx)
    tenant = any(_is_tenant_error(r) for r in rows + routed)
    parts = [
        f"{t}: {_fmt(r)}" + (f" (cause: {r.outcome.detail})" if r.outcome.detail else "")
        for t, r in by_topology.items()
    ]
    finding = "On PgBouncer — " + "; ".join(parts) + "."
    if routed:
        jit = sorted({str(r.m.server_jit) for r in routed})
        finding += (
            " Through a Supavisor-like router (startup handling as Supavisor's source has it) — "
            + "; ".join(f"{r.topology['name']}: {_fmt(r)}" for r in routed)
            + f": it connects, the startup parameter is dropped, not refused (the server's jit stays {'/'.join(jit)}),"
            " and what fails is the driver's prepared statements through the transaction pooler."
        )
    ignoring = [r for r in rows if "ignore_startup_parameters" in str(r.topology.get("pooler_settings") or "")]
    if ignoring:
        finding += (
            " With PgBouncer's ignore_startup_parameters covering it: "
            + "; ".join(f"{r.topology['name']}: {_fmt(r)}" for r in ignoring)
            + " (it connects; the parameter is dropped)."
        )
    alter = _pick(data, "matrix", client=f"{attempt}-alter-role")
    if alter:
        finding += (
            " With jit=off as a role setting (ALTER ROLE) instead: "
            + "; ".join(f"{r.topology['name']}: {_fmt(r)}" for r in alter)
            + "."
        )
    verdict = HOLDS if fails_tx else FAILS
    note = "" if tenant else " It fails, but never with 'Tenant or user not found'."
    return Verdict(claim, verdict, finding + note, rows + routed + alter, _docs(rows + routed + alter))


def c5(data: Rows) -> Verdict:
    return _attempt(data, "C5", "rca-attempt-1")


def c6(data: Rows) -> Verdict:
    return _attempt(data, "C6", "rca-attempt-2")


def c7(data: Rows) -> Verdict:
    rows = [r for r in data.of("rest") if r.scenario == "rca-attempt-3" and r.client["name"] == "httpx-per-call"]
    if not rows:
        return Verdict("C7", MISSING, "no REST rows")
    ok = [r for r in rows if r.outcome.kind == "ok"]
    server = rows[0].topology.get("rest_server", "?") + (
        " — a stand-in for PostgREST" if rows[0].topology.get("stand_in") else ""
    )
    statuses = sorted({str(r.m.last_status) for r in rows})
    return Verdict(
        "C7",
        HOLDS if len(ok) == len(rows) else FAILS,
        f"The RCA's function, unmodified, over {', '.join('https' if r.m.tls else 'http' for r in rows)}: "
        f"{len(ok)}/{len(rows)} cells ok, status {', '.join(statuses)} with the inserted row in the body. REST server: {server}.",
        rows,
        _docs(rows),
    )


def c8(data: Rows) -> Verdict:
    rows = data.of("network")
    points = overhead_points(rows, "median")  # what a caller typically pays
    if not points:
        return Verdict("C8", MISSING, "no network rows")
    m, version = medians(rows), tls_version(rows)
    per_call_tls = [p for p in points if p.client == "httpx-per-call" and p.tls]
    shared = [p for p in points if p.client != "httpx-per-call"]
    biggest = max(points, key=lambda p: p.measured_ms)
    rest0 = m.get(("httpx-per-call", "rest", True), {}).get(0.0)
    direct0 = m.get((*DIRECT_REFERENCE, True), {}).get(0.0)
    rt, dt = trips("rest", "httpx-per-call", True, version), trips("pg", DIRECT_REFERENCE[0], True, version)
    conditions = ""
    if rest0 is not None and direct0 is not None and rt and dt and rt.total > dt.total:
        base, extra = rest0 - direct0, rt.total - dt.total
        lo, hi = (100 - base) / extra, (200 - base) / extra
        conditions = (
            f" By the round-trip model fitted to these rows, the per-call https client reaches 100–200 ms of overhead at an RTT of "
            f"{lo:.0f}–{hi:.0f} ms ({base:.0f} ms of client construction and server work, plus {extra} extra round trip(s): "
            f"{rt.explain()} against {dt.explain()})."
        )
    in_band = [p for p in points if 100 <= p.measured_ms <= 200]
    verdict = CONDITIONAL if conditions or in_band else FAILS
    keep_alive = f"{max(p.measured_ms for p in shared):.0f} ms" if shared else "not measured"
    worst = f"{max(p.measured_ms for p in per_call_tls):.0f} ms" if per_call_tls else "not measured"
    return Verdict(
        "C8",
        verdict,
        f"Measured median overhead (REST − {DIRECT_REFERENCE[0]} direct) up to {biggest.measured_ms:.0f} ms at {biggest.rtt_ms:g} ms RTT; the RCA's per-call "
        f"client over https: at most {worst} in these runs; a kept-alive REST client (httpx shared, supabase-py): at most {keep_alive}, "
        f"and negative beyond a few ms of RTT (one round trip per insert against the asyncpg pool's two).{conditions}",
        rows,
        [
            "https://www.rfc-editor.org/rfc/rfc8446#section-2",
            "https://www.python-httpx.org/advanced/clients/#why-use-a-client",
        ],
    )


def c9(data: Rows) -> Verdict:
    direct = [
        r for r in _pick(data, "matrix", topology="direct") if r.client["name"].startswith(("asyncpg", "psycopg"))
    ]
    burst = [r for r in data.of("limits") if r.scenario.startswith("burst")]
    if not direct or not burst:
        return Verdict("C9", MISSING, "matrix or burst rows missing")
    compatible = all(r.outcome.kind == "ok" for r in direct)
    refused = [r for r in burst if r.topology["name"] == "direct" and r.outcome.kind == "error"]
    pooled_ok = [r for r in burst if r.topology.get("pooler") and r.outcome.kind == "ok"]
    maxc = next((r.topology.get("max_connections") for r in burst if r.topology.get("max_connections")), "?")
    failed = ", ".join(f"{r.client['name']}: {r.m.failed}/{r.m.clients} refused" for r in refused)
    verdict = HOLDS if compatible and refused else CONDITIONAL
    return Verdict(
        "C9",
        verdict,
        f"Direct, every asyncpg / psycopg 3 configuration passes every scenario ({len(direct)} cells). A burst of "
        f"{burst[0].m.clients} clients against max_connections={maxc}: {failed}; through the poolers all complete "
        f"({len(pooled_ok)} cells). The limit is real and an application-side pool (or a pooler) is what keeps under it.",
        direct + burst,
        _docs(burst),
    )


def c10(data: Rows) -> Verdict:
    state = [r for r in _pick(data, "session-state", pool_mode="session") if r.scenario.startswith("state-")]
    matrix = [
        r for r in _pick(data, "matrix", pool_mode="session") if r.client["name"].startswith(("asyncpg", "psycopg"))
    ]
    if not state or not matrix:
        return Verdict("C10", MISSING, "session-pooler rows missing")
    kept = all(r.m.state == "kept" for r in state)
    workload_ok = all(r.outcome.kind == "ok" for r in matrix if not r.scenario.startswith("rca"))
    rca = [r for r in _pick(data, "matrix", pool_mode="session") if r.client["name"].startswith("rca")]
    rca_fail = [r for r in rca if r.outcome.kind == "error"]
    routed = [r for r in _pick(data, "tenant", pool_mode="session") if r.client["name"].startswith("rca")]
    verdict = HOLDS if kept and workload_ok and not rca_fail else CONDITIONAL if kept and workload_ok else FAILS
    finding = (
        f"Session state through the session pooler: {'all kept' if kept else 'not all kept'} ({len(state)} kinds). "
        f"asyncpg / psycopg 3 workloads: {'all ok' if workload_ok else 'failures'}."
    )
    if rca_fail:
        finding += (
            " But on PgBouncer the RCA's own pools fail there too, at connect: "
            + "; ".join(_fmt(r) for r in rca_fail)
            + " — PgBouncer in any mode refuses startup parameters it does not track."
        )
    if routed:
        finding += (
            " Through a Supavisor-like router in session mode the same pools "
            + ("work" if all(r.outcome.kind == "ok" for r in routed) else "fail")
            + ": "
            + "; ".join(f"{r.client['name']}: {_fmt(r)}" for r in routed)
            + " (Supavisor drops the parameter instead of refusing it)."
        )
    return Verdict("C10", verdict, finding, state + matrix + rca + routed, _docs(state + matrix + rca + routed))


def c11(data: Rows) -> Verdict:
    tx = _pick(data, "matrix", pool_mode="transaction")
    lag = data.of("loop-lag")
    if not tx or not lag:
        return Verdict("C11", MISSING, "matrix or loop-lag rows missing")
    pg2 = [r for r in tx if r.client["name"] == "psycopg2-executor"]
    pg2_ok = all(r.outcome.kind == "ok" for r in pg2)
    also_ok = sorted(
        {r.client["name"] for r in tx if r.outcome.kind == "ok" and r.client["name"] != "psycopg2-executor"}
        - {r.client["name"] for r in tx if r.outcome.kind != "ok"}
    )
    in_loop = [r for r in lag if r.client["name"] == "psycopg2-in-loop"]
    executor = [r for r in lag if r.client["name"] == "psycopg2-executor"]
    blocks = all(r.m.max_lag_ms >= 0.5 * r.m.query_sleep_ms for r in in_loop)
    frees = all(r.m.max_lag_ms < 0.1 * r.m.query_sleep_ms for r in executor)
    verdict = CONDITIONAL if pg2_ok and blocks and frees else FAILS
    return Verdict(
        "C11",
        verdict,
        f"psycopg2 passes every transaction-pooler scenario ({len(pg2)} cells): it binds parameters on the client and never prepares. "
        f"Called inside a coroutine it blocks the loop for the whole query (max lag {', '.join(str(r.m.max_lag_ms) for r in in_loop)} ms "
        f"for a {in_loop[0].m.query_sleep_ms:g} ms query); through the executor, {', '.join(str(r.m.max_lag_ms) for r in executor)} ms. "
        f"'More compatible' holds against the drivers' defaults only: {', '.join(also_ok)} pass the same cells without threads.",
        pg2 + lag,
        _docs(pg2 + lag),
    )


def c12(data: Rows) -> Verdict:
    rows = [r for r in data.of("matrix") if r.client["name"].startswith("sqlalchemy")]
    if not rows:
        return Verdict("C12", MISSING, "no SQLAlchemy rows")
    failing = sorted({(r.client["name"], r.topology["name"]) for r in rows if r.outcome.kind != "ok"})
    working = sorted({r.client["name"] for r in rows} - {c for c, _ in failing})
    verdict = HOLDS if not failing else CONDITIONAL
    detail = "; ".join(f"{c} through {t}" for c, t in failing)
    return Verdict(
        "C12",
        verdict,
        f"Fails: {detail or 'nothing'}. Works everywhere: {', '.join(working) or 'none'} (SQLAlchemy's documented PgBouncer settings). "
        f"SQLAlchemy's pool does not change what the driver does on the wire; its default settings inherit the driver's prepared statements.",
        rows,
        _docs(rows),
    )


def c13(data: Rows) -> Verdict:
    rows = [r for r in data.of("limits") if r.scenario.startswith("hybrid")]
    pooled = [r for r in data.of("limits") if r.scenario.startswith("burst") and r.topology.get("pooler")]
    if not rows:
        return Verdict("C13", MISSING, "no hybrid rows")
    hybrid = next((r for r in rows if r.client["name"] == "rca-hybrid"), None)
    alone = next((r for r in rows if r.client["name"] == "pool-only"), None)
    if hybrid is None:
        return Verdict("C13", MISSING, "no hybrid row")
    lat = hybrid.latency_ms or {}
    finding = (
        f"Under a burst of {hybrid.m.clients}: the hybrid completed {hybrid.m.completed} "
        f"({hybrid.m.by_path}), median {lat.get('median', float('nan')):.0f} ms, max {lat.get('max', float('nan')):.0f} ms"
    )
    if alone is not None:
        finding += f"; the same pool without REST lost {alone.m.failed} inserts to PoolTimeout"
    finding += (
        f". Through a pooler the same kind of burst also completes without a second code path ({len(pooled)} cells ok), "
        "and psycopg 3 with prepare_threshold=None works through the transaction pooler (see the matrix)."
    )
    verdict = CONDITIONAL if hybrid.outcome.kind == "ok" else FAILS
    return Verdict("C13", verdict, finding, rows + pooled, _docs(rows + pooled))


def c14(data: Rows) -> Verdict:
    return Verdict(
        "C14",
        LOCAL,
        "Which pool modes a Supabase project offers, on which plan and behind which dashboard setting, is the hosted product's "
        "configuration, not software behaviour: nothing the lab runs can observe it. (Locally, a session-mode pooler is one "
        "line of PgBouncer configuration, as compose/docker-compose.yml shows.)",
        [],
        ["https://supabase.com/docs/guides/database/connecting-to-postgres"],
    )


RULES: dict[str, Callable[[Rows], Verdict]] = {
    "C1": c1,
    "C2": c2,
    "C3": c3,
    "C4": c4,
    "C5": c5,
    "C6": c6,
    "C7": c7,
    "C8": c8,
    "C9": c9,
    "C10": c10,
    "C11": c11,
    "C12": c12,
    "C13": c13,
    "C14": c14,
}


def verdicts(data: Rows) -> list[Verdict]:
    return [RULES[c](data) for c in CLAIMS]


def _row_refs(rows: list[Row], limit: int = 6) -> str:
    if not rows:
        return "—"
    run_ids = sorted({r.run_id for r in rows})
    cells = [r.cell for r in rows[:limit]]
    more = f" and {len(rows) - limit} more" if len(rows) > limit else ""
    return f"{len(rows)} rows of run {text(', '.join(run_ids))}: " + ", ".join(code(c) for c in cells) + more


def claims_markdown(data: Rows) -> str:
    out = ["| id | claim | verdict | what the rows show | rows | versions | docs |", "|---|---|---|---|---|---|---|"]
    for v in verdicts(data):
        docs = ", ".join(link(doc_name(d), d) for d in v.docs[:4]) or "—"
        versions = text("; ".join(versions_of(v.rows)[:8]) or "—")
        out.append(
            f"| {v.claim} | {CLAIMS[v.claim]} | **{v.verdict}** | {text(v.finding)} | {_row_refs(v.rows)} | {versions} | {docs} |"
        )
    return "\n".join(out)


def opening_markdown(data: Rows) -> str:
    vs = verdicts(data)
    right = [v for v in vs if v.verdict == HOLDS]
    wrong = [v for v in vs if v.verdict == FAILS]
    partly = [v for v in vs if v.verdict == CONDITIONAL]
    out = ["## Summary", ""]
    out.append(
        "**What the RCA got right:** "
        + ("; ".join(f"{v.claim} ({CLAIMS[v.claim]})" for v in right) or "nothing these rows confirm outright")
        + "."
    )
    out.append("")
    out.append(
        "**What it got wrong:** "
        + ("; ".join(f"{v.claim} — {text(v.finding.split('. ')[0])}" for v in wrong) or "nothing these rows contradict")
        + "."
    )
    out.append("")
    out.append(
        "**True only under conditions:** " + ("; ".join(f"{v.claim}" for v in partly) or "none") + " (see the table)."
    )
    out.append("")
    out.append(
        "**What actually fixes each failure** (from the matrix: configurations that pass where the failing one fails):"
    )
    out.append("")
    out += [f"- {line}" for line in _fixes(data)]
    return "\n".join(out)


def _fixes(data: Rows) -> list[str]:
    matrix = data.of("matrix")
    by_client: dict[str, list[Row]] = {}
    for r in matrix:
        by_client.setdefault(r.client["name"], []).append(r)
    passes_everywhere = {c for c, rs in by_client.items() if all(r.outcome.kind == "ok" for r in rs)}
    lines = []
    for failing, relations in fixes(matrix).items():
        rows = [r for r in by_client.get(failing, []) if r.outcome.kind == "error"]
        if not rows:
            continue
        codes = ", ".join(sorted({r.outcome.sqlstate or "?" for r in rows}))
        passing = [f for f in relations if f.by in passes_everywhere]
        if passing:
            how = "; or ".join(
                f"{f.markdown()} ({code(f.by)} passes every scenario on every topology)" for f in passing
            )
            lines.append(
                f"{code(failing)} through the transaction pooler ({text(codes)}): {how}; or the session pooler or a "
                "direct connection."
            )
        else:
            how = "; or ".join(f.markdown() for f in relations)
            lines.append(
                f"{code(failing)} through the transaction pooler: {how} (no fix of it passed everywhere in these results)."
            )
    for attempt, what in (
        ("rca-attempt-1", "`server_settings={'jit': 'off'}`"),
        ("rca-attempt-2", "`options=-c jit=off`"),
    ):
        rows = [r for r in matrix if r.client["name"] == attempt and r.outcome.kind == "error"]
        if rows:
            lines.append(
                f"the RCA's attempt {attempt[-1]}: drop {what} (or list it in PgBouncer's `ignore_startup_parameters`); set it per role with "
                "`ALTER ROLE ... SET jit = off` instead — the pooler refuses the startup parameter, in either mode."
            )
    tenant = [r for r in data.of("tenant") if r.outcome.kind == "error" and _is_tenant_error(r)]
    if tenant or any(r.scenario.startswith("tenant") for r in data.of("tenant")):
        lines.append(
            "`Tenant or user not found`: connect as `<role>.<project-ref>` (the pooler's user name format); it is unrelated to the driver."
        )
    return lines
