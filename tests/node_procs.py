"""Fixtures that run real node processes on loopback (registered in ``conftest.py``).

A node command must print ``listening on URL`` on stdout when it is ready (every ``dtx <role>
start`` does: ``http://HOST:PORT`` for a server, ``dtx://dataowner/ID`` for a node without one).
:class:`NodeProcess` starts one, waits for that line (bounded), keeps draining its stdout, sends
its stderr to a log file, and can be SIGKILLed, stopped with SIGTERM, and restarted with the same
command. The ``node_launcher`` (per test) and
``session_node_launcher`` (per session, for tests that only read) fixtures stop every process
they started in their finalizers, also when the test failed.

Port 0 lets the node pick a free port itself (no race between choosing and binding); the URL
comes from the readiness line. :func:`free_port` is there for a restart on a fixed port.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

__all__ = ["NodeLauncher", "NodeProcess", "free_port", "node_launcher", "session_node_launcher"]

_READY = re.compile(r"listening on (\S+://\S+)")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dtx_command(*args: str) -> list[str]:
    """``dtx ARGS`` run by this interpreter (no reliance on PATH)."""
    return [sys.executable, "-m", "dtxfast", *args]


class NodeProcess:
    """One node process (see the module docstring)."""

    def __init__(self, argv: Sequence[str], *, name: str, log_dir: Path, env: dict[str, str] | None = None,
                 ready_timeout: float = 60.0) -> None:
        self.argv = list(argv)
        self.name = name
        self.log_path = Path(log_dir) / f"{name}.log"
        self.env = {**os.environ, **(env or {})}
        self.ready_timeout = ready_timeout
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.stdout_lines: list[str] = []

    def start(self) -> str:
        """Start and wait for the readiness line; returns the node's URL."""
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=log, text=True, env=self.env,
                                     start_new_session=True)
        log.close()
        lines: queue.Queue[str | None] = queue.Queue()

        def drain(stream: object, proc: subprocess.Popen[str]) -> None:
            for line in proc.stdout:  # type: ignore[union-attr]
                self.stdout_lines.append(line)
                lines.put(line)
            lines.put(None)

        threading.Thread(target=drain, args=(self.proc.stdout, self.proc), daemon=True).start()
        deadline = time.monotonic() + self.ready_timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                raise TimeoutError(f"{self.name} printed no readiness line in {self.ready_timeout} s:\n{self.log()}")
            try:
                line = lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                self.proc.wait()
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode} before it was ready:\n{self.log()}")
            m = _READY.search(line)
            if m:
                self.url = m.group(1)
                return self.url

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL (no clean-up in the node) and reap."""
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM and wait (SIGKILL after ``timeout``); the exit code."""
        if self.proc is None:
            return None
        if self.alive:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def restart(self, argv: Sequence[str] | None = None) -> str:
        """Stop if running, then start again (the same command unless ``argv``)."""
        self.stop()
        if argv is not None:
            self.argv = list(argv)
        return self.start()

    def log(self) -> str:
        """What the node wrote on stderr so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


class NodeLauncher:
    """Starts node processes and stops all of them in :meth:`stop_all`."""

    def __init__(self, base: Path) -> None:
        self.base = Path(base)
        self.base.mkdir(parents=True, exist_ok=True)
        self.procs: list[NodeProcess] = []

    def start(self, argv: Sequence[str], *, name: str | None = None, **kw: object) -> NodeProcess:
        p = NodeProcess(argv, name=name or f"node{len(self.procs)}", log_dir=self.base, **kw)  # type: ignore[arg-type]
        self.procs.append(p)
        p.start()
        return p

    def stop_all(self) -> None:
        for p in self.procs:
            try:
                p.stop(timeout=10)
            except Exception:
                p.kill()
        self.procs.clear()


@pytest.fixture
def node_launcher(tmp_path: Path) -> Iterator[NodeLauncher]:
    """Node processes for one test, always stopped afterwards."""
    launcher = NodeLauncher(tmp_path / "nodes")
    try:
        yield launcher
    finally:
        launcher.stop_all()


@pytest.fixture(scope="session")
def session_node_launcher(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeLauncher]:
    """Node processes shared by the tests of a session (for tests that only read)."""
    launcher = NodeLauncher(tmp_path_factory.mktemp("session-nodes"))
    try:
        yield launcher
    finally:
        launcher.stop_all()
