"""`pooler-lab` (also `python -m lab`): run the matrix, bring the topology up or down by hand, render configs."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from lab import __version__, interrupts
from lab.errors import BAD_INPUT, ENVIRONMENT, INTERRUPTED, UNEXPECTED, ConfigError, LabError
from lab.machine.builds import build, tarball
from lab.options import BACKENDS, IMAGE_SETS, add_to_argparse, names, shard
from lab.paths import COMPOSE_DIR, EXPERIMENTS_DIR, RESULTS_DIR

# one line stays one line, in a pipe too; no markup and no highlighting: what is printed may carry a server's text
# (an error message, a target's name), which rich would read as markup ([/x] crashed it, [red] vanished)
console = Console(stderr=True, soft_wrap=True, markup=False, highlight=False)


# pytest's exit codes -> the lab's: tests failed (an unexpected outcome, a changed cell) 1,
# interrupted 130, usage error 2, no tests collected 2 (a selection with no cell), internal error 3
PYTEST_STATUS = {0: 0, 1: UNEXPECTED, 2: INTERRUPTED, 3: ENVIRONMENT, 4: BAD_INPUT, 5: BAD_INPUT}


def cmd_run(args: argparse.Namespace) -> int:
    import pytest

    from lab.clients.registry import install_runners
    from lab.options import format_names, from_namespace, to_pytest_args
    from lab.plan import Plan
    from lab.report.summary import print_summary
    from lab.topology.backends.choice import choose, explain
    from lab.topology.backends.native import check_binaries
    from lab.topology.runstate import new_run_id

    if args.prepared_pgbouncer:
        console.print(
            "--prepared-pgbouncer: no longer needed, PgBouncer 1.24 (with and without prepared statements) is in every run"
        )
    profiles = tuple(args.lab_profiles)
    opts = from_namespace(args, profiles=profiles, run_id=new_run_id())
    plan = Plan.build(opts)  # names, the target file and its secrets checked before anything starts
    backend = "target" if opts.target is not None else choose(opts.backend)
    if backend == "target":
        assert plan.target is not None
        console.print(
            f"target {plan.target.name} ({opts.target}): nothing is started; the run writes only into a schema of its own"
            if not opts.read_only
            else f"target {plan.target.name} ({opts.target}), read-only"
        )
    else:
        console.print(explain(opts.backend, backend))  # the first line says which backend measures, and why
        if backend == "native":
            # builds what Debian does not ship, once
            check_binaries(profiles=profiles, progress=console.print, topologies=opts.topologies)
    install_runners(tuple({c.client.name for c in plan.all()}), console.print)  # once, before any part needs one
    results = Path(opts.results)
    results.mkdir(parents=True, exist_ok=True)
    # the backend is already chosen: pytest need not ask the engine again
    pytest_args = [
        str(EXPERIMENTS_DIR),
        f"--benchmark-json={results / 'benchmark.json'}",
        *to_pytest_args(opts),
        *([f"--lab-backend={backend}"] if backend != "target" else []),
        "-rfE",
        *args.pytest_args,
    ]
    console.print(
        f"pooler-lab run {opts.run_id}: {plan.describe()}; clients {format_names(opts.clients)}, "
        f"topologies {format_names(opts.topologies)}, scenarios {format_names(opts.scenarios)}"
    )
    jobs = _jobs(args.jobs, backend)
    started = time.monotonic()
    if jobs > 1:  # topologies side by side, each in a session of its own (lab.parallel)
        from lab.parallel import run_parts

        _, codes = run_parts(opts, plan, backend, jobs, list(args.pytest_args), console.out)
        worst = max((PYTEST_STATUS.get(int(c), ENVIRONMENT) for c in codes), default=0, key=_severity)
        status = worst
    else:
        code = pytest.main(pytest_args)
        status = PYTEST_STATUS.get(int(code), ENVIRONMENT)
    elapsed = time.monotonic() - started
    # a run the environment ended (a server that died) prints its counts, not the half-filled matrix
    rows = print_summary(
        results / "runs" / f"{opts.run_id}.jsonl", Console(markup=False, highlight=False), tables=status != ENVIRONMENT
    )
    if status == 0 and not rows:
        console.print("no rows were recorded: nothing was measured")
        status = UNEXPECTED
    console.print(
        f"finished in {elapsed:.1f}s (bring-up, {plan.count()} planned cells, teardown); exit status {status}"
    )
    return status


#: exit statuses, worst last: a part that hit the environment outranks one with unexpected cells
_SEVERITY = {0: 0, UNEXPECTED: 1, BAD_INPUT: 2, ENVIRONMENT: 3, INTERRUPTED: 4}


def _severity(status: int) -> int:
    return _SEVERITY.get(status, 3)


def _jobs(value: str, backend: str) -> int:
    """--jobs: sessions side by side. auto: one per core and one more (a cell mostly waits for the server), natively;
    a target, an attached topology and the Docker backend run as one session."""
    if backend != "native":
        return 1
    if value == "auto":
        return min(4, (os.cpu_count() or 1) + 1)
    try:
        jobs = int(value)
    except ValueError:
        raise LabError(f"--jobs {value!r}: a whole number, or auto") from None
    if jobs < 1:
        raise LabError(f"--jobs {value!r}: at least 1")
    return jobs


def cmd_up(args: argparse.Namespace) -> int:
    from lab.topology.backends import make_backend
    from lab.topology.backends.choice import choose, explain

    chosen = choose(args.backend)
    console.print(explain(args.backend, chosen))
    if chosen == "docker" and args.supabase_ports:
        raise LabError(
            "--supabase-ports: native processes only (the Docker backend publishes the ports compose/.env names)"
        )
    backend = make_backend(
        chosen,
        console.print,
        profiles=tuple(args.profiles or ()),
        images=args.images,
        persistent=True,
        fixed_ports=args.supabase_ports,
    )
    with console.status("starting the topology"):
        try:
            topo = backend.start()
        except BaseException:
            backend.stop()
            raise
    _print_endpoints(topo.to_dict(), args.show_passwords)
    console.print(
        "stop it with `pooler-lab down`; experiments can use it with `pytest experiments/ --lab-backend attach`"
    )
    return 0


def _print_endpoints(topology: dict, show_passwords: bool = False) -> None:
    """One plain line per endpoint, never folded, so a DSN can be pasted from a pipe or a narrow terminal.
    Passwords are masked unless asked for (--show-passwords)."""
    from lab.topology.model import Topology

    topo = Topology.from_dict(topology)
    print(f"run {topo.run_id} ({topo.backend})")
    for ep in topo.endpoints.values():
        if ep.facts.model:  # a model names itself, its release line and its settings
            what = f"{ep.facts.model}, {ep.facts.pool_mode} mode"
        elif ep.facts.pooler:
            what = f"{ep.facts.pooler} {ep.facts.pooler_version} {ep.facts.pool_mode}"
        else:
            what = "REST" if ep.keys else "server"
        if ep.keys:
            key = ep.keys.get("anon", "") if show_passwords else "********"
            print(
                f"  {ep.topology:24} {what:34} {ep.url()}/rest/v1/  https: {ep.url(tls=True)}/rest/v1/  anon key: {key}"
            )
        else:
            print(f"  {ep.topology:24} {what:34} {ep.dsn(redact=not show_passwords)}")
    if not show_passwords:
        print("  (passwords masked: --show-passwords prints them)")


def cmd_down(args: argparse.Namespace) -> int:
    from lab.topology.runstate import all_runs, unknown_entries

    stopped_any = False
    runs = all_runs()
    if args.run_ids:
        known = {r.run_id for r in runs}
        missing = [r for r in args.run_ids if r not in known]
        if missing:
            raise LabError(f"no run {', '.join(missing)} of yours is recorded; `./pooler-lab status` lists them")
        runs = [r for r in runs if r.run_id in args.run_ids]
    for state in runs:
        if state.persistent or not state.owner_alive():
            stopped = state.stop()
            console.print(f"run {state.run_id}: stopped {', '.join(stopped) or 'nothing (already gone)'}")
            stopped_any = True
        else:
            console.print(f"run {state.run_id} is owned by running process {state.owner_pid}; left alone")
    if not stopped_any:
        console.print("nothing to stop")
    for path in unknown_entries():
        console.print(f"left alone (not a run of the lab's): {path}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from lab.topology.runstate import all_runs

    runs = all_runs()
    if args.json:
        out = [
            {
                "run_id": r.run_id,
                "persistent": r.persistent,
                "owner_alive": r.owner_alive(),
                "processes": [{"name": p.name, "pid": p.pid, "alive": r.belongs(p.pid)} for p in r.processes],
                "topology": r.topology if args.show_passwords or not r.topology else _redacted(r.topology),
            }
            for r in runs
        ]
        print(json.dumps(out, indent=2))
        return 0
    if not runs:
        console.print("no topology is running")
        return 0
    for r in runs:
        owner = (
            "started by `lab up`"
            if r.persistent
            else f"owned by pid {r.owner_pid} ({'alive' if r.owner_alive() else 'dead: stale'})"
        )
        procs = ", ".join(f"{p.name}:{p.pid}{'' if r.belongs(p.pid) else ' (gone)'}" for p in r.processes)
        console.print(f"run {r.run_id}: {owner}; {procs}")
        if r.topology:
            _print_endpoints(r.topology, args.show_passwords)
    return 0


def _redacted(topology: dict) -> dict:
    from lab.topology.model import Topology

    return Topology.from_dict(topology).to_dict(redact=True)


def cmd_render(args: argparse.Namespace) -> int:
    from lab.topology.compose import load
    from lab.topology.render import Credentials, Placement, logs_dir, render, write_compose_secrets

    out = Path(args.out).resolve()
    topo = load(COMPOSE_DIR, profiles=tuple(args.profiles or ()))
    creds = Credentials.generate()
    render(topo, Placement.docker(topo), creds, out, shared=True)
    logs = logs_dir(out / "logs")
    secrets = write_compose_secrets(creds, out, logs)
    console.print(f"rendered configs into {out} (logs go to {logs}); passwords in {secrets}")
    profiles = "".join(f" --profile {p}" for p in args.profiles or ())
    console.print(
        f"docker compose --env-file {COMPOSE_DIR / '.env'} --env-file {secrets} -f {COMPOSE_DIR / 'docker-compose.yml'}{profiles} up -d --wait"
        f"   (local images: add --env-file {COMPOSE_DIR / 'images.local.env'} after compose/.env)"
    )
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from lab.report.build import write_report

    sources = [Path(p) for p in args.rows] if args.rows else [Path(args.results) / "latest.jsonl"]
    missing = [str(p) for p in sources if not p.exists()]
    if missing:
        raise LabError(f"no result rows at {', '.join(missing)}; run `./pooler-lab run` first, or pass --rows FILE")
    md, html = write_report(sources, Path(args.results))
    console.print(f"wrote {md} and {html}")
    if args.strict:
        from lab.report.claims import LOCAL, MISSING, verdicts
        from lab.report.data import load_rows

        lacking = [
            v.claim for v in verdicts(load_rows(sources)) if v.verdict == MISSING or (not v.rows and v.verdict != LOCAL)
        ]
        if lacking:
            console.print(f"claims without a verdict backed by rows: {', '.join(lacking)}", style="bold red")
            return 1
        console.print("every claim has a verdict backed by result rows (C14: cannot be checked locally)")
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    """The static site, from one run's rows or many (a sweep's, several machines'): later rows of a cell win, every
    run's rows make its history."""
    from lab.publish.site import publish

    sources = [Path(p) for p in args.rows] if args.rows else [Path(args.results) / "latest.jsonl"]
    missing = [str(p) for p in sources if not p.is_file()]
    if missing:
        raise LabError(f"no result rows at {', '.join(missing)}; run `./pooler-lab run` first, or pass --rows FILE")
    index = publish(sources, Path(args.out))
    console.print(f"wrote {index} (open it from disk, or host the directory anywhere)")
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    from lab.report.cost import disagreements
    from lab.results.diff import as_json, diff_rows, read_result_file, render

    before, after = read_result_file(Path(args.baseline)), read_result_file(Path(args.current))
    d = diff_rows(before, after)
    # the prices of two --cost runs: a timing is never a failure, but a reader wants to know they agree
    compared, apart = disagreements(before, after)
    if args.json:
        print(json.dumps({**as_json(d), "prices": {"compared": compared, "intervals_apart": apart}}, indent=1))
    else:
        for line in render(d):
            print(line)
        if compared:
            print(f"{compared} fix prices under concurrency compared, {len(apart)} whose 95% intervals do not overlap")
            for line in apart:
                print(f"  {line}")
    return 1 if d.failed else 0


