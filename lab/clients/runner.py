"""Runners: what runs a cell spec for a client configuration, in the lab's process or in another.

Python configurations run in process (lab.clients.python.execute), as fast as a plain loop.
Every other runtime (a folder of lab/clients/ with a runner.toml) runs as a subprocess that
speaks the contract (lab.clients.contract) in JSON lines: one long-lived process per runtime
per session, handed one cell at a time. The harness enforces the cell's limit on either: a
runner that sends nothing back within the limit (plus a grace the runner gets to report its own
hang) is stopped and the cell recorded as a hang; the next cell starts a fresh runner.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from typing import IO, Any, Protocol

from lab.clients.configuration import IN_PROCESS, Configuration
from lab.clients.contract import CONTRACT, CellSpec
from lab.clients.python.execute import InProcessRunner
from lab.clients.registry import client_class
from lab.clients.runtimes import Runtime, runtimes
from lab.errors import EnvironmentProblem
from lab.results.outcome import OK, CellResult, Outcome
from lab.topology.processes import die_with_parent

#: how long past the cell's limit a runner may take to report (its own hang report, closing its pool)
GRACE_S = 5.0
START_TIMEOUT_S = 30.0


class Runner(Protocol):
    name: str

    def run(self, spec: CellSpec, after_iteration: Callable[[], None] | None = None) -> CellResult: ...

    def close(self) -> None: ...


class SubprocessRunner:
    """One runtime's runner process, started on first use and kept for the session."""

    def __init__(self, runtime: Runtime, progress: Callable[[str], None] = lambda m: None) -> None:
        self.runtime, self.progress = runtime, progress
        self.name = runtime.name
        self.process: subprocess.Popen[str] | None = None
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stderr: IO[str] | None = None
        self.hello: dict[str, Any] = {}

    def _start(self) -> subprocess.Popen[str]:
        home = self.runtime.ensure(self.progress)
        # kept open for the runner's life (its stderr), closed by close()
        self.stderr = tempfile.TemporaryFile("w+", prefix=f"pooler-lab-{self.name}-")  # noqa: SIM115
        try:
            process = subprocess.Popen(
                self.runtime.argv(),
                cwd=home,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self.stderr,
                text=True,
                env={**os.environ, **self.runtime.environment()},
                preexec_fn=lambda: die_with_parent(signal.SIGTERM),
            )
        except OSError as exc:
            raise EnvironmentProblem(f"the {self.name} runner did not start: {exc}") from None
        self.lines = queue.Queue()
        threading.Thread(target=self._read, args=(process.stdout, self.lines), daemon=True).start()
        hello = self._next(time.monotonic() + START_TIMEOUT_S, process)
        if hello is None or hello.get("type") != "hello":
            self._kill(process)
            raise EnvironmentProblem(f"the {self.name} runner did not say hello: {self._stderr_tail()}")
        if hello.get("contract") != CONTRACT:
            self._kill(process)
            raise EnvironmentProblem(
                f"the {self.name} runner speaks contract {hello.get('contract')}, the lab {CONTRACT}"
            )
        self.hello = hello
        self.process = process
        return process

    @staticmethod
    def _read(stream: IO[str] | None, into: queue.Queue[str | None]) -> None:
        assert stream is not None
        for line in stream:
            into.put(line)
        into.put(None)

    def _next(self, deadline: float, process: subprocess.Popen[str]) -> dict[str, Any] | None:
        """The runner's next message, or None when it ended or the deadline passed."""
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return None
            if line is None:
                return None
            line = line.strip()
            if not line:
                continue
            try:
                message = json.loads(line)
            except ValueError:
                continue  # a driver's own printing on stdout: not the contract's
            if isinstance(message, dict):
                return message

    def run(self, spec: CellSpec, after_iteration: Callable[[], None] | None = None) -> CellResult:
        """One cell. `after_iteration` runs once the cell is done (a runner in another process cannot be paused
        between iterations)."""
        process = self.process if self.process is not None and self.process.poll() is None else self._start()
        started = time.perf_counter()
        assert process.stdin is not None
        process.stdin.write(spec.to_json() + "\n")
        process.stdin.flush()
        result = CellResult(OK)
        deadline = time.monotonic() + spec.cell_timeout_s + GRACE_S
        while True:
            message = self._next(deadline, process)
            if message is None:
                alive = process.poll() is None
                self._kill(process)
                self.process = None
                what = (
                    f"the {self.name} runner answered nothing within the cell limit of {spec.cell_timeout_s:g}s "
                    f"(+{GRACE_S:g}s) and was stopped"
                    if alive
                    else f"the {self.name} runner exited (code {process.returncode}): {self._stderr_tail()}"
                )
                stopped = Outcome(
                    "hang" if alive else "error",
                    error_class=None if alive else "RunnerExit",
                    message=None if alive else what,
                    detail=what,
                )
                result.outcomes.append(stopped)
                if result.outcome.kind == "ok":
                    result.outcome = stopped
                break
            kind = message.get("type")
            if kind == "iteration":
                outcome = Outcome.from_dict(message.get("outcome") or {"kind": "ok"})
                result.iterations = int(message.get("index", result.iterations)) + 1
                result.latencies_s += [float(x) for x in message.get("latencies_s", [])]
                result.outcomes.append(outcome)
                if result.outcome.kind == "ok" and outcome.kind != "ok":
                    result.outcome = outcome
            elif kind == "done":
                result.versions = {str(k): str(v) for k, v in (message.get("versions") or {}).items()} or None
                break
            elif kind == "fatal":
                raise EnvironmentProblem(f"the {self.name} runner gave up: {message.get('message')}")
        if after_iteration is not None:
            after_iteration()
        result.elapsed_s = time.perf_counter() - started
        return result

    def _stderr_tail(self, lines: int = 3) -> str:
        if self.stderr is None:
            return ""
        self.stderr.seek(0)
        tail = [line.strip() for line in self.stderr.read().splitlines() if line.strip()][-lines:]
        return " | ".join(tail) or "(no output)"

    @staticmethod
    def _kill(process: subprocess.Popen[str]) -> None:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=5)

    def close(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            try:
                assert process.stdin is not None
                process.stdin.close()
                process.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self._kill(process)
        if self.stderr is not None:
            self.stderr.close()
            self.stderr = None


class Runners:
    """The runners of a session: the in-process one, and one subprocess runner per runtime that a cell needs."""

    def __init__(self, progress: Callable[[str], None] = lambda m: None) -> None:
        self.progress = progress
        self.in_process = InProcessRunner(client_class)
        self.started: dict[str, SubprocessRunner] = {}

    def for_(self, configuration: Configuration) -> Runner:
        if configuration.runtime == IN_PROCESS:
            return self.in_process
        if configuration.runtime not in self.started:
            self.started[configuration.runtime] = SubprocessRunner(runtimes()[configuration.runtime], self.progress)
        return self.started[configuration.runtime]

    def close(self) -> None:
        for runner in self.started.values():
            runner.close()
        self.started.clear()
