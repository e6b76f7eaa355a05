"""Process lifecycle: nothing the lab starts outlives it, whether a run ends, fails, is interrupted or killed."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from lab.errors import PortTaken
from lab.topology.backends.choice import engine_status
from lab.topology.backends.native import NativeBackend
from lab.topology.compose import load
from lab.topology.processes import group_alive, run_as, spawn
from lab.topology.runstate import RunState, all_runs, reap_stale

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.lifecycle
SERVICES = load().services  # one process per service of the compose file


def _alive(pid: int) -> bool:
    return group_alive(pid)


def _wait_for(predicate, timeout: float = 30.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_normal_end_stops_every_process_and_removes_the_run() -> None:
    backend = NativeBackend()
    with backend as topo:
        pids = [p.pid for p in backend.state.processes]
        rundir = backend.state.directory
        assert len(pids) == len(SERVICES) and all(_alive(p) for p in pids)
        for ep in topo.endpoints.values():
            if ep.topology == "rest":
                continue
            with psycopg.connect(ep.dsn(), connect_timeout=5) as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
        assert topo.endpoint("pgbouncer-transaction").facts.pool_mode == "transaction"
    assert not any(_alive(p) for p in pids)
    assert not rundir.exists()


def test_failed_start_leaves_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pooler that cannot start: the postgres already started is stopped too."""
    from lab.errors import StartupError
    from lab.topology.services import pgbouncer

    monkeypatch.setattr(pgbouncer.PgBouncer, "binary", lambda self, svc, progress=print: Path("/bin/false"))
    monkeypatch.setattr(pgbouncer, "binary_version", lambda b: "0")
    before = _my_runs()
    backend = NativeBackend()
    with pytest.raises(StartupError, match="exited during start-up"), backend:
        pass
    assert _my_runs() == before


def test_fixed_ports_taken_are_refused_before_starting_all_named_in_one_line() -> None:
    """Two of the fixed ports held (a fixed port in the ephemeral range may also be some client socket's for a moment):
    one refusal naming both, before anything starts."""
    with socket.socket() as a, socket.socket() as b:
        for s, port in ((a, 6543), (b, 5432)):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                pytest.skip(f"port {port} is held by something else on this machine; test_bad_input covers the refusal")
            s.listen()
        before = _my_runs()
        with pytest.raises(PortTaken) as refused, NativeBackend(fixed_ports=True):
            pass
    message = str(refused.value)
    assert "127.0.0.1:6543 (wanted for pgbouncer-transaction" in message, message
    assert "127.0.0.1:5432 (wanted for pgbouncer-session" in message, message
    assert "\n" not in message
    assert _my_runs() == before


def _my_runs() -> set[str]:
    """Runs this test process owns (the session's shared topology among them)."""
    return {r.run_id for r in all_runs() if r.owner_pid == os.getpid()}