def cmd_build_pgbouncer(args: argparse.Namespace) -> int:
    """Debian's next release's PgBouncer, or any release from a tarball the user names with its SHA-256."""
    from lab.topology.services.pgbouncer import RECIPE as PGBOUNCER_RECIPE

    source = None
    if args.tarball or args.sha256:
        if not (args.tarball and args.sha256):
            raise ConfigError("--tarball and --sha256 go together: the tarball is built only if it has that SHA-256")
        source = tarball(args.tarball, args.sha256, PGBOUNCER_RECIPE)
    binary = build(PGBOUNCER_RECIPE, source, progress=console.print)
    console.print(f"PgBouncer {binary.parent.parent.name}: {binary}")
    if source is not None:
        console.print(f"to run it: PGBOUNCER_NEW_VERSION={source.version} ./pooler-lab run (the 1.24 services run it)")
    return 0


def cmd_docker(args: argparse.Namespace) -> int:
    """The Docker engine, Compose v2 and the local images, for the Docker backend on a Debian machine."""
    from lab.errors import EnvironmentProblem
    from lab.machine import docker_engine

    say = lambda m: console.print(m)  # noqa: E731
    if args.action == "stop":
        docker_engine.stop_engine(say)
        return 0
    started = time.monotonic()
    if args.action == "start":
        docker_engine.start_engine(say)
    elif not docker_engine.engine_answers():
        raise EnvironmentProblem("no Docker engine answers; `./pooler-lab docker start` starts Debian's")
    argv, version = docker_engine.install_compose_plugin(say)
    say(f"Compose {version}: {' '.join(argv)}")
    import docker

    from lab.topology.backends import images as docker_images

    client = docker.from_env()
    try:
        docker_images.prepare(client, args.images, args.profiles or (), say, rebuild=args.rebuild)
    finally:
        client.close()
    say(
        f"docker {args.action}: done in {time.monotonic() - started:.0f}s; `./pooler-lab run --backend docker` uses it"
        + ("; `./pooler-lab docker stop` stops the engine the lab started" if args.action == "start" else "")
    )
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from collections import defaultdict

    from lab.results.diff import describe
    from lab.results.rows import read_rows
    from lab.sweep import Spec, run

    specs = [Spec.parse(p) for p in args.packages]
    for spec in specs:
        spec.clients()  # a package no client uses is refused before any environment is built
    if args.shard is not None:  # CI runners split the versions: each version in exactly one shard
        i, n = args.shard
        specs = specs[i - 1 :: n]
        if not specs:
            console.print(f"shard {i}/{n}: no version of {len(args.packages)} falls in it")
            return 0
    from lab.topology.backends.choice import choose

    backend = choose(args.backend)  # once, before any environment is built: a backend that cannot run fails here
    console.print(f"sweep backend: {backend}")
    runs = run(
        specs, args.scenarios, Path(args.results), progress=console.print, backend=backend, topologies=args.topologies
    )
    table: dict[str, dict[str, str]] = defaultdict(dict)
    columns = []
    for spec, version, path, _code in runs:
        column = f"{spec.dist} {version}"
        columns.append(column)
        for row in read_rows(path) if path.exists() else []:
            recorded = row.client["packages"].get(spec.dist)
            mark = "" if row.matches is not False else " (unexpected)"
            table[row.cell][column] = f"{describe(row.outcome)}{mark}" + (
                "" if recorded == version else f" [rows say {recorded}]"
            )
    out = Table(title="sweep: outcome per version", title_justify="left")
    out.add_column("cell")
    for c in columns:
        out.add_column(c)
    differing = 0
    for cell, by_version in sorted(table.items()):
        values = [by_version.get(c, "—") for c in columns]
        if len({v for v in values if v != "—"}) > 1:  # cells a package's clients did not run are not a difference
            differing += 1
        out.add_row(cell, *values)
    if args.json:
        print(
            json.dumps(
                {
                    "runs": [
                        {"package": spec.dist, "version": version, "rows": str(path), "exit_status": code}
                        for spec, version, path, code in runs
                    ],
                    "cells": table,
                    "differing": differing,
                },
                indent=1,
            )
        )
    else:
        Console(width=200, markup=False, highlight=False).print(out)
        console.print(
            f"{len(table)} cells, {differing} differ between versions; rows: {', '.join(str(p) for _, _, p, _ in runs)}"
        )
    if not table:
        console.print("no rows were recorded: nothing was measured")
        return ENVIRONMENT
    return 0 if all(code in (0, 1) for *_, code in runs) else 2


