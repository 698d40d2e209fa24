"""A whole dtxfast network as local processes: what ``dtx demo`` and the integration tests start.

:class:`LocalCluster` keeps everything in one directory: the SQLite ledger (``ledger.db``), one
key file per node (``keys/NAME.key``), and a data directory and a log per process. Its
``start_*`` methods run real node processes (``python -m dtxfast storage|dataowner|executor
start``) and wait for each one's ``listening on`` line; :meth:`LocalCluster.close` stops them all
(SIGTERM, then SIGKILL), also when a test or the demo fails midway. The directory stays when
``keep`` is set, so ``dtx task list -L DIR/ledger.db`` and the other commands work on it later.

Examples
--------
>>> with LocalCluster() as c:          # a ledger and no processes yet (starting one takes a second)
...     c.identity("requester").node_id == c.identity("requester").node_id
True
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import NotFound, ParameterError, ProtocolError
from ..ledger import NodeIdentity, SQLiteLedger
from ..ledger.records import TaskStatus
from .local import LocalNode, stop_all

__all__ = ["LocalCluster", "revived_storage", "wait_for_task"]

_FINAL = (TaskStatus.FINISHED, TaskStatus.FAILED, TaskStatus.REJECTED)


class LocalCluster:
    """A ledger and node processes in one directory (see the module docstring).

    Parameters
    ----------
    base : path, optional
        The directory (default: a new temporary one, removed on close unless ``keep``).
    keep : bool
        Keep the directory (ledger, keys, data, logs) after :meth:`close`.
    heartbeat, poll : float
        Seconds between the nodes' heartbeats; between the executors' and owners' ledger looks.
    task_timeout : float
        The executors' ``--task-timeout``.
    """

    def __init__(self, base: str | os.PathLike[str] | None = None, *, keep: bool = False, heartbeat: float = 2.0,
                 poll: float = 0.2, task_timeout: float = 120.0) -> None:
        self._own_dir = base is None
        self.base = Path(tempfile.mkdtemp(prefix="dtx-cluster-")) if base is None else Path(base)
        self.base.mkdir(parents=True, exist_ok=True)
        self.keep = keep
        self.heartbeat, self.poll, self.task_timeout = heartbeat, poll, task_timeout
        self.ledger_path = self.base / "ledger.db"
        self.keys = self.base / "keys"
        self.keys.mkdir(exist_ok=True)
        self.ledger = SQLiteLedger(self.ledger_path, create=not self.ledger_path.exists())
        self.processes: dict[str, LocalNode] = {}
        self._lock = threading.Lock()

    # -- keys -------------------------------------------------------------------------------------
    def key_path(self, name: str) -> Path:
        """``keys/NAME.key`` (created with a fresh identity on first use)."""
        if not name or not all(c.isalnum() or c in "-_" for c in name):
            raise ParameterError(f"a node name is letters, digits, '-' and '_', got {name!r}")
        path = self.keys / f"{name}.key"
        if not path.exists():
            NodeIdentity.generate().save(path)
        return path

    def identity(self, name: str) -> NodeIdentity:
        """The identity of node ``name`` (its key file is created on first use)."""
        return NodeIdentity.load(self.key_path(name))

    def node_id(self, name: str) -> str:
        return str(self.identity(name).node_id)

    # -- processes --------------------------------------------------------------------------------
    def _start(self, name: str, role_argv: Sequence[str]) -> LocalNode:
        if name in self.processes and self.processes[name].alive:
            raise ParameterError(f"node {name} is already running")
        argv = [sys.executable, "-m", "dtxfast", *role_argv, "--key", str(self.key_path(name)),
                "-L", str(self.ledger_path), "--data-dir", str(self.base / "data" / name)]
        (self.base / "logs").mkdir(exist_ok=True)
        node = LocalNode(argv, log_path=self.base / "logs" / f"{name}.log")
        with self._lock:
            self.processes[name] = node
        node.start()
        return node

    def start_storage(self, name: str) -> LocalNode:
        """A storage node (``dtx storage start``)."""
        return self._start(name, ["storage", "start", "--listen", "127.0.0.1:0", "--heartbeat", str(self.heartbeat)])

    def start_dataowner(self, name: str, *, approve: str = "auto", executors: Sequence[str] = ()) -> LocalNode:
        """A data owner node (``dtx dataowner start``) approving ``executors`` (node ids) automatically."""
        argv = ["dataowner", "start", "--approve", approve, "--heartbeat", str(self.heartbeat),
                "--poll", str(self.poll)]
        if executors:
            argv += ["--executors", ",".join(executors)]
        return self._start(name, argv)

    def start_executor(self, name: str, *extra: str) -> LocalNode:
        """An executor (``dtx executor start``; ``extra`` flags such as ``--compute ray:ADDR``)."""
        return self._start(name, ["executor", "start", "--listen", "127.0.0.1:0", "--heartbeat", str(self.heartbeat),
                                  "--poll", str(self.poll), "--task-timeout", str(self.task_timeout), *extra])

    def start_many(self, starters: Sequence[Callable[[], Any]]) -> None:
        """Run several ``start_*`` calls at once (each waits for its own readiness line)."""
        errors: list[BaseException] = []

        def run(fn: Callable[[], Any]) -> None:
            try:
                fn()
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(fn,)) for fn in starters]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]

    def close(self) -> None:
        """Stop every process (in parallel), close the ledger, remove the directory unless kept."""
        stop_all(self.processes.values())
        self.ledger.close()
        if self._own_dir and not self.keep:
            shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def wait_for_task(ledger: Any, task_id: str, statuses: Sequence[str] = _FINAL, *, timeout: float = 600.0,
                  on_change: Callable[[Any], None] | None = None, interval: float = 0.2) -> Any:
    """Follow a task until its status is one of ``statuses``; returns its record.

    ``on_change(record)`` is called whenever the record changed (status, progress). Raises
    ProtocolError after ``timeout`` seconds, naming the status it stayed in.
    """
    deadline = time.monotonic() + timeout
    last = None
    while True:
        t = ledger.get_task(task_id)
        if on_change is not None and t != last:
            on_change(t)
        last = t
        if t.status in statuses:
            return t
        if t.status in _FINAL:
            raise ProtocolError(f"task {task_id} ended {t.status}" + (f": {t.reason}" if t.reason else ""))
        if time.monotonic() > deadline:
            raise ProtocolError(f"task {task_id} stayed {t.status} for {timeout:g} s")
        time.sleep(interval)


def _cluster_storage(base: Path, ledger: Any) -> list[str]:
    """Names of the storage nodes a :class:`LocalCluster` directory holds (key and data dir)."""
    names = []
    for key in sorted((base / "keys").glob("*.key")):
        name = key.stem
        if not (base / "data" / name).is_dir():
            continue
        try:
            if ledger.get_node(NodeIdentity.load(key).node_id).role == "storage":
                names.append(name)
        except (NotFound, OSError, ValueError):
            continue
    return names


@contextlib.contextmanager
def revived_storage(ledger_path: str | os.PathLike[str]) -> Iterator[list[str]]:
    """Restart, for the ``with`` block, the stopped storage nodes of the cluster directory that
    holds ``ledger_path`` (what ``dtx demo --workdir DIR`` leaves): each serves its data directory
    again at a fresh address (it re-registers it). Yields their names (empty: not a cluster
    directory); stops them on exit.
    """
    base = Path(ledger_path).resolve().parent
    if not (base / "keys").is_dir() or not (base / "data").is_dir():
        yield []
        return
    cluster = LocalCluster(base, keep=True)
    try:
        names = _cluster_storage(base, cluster.ledger)
        cluster.start_many([lambda n=n: cluster.start_storage(n) for n in names])
        yield names
    finally:
        cluster.close()