def _run_state_of(proc: subprocess.Popen) -> RunState | None:
    for state in all_runs():
        if state.owner_pid == proc.pid and len(state.processes) >= len(SERVICES) and state.topology:
            return state
    return None


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_experiment_run_stops_its_servers(sig: int, tmp_path: Path) -> None:
    """Ctrl-C (SIGINT) or kill (SIGTERM) in the middle of `pytest experiments/`."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest",
            "experiments/test_matrix.py",
            f"--lab-results={tmp_path}",
            "-q",
            "-x",
            "--lab-backend=native",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert _wait_for(lambda: _run_state_of(proc) is not None), "the topology never came up"
        state = _run_state_of(proc)
        assert state is not None
        time.sleep(1.0)  # inside the first cells
        proc.send_signal(sig)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            if os.environ.get("LAB_TEST_DUMP"):  # a maintainer's stack dump of the run that did not stop
                subprocess.run([os.environ["LAB_TEST_DUMP"], "dump", "--pid", str(proc.pid)], timeout=30)
            proc.kill()
            raise AssertionError(
                f"signal {sig} did not stop the run: {proc.communicate()[0].decode()[-3000:]}"
            ) from None
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not any(_alive(p.pid) for p in state.processes), proc.stdout.read().decode()[-2000:]
    assert not state.directory.exists()
    assert list((tmp_path / "runs").glob("*.jsonl")), "rows recorded before the interrupt are kept"


def test_a_signal_swallowed_by_a_finalizer_still_ends_the_run_at_the_next_cell() -> None:
    """A SIGTERM that lands in a `__del__` is printed as "Exception ignored" and lost, and further signals are ignored
    so that the teardown cannot be cut short: the next cell must raise it again, or the run goes on to its end."""
    script = (
        "import os, signal, time\n"
        "from lab import interrupts\n"
        "interrupts.install()\n"
        "class Finalized:\n"
        "    def __del__(self):\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "        time.sleep(0.2)  # the handler runs here, inside the finalizer\n"
        "Finalized()\n"
        "print('went on', flush=True)\n"
        "from lab.pytest_plugin import pytest_runtest_setup  # the hook pytest calls before every cell\n"
        "try:\n"
        "    pytest_runtest_setup(None)\n"
        "except KeyboardInterrupt:\n"
        "    print('stopped at the next cell')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert done.stdout.splitlines() == ["went on", "stopped at the next cell"], done.stdout + done.stderr
    assert "Exception ignored" in done.stderr and "KeyboardInterrupt" in done.stderr


@pytest.mark.skipif(not engine_status()[0], reason=f"needs a Docker engine with Compose v2: {engine_status()[1]}")
def test_interrupted_docker_run_and_killed_docker_run_leave_no_container(tmp_path: Path, compose_containers) -> None:  # type: ignore[no-untyped-def]
    """Ctrl-C in the middle of a Docker run: `compose down`, no container, no run directory, the rows kept. Then
    SIGKILL of another: its containers outlive it, and the next reap (any later run, or `down`) removes them."""

    def docker_run(results: Path) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pytest",
                "experiments/test_matrix.py",
                f"--lab-results={results}",
                "-q",
                "-x",
                "--lab-backend=docker",
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )

    def state_of(proc: subprocess.Popen[bytes]) -> object:
        return next(
            (s for s in all_runs() if s.owner_pid == proc.pid and s.topology and s.topology.get("endpoints")), None
        )

    proc = docker_run(tmp_path / "interrupted")
    try:
        assert _wait_for(lambda: state_of(proc) is not None, 90), "the topology never came up"
        state = state_of(proc)
        time.sleep(2.0)  # inside the first cells
        proc.send_signal(signal.SIGINT)
        proc.wait(
            timeout=150
        )  # the cell in progress ends, then compose down: minutes on a machine with both cores busy
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not compose_containers(), proc.stdout.read().decode()[-2000:]  # type: ignore[union-attr]
    assert not state.directory.exists()  # type: ignore[attr-defined]
    assert list((tmp_path / "interrupted" / "runs").glob("*.jsonl")), "rows recorded before the interrupt are kept"

    proc = docker_run(tmp_path / "killed")
    try:
        assert _wait_for(lambda: state_of(proc) is not None, 90), "the topology never came up"
        proc.kill()
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert compose_containers(), "a SIGKILLed Docker run leaves its containers to the reaper"
    reaped = reap_stale()
    assert any("compose project" in line for line in reaped), reaped
    assert not compose_containers()


def test_killed_run_is_cleaned_up() -> None:
    """SIGKILL gives the run no chance to clean up: the kernel's parent-death signal and the reaper do."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from lab.topology.backends.native import NativeBackend; import time; NativeBackend().start(); time.sleep(600)",
        ],
        cwd=ROOT,
    )
    try:
        assert _wait_for(lambda: _run_state_of(proc) is not None)
        state = _run_state_of(proc)
        assert state is not None
        proc.kill()
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert _wait_for(lambda: not any(_alive(p.pid) for p in state.processes), 10)
    reaped = reap_stale()
    assert any(state.run_id in line for line in reaped)
    assert not state.directory.exists()