def cmd_target(args: argparse.Namespace) -> int:
    from lab.topology.backends.target import TargetFile, check, clean

    target = TargetFile.load(Path(args.file))
    if args.action == "clean":
        dropped = clean(target)
        console.print(
            f"target {target.name}: dropped {', '.join(dropped)}"
            if dropped
            else f"target {target.name}: nothing of the lab's left"
        )
        return 0
    results = check(target)
    for r in results:
        print(r.line)
    return 0 if all(r.ok for r in results) else ENVIRONMENT


def cmd_list(args: argparse.Namespace) -> int:
    from lab.options import LabOptions
    from lab.plan import Plan

    plan = Plan.build(LabOptions(network="all"))
    described = {c.client.name: c.client.description for c in plan.all()}
    out = Console(markup=False, highlight=False)
    for kind, title in (("client", "clients"), ("topology", "topologies"), ("scenario", "scenarios")):
        out.print(title, style="bold")
        for name in plan.known[kind]:
            experiments = sorted({c.experiment for c in plan.all() if name in (c.client.name, c.topology, c.scenario)})
            extra = f"  {described[name]}" if kind == "client" else ""
            out.print(f"  {name:30} [{', '.join(experiments) or 'topology'}]{extra}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pooler-lab",
        description="pooler-lab: PostgreSQL clients vs connection poolers, settled by experiment",
        epilog="exit status: 0 ok; 1 unexpected outcomes or changed cells; 2 bad usage or a bad input file; "
        "3 the environment (missing binary, engine, permissions, port taken, a server that died); 130 interrupted",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="bring the topology up, run the experiment matrix, write results/")
    add_to_argparse(run)
    run.add_argument("--prepared-pgbouncer", action="store_true", help=argparse.SUPPRESS)  # in every run now
    run.add_argument(
        "--jobs",
        default="auto",
        help="sessions side by side, each on its own topologies (auto: cores + 1, natively; 1: one session)",
    )
    run.add_argument("pytest_args", nargs="*", help="extra pytest arguments, after --")
    run.set_defaults(func=cmd_run)

    up = sub.add_parser("up", help="start the topology (local processes or containers) and leave it running")
    up.add_argument(
        "--backend",
        choices=BACKENDS[:3],
        default="native",
        help="native processes (the default here), Docker containers, or auto (Docker where an engine and Compose v2 answer)",
    )
    up.add_argument(
        "--images", choices=IMAGE_SETS, default="auto", help="Docker backend: which images (see `run --help`)"
    )
    up.add_argument("--profiles", type=names, help="compose profiles to start too (supavisor)")
    up.add_argument(
        "--show-passwords", action="store_true", help="print the run's passwords and API keys (masked by default)"
    )
    up.add_argument(
        "--supabase-ports",
        action="store_true",
        help="listen on Supabase's ports (5432 session, 6543 transaction, 54322 direct)",
    )
    up.set_defaults(func=cmd_up)

    down = sub.add_parser("down", help="stop what `up` started (yours only), and what your killed runs left")
    down.add_argument("run_ids", nargs="*", help="only these runs (default: every persistent or stale run of yours)")
    down.set_defaults(func=cmd_down)

    status = sub.add_parser("status", help="show running topologies and their endpoints")
    status.add_argument("--json", action="store_true")
    status.add_argument(
        "--show-passwords", action="store_true", help="print the run's passwords and API keys (masked by default)"
    )
    status.set_defaults(func=cmd_status)

    render = sub.add_parser("render", help="render compose/'s config templates for `docker compose`")
    render.add_argument("--out", default=str(COMPOSE_DIR / ".rendered"))
    render.add_argument("--profiles", type=names, help="compose profiles to render too (supavisor)")
    render.set_defaults(func=cmd_render)

    report = sub.add_parser("report", help="build results/report.md and report.html from result rows")
    report.add_argument("--rows", nargs="*", help="row files (default: results/latest.jsonl)")
    report.add_argument("--results", default=str(RESULTS_DIR), help="where the report and plots are written")
    report.add_argument("--strict", action="store_true", help="exit 1 unless every claim has a verdict backed by rows")
    report.set_defaults(func=cmd_report)

    pub = sub.add_parser("publish", help="a static site of the answers, their prices and evidence (results/site/)")
    pub.add_argument("--rows", nargs="*", help="row files, one run's or many (default: results/latest.jsonl)")
    pub.add_argument("--results", default=str(RESULTS_DIR), help="where results/latest.jsonl is")
    pub.add_argument("--out", default=str(RESULTS_DIR / "site"), help="the site's directory")
    pub.set_defaults(func=cmd_publish)

    diff = sub.add_parser("diff", help="cells whose outcome differs between two result files; exit 1 if any")
    diff.add_argument("baseline", help="e.g. results/baseline.jsonl")
    diff.add_argument("current", help="e.g. results/latest.jsonl")
    diff.add_argument("--json", action="store_true", help="print the diff as JSON (for CI)")
    diff.set_defaults(func=cmd_diff)

    dock = sub.add_parser(
        "docker",
        help="the Docker backend's machine side: `start` Debian's engine (when none answers), fetch "
        "Compose v2 and build the local images; `images` only the last two; `stop` the engine the lab started",
    )
    dock.add_argument("action", choices=("start", "images", "stop"))
    dock.add_argument(
        "--images",
        choices=IMAGE_SETS,
        default="auto",
        help="official: use the pinned official images (pulled by compose); local: build them from Debian's packages; "
        "auto: local unless a registry answers",
    )
    dock.add_argument("--profiles", type=names, help="build the images of these compose profiles too (prepared)")
    dock.add_argument("--rebuild", action="store_true", help="rebuild the local images even where they exist")
    dock.set_defaults(func=cmd_docker)

    sweep = sub.add_parser("sweep", help="run the matrix once per version of a client package, each in a cached venv")
    sweep.add_argument(
        "packages", nargs="+", help="e.g. asyncpg==0.27.0 asyncpg==0.29.0 asyncpg  (no version: the newest)"
    )
    sweep.add_argument("--scenarios", help="comma-separated scenarios (default: all)")
    sweep.add_argument("--topologies", help="comma-separated topologies (default: all)")
    sweep.add_argument("--json", action="store_true", help="print the outcome per version as JSON (for CI)")
    sweep.add_argument(
        "--shard",
        type=shard,
        help="i/n: only the i-th of n parts of the versions (CI runners split a sweep; publish --rows merges them)",
    )
    sweep.add_argument("--results", default=str(RESULTS_DIR))
    sweep.add_argument(
        "--backend",
        choices=BACKENDS[:3],
        default="auto",
        help="where each version's matrix runs: native processes, Docker, or auto (Docker where it answers)",
    )
    sweep.set_defaults(func=cmd_sweep)

    bp = sub.add_parser(
        "build-pgbouncer",
        help="build PgBouncer from Debian's next release (1.24), or any release from its source tarball, into the "
        "lab's cache (once per version)",
    )
    bp.add_argument("--tarball", help="a PgBouncer source tarball: a path, or an http(s) URL (pgbouncer-1.23.1.tar.gz)")
    bp.add_argument("--sha256", help="the SHA-256 the tarball must have; nothing is built otherwise")
    bp.set_defaults(func=cmd_build_pgbouncer)

    target = sub.add_parser(
        "target",
        help="a pooler the lab did not start: `check` connects once to each endpoint; `clean` drops "
        "what a killed run left (docs/targets.md)",
    )
    target.add_argument("action", choices=["check", "clean"])
    target.add_argument("file", help="the target file (TOML)")
    target.set_defaults(func=cmd_target)

    sub.add_parser("list", help="list client configurations, topologies and scenarios").set_defaults(func=cmd_list)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    interrupts.install()  # `kill` ends a command as Ctrl-C does, and a second one cannot cut the teardown short
    try:
        return args.func(args)
    except BrokenPipeError:
        # a closed pipe (`pooler-lab status --json | head`) ends the command quietly, as it ends cat. Not by SIGPIPE's
        # default action: a run's drivers write to sockets a pooler has closed, and that signal would kill the run
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more to flush at exit
        return 128 + signal.SIGPIPE
    except LabError as exc:
        console.print(Text("error: ", style="bold red") + Text(str(exc)))
        return exc.exit_status
    except KeyboardInterrupt:
        console.print("interrupted; everything the lab started has been stopped")
        return INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
