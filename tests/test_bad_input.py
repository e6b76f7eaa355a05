"""Bad input gets a clear error that lists what is valid, from the library, the CLI and pytest."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from lab.clients.registry import client_class
from lab.errors import MissingDependency, PortTaken, UnknownName
from lab.options import LabOptions
from lab.plan import Plan
from lab.topology.backends import native
from lab.topology.ports import ensure_free

ROOT = Path(__file__).resolve().parent.parent


def test_unknown_client_lists_valid_ones() -> None:
    with pytest.raises(UnknownName) as info:
        client_class("asyncpg-fast")
    assert "unknown client 'asyncpg-fast'; valid clients: asyncpg-default, asyncpg-no-cache," in str(info.value)


def test_unknown_topology_lists_valid_ones() -> None:
    """The message lists every topology the plan knows (the compose file's and the in-process routers'), in order."""
    valid = Plan.build(LabOptions()).known["topology"]
    assert {"direct", "pgbouncer-transaction", "pgbouncer-session", "tenant-proxy-transaction"} <= set(valid)
    with pytest.raises(
        UnknownName, match=re.escape(f"unknown topology 'supavisor'; valid topologies: {', '.join(sorted(valid))}")
    ):
        Plan.build(LabOptions(topologies=("supavisor",)))


def test_cli_rejects_unknown_names_before_starting_anything() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "lab", "run", "--scenarios", "nope"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "unknown scenario 'nope'" in done.stderr and "repeated-query" in done.stderr


def test_pytest_option_rejects_unknown_names() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "experiments/", "--lab-clients", "asyncpg-fast", "-q"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 4  # pytest's usage error
    assert "unknown client 'asyncpg-fast'; valid clients:" in done.stderr + done.stdout


def test_port_taken_names_the_port() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(PortTaken, match=f"127.0.0.1:{port} \\(wanted for pgbouncer-session\\) is already in use"):
            ensure_free({port: "pgbouncer-session"})


def test_missing_pgbouncer_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from lab.machine import binaries

    monkeypatch.setattr(binaries.shutil, "which", lambda name: None)
    monkeypatch.setattr(binaries.os, "access", lambda path, mode: False)
    with pytest.raises(MissingDependency, match="apt-get install pgbouncer"):
        native.check_binaries()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--cell-timeout", "nan"], "give a finite number of seconds above 0"),
        (["--cell-timeout", "-1"], "give a finite number of seconds above 0"),
        (["--repeats", "0"], "at least 1"),
        (["--clients", ","], "names nothing"),
        (["--rtts", "inf"], "finite"),
    ],
)
def test_bad_values_are_refused_before_anything_starts(args: list[str], message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "lab", "run", *args], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and message in done.stderr, done.stderr


def test_expectation_rules_are_checked_before_bring_up(tmp_path: Path) -> None:
    from lab.errors import ConfigError
    from lab.options import LabOptions
    from lab.plan import Plan
    from lab.results.expectations import check_names, load

    known = Plan.build(LabOptions()).known
    bad = tmp_path / "rules.toml"
    bad.write_text('[[rule]]\nclient = "asyncpg-defualt"\noutcome = "ok"\nreason = "r"\n')
    with pytest.raises(ConfigError, match="client 'asyncpg-defualt' matches no client"):
        check_names(load(bad), known)
    bad.write_text('[[rule]]\nclient = 5\noutcome = "ok"\nreason = "r"\n')
    with pytest.raises(ConfigError, match="client = 5 must be a glob or a list of globs"):
        load(bad)


def test_ports_of_one_run_are_distinct() -> None:
    """Picked one at a time, the kernel may hand a just-released port out twice (two services of a run then race for it)."""
    from lab.topology.ports import free_ports

    for _ in range(20):
        ports = free_ports(12)
        assert len(set(ports)) == 12


def test_a_closed_pipe_ends_a_command_quietly() -> None:
    """`pooler-lab list | true`: the reader goes away before the command has written, and it ends without a
    traceback."""
    done = subprocess.run(
        f"{sys.executable} -m lab list | true",
        shell=True,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr


def test_a_socket_a_pooler_closed_does_not_kill_a_command() -> None:
    """A run's drivers write to sockets whose pooler has gone (Python's sockets do not ask the kernel to spare the
    signal): after the CLI's set-up, such a write is an EPIPE error for the driver to report, never SIGPIPE."""
    script = (
        "import socket, sys\n"
        "from lab.cli import main\n"
        "main(['list'])\n"
        "a, b = socket.socketpair()\n"
        "b.close()\n"
        "try:\n"
        "    a.send(b'x')\n"
        "except BrokenPipeError:\n"
        "    print('EPIPE', file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr.strip() == "EPIPE", (done.returncode, done.stderr[-2000:])


def test_a_server_message_with_markup_is_printed_as_it_is(tmp_path: Path) -> None:
    """What the CLI prints may hold a server's text: rich markup in it is text, never markup (no crash, nothing eaten)."""
    path = tmp_path / "[endpoints.d][red]x[bold].toml"
    path.write_text("not = [valid")
    done = subprocess.run(
        [sys.executable, "-m", "lab", "target", "check", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "[endpoints.d][red]x[bold].toml" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="the servers run as another user only when the lab runs as root")
def test_a_runtime_directory_the_servers_cannot_reach_is_one_line(tmp_path: Path) -> None:
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    done = subprocess.run(
        [sys.executable, "-m", "lab", "up"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "POOLER_LAB_RUNTIME": str(closed / "base")},
    )  # fmt: skip
    assert done.returncode == 3 and "cannot pass" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and len([x for x in done.stderr.splitlines() if x.startswith("error")]) == 1