def test_reaper_stops_processes_of_a_dead_owner(tmp_path: Path) -> None:
    """Without the parent-death signal (a server that ignored it, another kernel): the reaper still stops it."""
    state = RunState.create(persistent=False, base=tmp_path)
    server = spawn(
        "sleeper",
        ["sleep", "300"],
        run_as(),
        state.directory / "sleep.log",
        signal.SIGTERM,
        None,
        env={"POOLER_LAB_RUN": str(state.directory)},
    )
    state.add_process("sleeper", server.pid, signal.SIGTERM)
    state.owner_pid, state.owner_start = 1, -1  # an owner that is certainly not alive as recorded
    state.save()
    assert _alive(server.pid)
    reaped = reap_stale(tmp_path)
    server.popen.wait(timeout=10)
    assert reaped and "sleeper" in reaped[0]
    assert not state.directory.exists()


def test_up_status_down() -> None:
    env = {**os.environ}
    up = subprocess.run(
        [sys.executable, "-m", "lab", "up"], cwd=ROOT, capture_output=True, text=True, timeout=60, env=env
    )
    assert up.returncode == 0, up.stderr
    try:
        masked = subprocess.run(
            [sys.executable, "-m", "lab", "status", "--json"], cwd=ROOT, capture_output=True, text=True, timeout=30
        ).stdout
        status = json.loads(
            subprocess.run(
                [sys.executable, "-m", "lab", "status", "--json", "--show-passwords"],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=30,
            ).stdout
        )
        mine = [r for r in status if r["persistent"]]
        assert mine and all(p["alive"] for p in mine[-1]["processes"])
        run_id = mine[-1]["run_id"]
        secrets = [
            mine[-1]["topology"]["superuser_password"],
            *(e["password"] for e in mine[-1]["topology"]["endpoints"].values() if e["password"]),
        ]
        plain = subprocess.run(
            [sys.executable, "-m", "lab", "status"], cwd=ROOT, capture_output=True, text=True, timeout=30
        )
        for shown in (up.stdout + up.stderr, masked, plain.stdout + plain.stderr):
            assert not any(secret in shown for secret in secrets), "a password was printed without --show-passwords"
        assert "postgresql://lab_app:********@127.0.0.1:" in plain.stdout
        dsn = mine[-1]["topology"]["endpoints"]["pgbouncer-session"]
        with psycopg.connect(
            host=dsn["host"], port=dsn["port"], user=dsn["user"], password=dsn["password"], dbname="postgres"
        ) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        # only this test's own topology: `down` with no id would stop every persistent run of this user
        down = subprocess.run(
            [sys.executable, "-m", "lab", "down", run_id], cwd=ROOT, capture_output=True, text=True, timeout=60
        )
    assert down.returncode == 0
    pids = [p["pid"] for p in mine[-1]["processes"]]
    assert _wait_for(lambda: not any(_alive(p) for p in pids), 10)


def test_cleanup_touches_nothing_it_cannot_prove_is_its_own(tmp_path: Path) -> None:
    """A foreign directory and a forged state file in the base: status, the reaper and down leave both alone."""
    base = tmp_path / "base"
    base.mkdir(mode=0o700)
    foreign = base / "someone-elses-data"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("precious")
    os.utime(foreign, (0, 0))  # old enough that the former cleanup would have removed it
    victim = tmp_path / "victim"
    victim.mkdir()
    sleeper = subprocess.Popen(["sleep", "300"])
    try:
        # a forged record: its directory points elsewhere, its pid is a process the lab never started
        forged = {
            "run_id": "forged",
            "directory": str(victim),
            "owner_pid": 1,
            "owner_start": -1,
            "created": 0,
            "processes": [{"name": "postgres", "pid": sleeper.pid, "stop_signal": 9, "start": None}],
            "topology": None,
        }
        (base / "forged.json").write_text(json.dumps(forged))
        (base / "forged2.json").write_text(json.dumps({**forged, "run_id": "another-name"}))
        reaped = reap_stale(base)
        assert sleeper.poll() is None, "a process the lab did not start was signalled"
        assert victim.is_dir() and foreign.is_dir() and (foreign / "keep.txt").read_text() == "precious"
        assert "forged" in " ".join(reaped) and (base / "forged2.json").exists()
        from lab.topology.runstate import unknown_entries

        assert foreign in unknown_entries(base)
    finally:
        sleeper.kill()


