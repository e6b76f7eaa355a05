"""pooler-lab's Django runner: Django (its LTS) on psycopg 3, behind the client contract (docs/client-contract.md).

It runs in a virtual environment of its own (requirements.lock beside it) and reads cells as JSON lines on stdin.
Django is what it is in an application: every worker is a thread with Django's own thread-local connection,
every operation a "request" (Django closes or keeps the connection afterwards as CONN_MAX_AGE says, as its
request_finished handler does), statements go through `connection.cursor()` (Django's binding of parameters,
client-side unless OPTIONS asks for server-side binding), transactions through `transaction.atomic()`, and the
named operation `iterator` is the ORM's own `QuerySet.iterator()` (a server-side cursor, unless
DISABLE_SERVER_SIDE_CURSORS).

Every configuration and every cell get a database alias of their own, added to Django's connection handler at run
time, so one process serves every configuration and endpoint.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Any

import django
from django.conf import settings

settings.configure(
    DATABASES={"default": {}},  # Django's dummy backend: every cell adds an alias of its own
    INSTALLED_APPS=["django.contrib.contenttypes"],
    USE_TZ=True,
    DEFAULT_AUTO_FIELD="django.db.models.AutoField",
)
django.setup()

from django.db import connections, models, transaction  # noqa: E402  (after settings.configure)

from lab.clients.contract import CONTRACT, CellSpec, Operation, params_of, plain, rows_match  # noqa: E402
from lab.clients.python.base import to_pyformat  # noqa: E402
from lab.results.outcome import OK, Outcome, PhaseError, WrongResult, classify  # noqa: E402

#: configuration -> the alias's settings beside the endpoint's (Django's DATABASES entry)
CONFIGURATIONS: dict[str, dict[str, Any]] = {
    "django-default": {},
    "django-no-server-side-cursors": {"DISABLE_SERVER_SIDE_CURSORS": True},
    "django-persistent": {"CONN_MAX_AGE": 60},
    "django-pool": {"OPTIONS": {"pool": {"min_size": 1, "max_size": 4}}},
    "django-prepared": {"CONN_MAX_AGE": 60, "OPTIONS": {"server_side_binding": True, "prepare_threshold": 5}},
    "django-prepared-off": {"CONN_MAX_AGE": 60, "OPTIONS": {"server_side_binding": True}},
}
PACKAGES = ("django", "psycopg", "psycopg-pool")


class PgType(models.Model):
    """A table every PostgreSQL has, so the ORM's iterator always has rows to walk: pg_catalog.pg_type."""

    id = models.IntegerField(primary_key=True, db_column="oid")
    name = models.CharField(max_length=64, db_column="typname")

    class Meta:
        app_label = "lab"
        db_table = "pg_type"
        managed = False


def send(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message, default=str) + "\n")
    sys.stdout.flush()


def database(dsn: str, extra: dict[str, Any], wait_s: float) -> dict[str, Any]:
    """The DATABASES entry for a libpq URL: Django takes the URL's parts, and OPTIONS takes sslmode and its CA. A
    connection pool waits at most `wait_s` for a connection (the cell's operation limit), as psycopg_pool's timeout."""
    from urllib.parse import parse_qsl, unquote, urlsplit

    parts = urlsplit(dsn)
    options = {**dict(parse_qsl(parts.query)), **extra.get("OPTIONS", {})}
    if isinstance(options.get("pool"), dict):
        options["pool"] = {**options["pool"], "timeout": wait_s}
    entry = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parts.path.lstrip("/")),
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "127.0.0.1",
        "PORT": str(parts.port or 5432),
        **{k: v for k, v in extra.items() if k != "OPTIONS"},
    }
    entry["OPTIONS"] = options
    return entry