def test_a_base_others_control_is_refused(tmp_path: Path) -> None:
    from lab.errors import EnvironmentProblem

    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    with pytest.raises(EnvironmentProblem, match="can be written by others"):
        RunState.create(persistent=False, base=shared)
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(EnvironmentProblem, match="not a directory"):
        all_runs(link)
    if os.geteuid() == 0:  # a base owned by another user (the lab's own server user, say)
        other = tmp_path / "other"
        other.mkdir(mode=0o755)
        os.chown(other, run_as().uid, run_as().gid)
        with pytest.raises(EnvironmentProblem, match="belongs to uid"):
            all_runs(other)
        done = subprocess.run(
            [sys.executable, "-m", "lab", "status"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "POOLER_LAB_RUNTIME": str(other)},
        )
        assert done.returncode == 3 and "Traceback" not in done.stderr and "belongs to uid" in done.stderr


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSTOP])
def test_a_server_that_dies_mid_run_stops_the_run(sig: int, tmp_path: Path) -> None:
    """Kill PostgreSQL in the middle of the matrix (or stop it: a stopped server answers nothing): one line names it,
    exit status 3, and no row after it is a client's outcome. Nothing this failing run printed or wrote holds one of
    its passwords."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lab",
            "run",
            "--backend",
            "native",
            "--network",
            "none",
            "--jobs",
            "1",  # one session, whose server this kills (each part of a parallel run stops on its own server alike)
            "--results",
            str(tmp_path),
            "--",
            "experiments/test_matrix.py",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert _wait_for(lambda: _run_state_of(proc) is not None, 60), "the topology never came up"
        state = _run_state_of(proc)
        assert state is not None
        assert _wait_for(lambda: any(p.stat().st_size > 0 for p in (tmp_path / "runs").glob("*.jsonl")), 60)
        assert state.topology is not None
        secrets = [
            state.topology["superuser_password"],
            *(e["password"] for e in state.topology["endpoints"].values() if e["password"]),
            *(k for e in state.topology["endpoints"].values() for k in e["keys"].values()),
        ]
        assert len(secrets) >= 4
        killed_at = time.time()
        postgres = next(p for p in state.processes if p.name == "postgres")
        os.kill(postgres.pid, sig)
        out, _ = proc.communicate(timeout=60)  # within the minute, a stopped server too
    finally:
        if proc.poll() is None:
            proc.kill()
    text = out.decode()
    assert proc.returncode == 3, text[-3000:]
    named = "is no longer running" if sig == signal.SIGKILL else "is stopped"
    assert f"postgres (pid {postgres.pid}) {named}" in text, text[-3000:]
    assert text.count("Traceback") == 0 and text.count("ConnectionRefusedError") <= 2, text[-3000:]
    after = text[text.find("experiments/test_matrix.py") :]
    assert len(after.splitlines()) < 40, after  # the cells' failures are not printed: one line names the server
    rows = [json.loads(line) for f in (tmp_path / "runs").glob("*.jsonl") for line in f.read_text().splitlines()]
    late = [r for r in rows if time.mktime(time.strptime(r["recorded_at"][:19], "%Y-%m-%dT%H:%M:%S")) > killed_at + 1]
    assert not late, f"rows recorded after the server died: {[r['cell'] for r in late]}"
    assert not any(_alive(p.pid) for p in state.processes)

    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written, "the run wrote its rows"
    for where, content in [("the output", text), *((str(p), p.read_text(errors="replace")) for p in written)]:
        assert not any(secret in content for secret in secrets), f"a secret of the run is in {where}"