class Order:
    """The contract's `after`, `during` and `hold`, for threads: each operation marks when it has run its
    statements (a held transaction, before it waits) and when it is done."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: dict[tuple[str, int, int], threading.Event] = {}
        self.abort = threading.Event()

    def _event(self, kind: str, ref: Any) -> threading.Event:
        with self.lock:
            return self.events.setdefault((kind, int(ref[0]), int(ref[1])), threading.Event())

    def wait(self, kind: str, refs: Any, limit: float) -> None:
        deadline = time.monotonic() + limit
        for ref in refs:
            while not self._event(kind, ref).wait(0.05):
                if self.abort.is_set() or time.monotonic() > deadline:
                    raise TimeoutError(f"waited for operation {list(ref)} in vain (the cell failed or ran out of time)")

    def ran(self, me: tuple[int, int]) -> None:
        self._event("ran", me).set()

    def done(self, me: tuple[int, int]) -> None:
        self.ran(me)
        self._event("done", me).set()


@dataclass
class Iteration:
    latencies: list[float] = field(default_factory=list)
    failure: BaseException | None = None
    outstanding: dict[int, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def iterate(alias: str, op: Operation, order: Order, me: tuple[int, int], limit: float) -> list[list[Any]]:
    """The ORM's QuerySet.iterator(): rows of pg_type in chunks; after the first chunk it marks that it has run and
    waits until the operations named in args.between_chunks have run (another request taking the server connection
    between two FETCHes)."""
    chunk = int(op.args.get("chunk_size", 2))
    rows = int(op.args.get("rows", 10))
    found: list[list[Any]] = []
    walk = PgType.objects.using(alias).order_by("id")[:rows].iterator(chunk_size=chunk)
    for obj in walk:
        found.append([obj.id, obj.name])
        if len(found) == chunk and op.args.get("between_chunks"):
            order.ran(me)
            order.wait("ran", op.args["between_chunks"], limit)
    if len(found) != rows:
        raise WrongResult("QuerySet.iterator() over pg_type", f"{len(found)} rows", f"{rows} rows")
    return [found]


def perform(alias: str, op: Operation, order: Order, me: tuple[int, int], limit: float) -> None:
    """One operation, as one request of the application."""
    order.wait("done", op.after, limit)
    order.wait("ran", op.during, limit)
    if op.pause_s:
        time.sleep(op.pause_s)
    try:
        if op.call == "iterator":
            iterate(alias, op, order, me, limit)
            return
        if op.call is not None or op.batch:
            raise NotImplementedError(f"the Django runner implements no {'batch' if op.batch else op.call!r}")
        results: list[Any] = []
        if op.transaction:
            atomic = transaction.atomic(using=alias)
            atomic.__enter__()
            try:
                with connections[alias].cursor() as cur:
                    for s in op.statements:
                        cur.execute(to_pyformat(s.sql), params_of(s, results))
                        results.append(cur.fetchall())
                if op.hold:
                    order.ran(me)  # the server connection is pinned until the commit
                    order.wait("done", op.hold, limit)
            except BaseException as exc:
                atomic.__exit__(type(exc), exc, exc.__traceback__)
                raise
            try:
                atomic.__exit__(None, None, None)
            except Exception as exc:
                raise PhaseError("commit", exc) from exc
        else:
            with connections[alias].cursor() as cur:
                first = op.statements[0]
                cur.execute(to_pyformat(first.sql), params_of(first, []))
                results.append(cur.fetchall())
        for statement, rows in zip(op.statements, results, strict=True):
            if statement.expect is not None and not rows_match(statement.expect, rows, results):
                raise WrongResult(statement.what or statement.sql, plain(rows), statement.expect)
    finally:
        order.done(me)
        connections[alias].close_if_unusable_or_obsolete()  # the end of the request (request_finished)


def run_iteration(spec: CellSpec, alias: str, limit: float) -> Iteration:
    order, it = Order(), Iteration()

    def worker(w: int, ops: tuple[Operation, ...]) -> None:
        try:
            try:
                connections[alias].ensure_connection()
            except Exception as exc:
                raise PhaseError("connect", exc) from exc
            for i, op in enumerate(ops):
                with it.lock:
                    if it.failure is not None:
                        return
                it.outstanding[w] = f"worker {w}'s operation {i + 1} of {len(ops)}"
                started = time.perf_counter()
                try:
                    perform(alias, op, order, (w, i), limit)
                except PhaseError:
                    raise
                except Exception as exc:
                    raise PhaseError("first query" if i == 0 else "later query", exc) from exc
                it.latencies.append(time.perf_counter() - started)
            it.outstanding.pop(w, None)
        except BaseException as exc:
            with it.lock:
                if it.failure is None:
                    it.failure = exc
            order.abort.set()
        finally:
            connections[alias].close()  # the thread ends: its connection goes (or back to Django's pool)

    threads = [
        threading.Thread(target=worker, args=(w, ops), daemon=True, name=f"worker-{w}")
        for w, ops in enumerate(spec.workers)
    ]
    for t in threads:
        t.start()
    deadline = time.monotonic() + limit
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    if any(t.is_alive() for t in threads):
        order.abort.set()
        it.failure = TimeoutError("hang")
    return it


def run(spec: CellSpec, cell_number: int) -> None:
    started = time.monotonic()
    extra = CONFIGURATIONS.get(spec.configuration)
    versions = {p: version(p) for p in PACKAGES}
    if extra is None:
        outcome = Outcome("error", error_class="ConfigError", message=f"no Django configuration {spec.configuration}")
        send({"type": "iteration", "index": 0, "outcome": outcome.to_dict(), "latencies_s": []})
        send({"type": "done", "versions": versions, "elapsed_s": 0})
        return
    # every worker is a thread with Django's own thread-local connection, whatever the spec's `connections` says
    for index in range(spec.repeats):
        alias = f"cell{cell_number}_{index}"
        configured = connections.configure_settings(
            {"default": {}, alias: database(spec.dsn, extra, spec.op_timeout_s)}
        )
        connections.settings[alias] = configured[alias]
        left = spec.cell_timeout_s - (time.monotonic() - started)
        it = run_iteration(spec, alias, max(0.1, left))
        if isinstance(it.failure, TimeoutError) and str(it.failure) == "hang":
            waiting = "; ".join(it.outstanding.values()) or "connecting"
            outcome = Outcome(
                "hang",
                iteration=index,
                detail=f"no answer within the cell limit of {spec.cell_timeout_s:g}s; outstanding: {waiting}",
            )
        else:
            outcome = OK if it.failure is None else classify(it.failure, iteration=index)
        _close_pool(alias)
        send({"type": "iteration", "index": index, "outcome": outcome.to_dict(), "latencies_s": it.latencies})
        if outcome.kind == "hang" or (outcome.kind != "ok" and not spec.keep_going):
            break
    send({"type": "done", "versions": versions, "elapsed_s": round(time.monotonic() - started, 3)})


def _close_pool(alias: str) -> None:
    """Django's own pool (OPTIONS["pool"]) outlives the threads' connections: close it with the iteration."""
    try:
        connections[alias].close_pool()
    except Exception:  # no pool for this alias
        pass


def main() -> int:
    send({"type": "hello", "contract": CONTRACT, "runtime": f"django {django.get_version()}"})
    for number, line in enumerate(sys.stdin):
        if not line.strip():
            continue
        try:
            spec = CellSpec.from_json(json.loads(line))
        except (ValueError, KeyError, TypeError) as exc:
            send({"type": "fatal", "message": f"unreadable cell spec: {type(exc).__name__}: {exc}"})
            return 2
        run(spec, number)
    return 0


if __name__ == "__main__":
    sys.exit(main())
