"""Storage nodes as local processes: what ``dtx storage demo`` and the benchmarks start.

:class:`LocalNode` runs one ``dtx storage start`` process (this interpreter, ``-m dtxfast``),
waits for its readiness line and can SIGKILL it, stop it with SIGTERM or restart it.
:class:`LocalStorageNetwork` is a temporary directory with a SQLite ledger, ``n`` node keys
and data directories and the ``n`` running nodes; leaving the ``with`` block stops every
process and removes the directory (unless ``keep``).

Examples
--------
>>> with LocalStorageNetwork(0) as net:      # a ledger and no nodes (starting some takes seconds)
...     net.ledger.height
0
"""

from __future__ import annotations

import hashlib
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..errors import ProtocolError
from ..ledger import NodeIdentity, SQLiteLedger

__all__ = ["LocalNode", "LocalStorageNetwork", "run_storage_demo", "stop_all"]

_READY = "listening on "


class LocalNode:
    """One node process started from ``argv``; :meth:`start` waits for ``listening on URL``."""

    def __init__(self, argv: list[str], *, log_path: Path, ready_timeout: float = 60.0) -> None:
        self.argv = argv
        self.log_path = log_path
        self.ready_timeout = ready_timeout
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self) -> str:
        with open(self.log_path, "a") as log:
            self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=log, text=True,
                                         start_new_session=True)
        lines: queue.Queue[str | None] = queue.Queue()
        proc = self.proc

        def drain() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=drain, daemon=True).start()
        deadline = time.monotonic() + self.ready_timeout
        while True:
            try:
                line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                line = ""
            if line is None or time.monotonic() > deadline:
                self.stop()
                raise ProtocolError(f"node {self.argv} did not start: {self.log_path.read_text()[-2000:]}")
            if line.startswith(_READY):
                self.url = line[len(_READY):].strip()
                return self.url

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: the node gets no chance to clean up."""
        if self.alive:
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(10)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``."""
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()


def stop_all(nodes: Iterable[LocalNode]) -> None:
    """Stop node processes in parallel (SIGTERM, then SIGKILL after each one's grace period)."""
    threads = [threading.Thread(target=n.stop) for n in nodes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


class LocalStorageNetwork:
    """A temporary ledger and ``n`` storage-node processes (see the module docstring).

    Parameters
    ----------
    n : int
        Nodes to start.
    heartbeat : float
        Seconds between the nodes' heartbeats.
    base : path, optional
        Where to put everything (default: a new temporary directory).
    keep : bool
        Keep the directory afterwards.
    """

    def __init__(self, n: int = 5, *, heartbeat: float = 1.0, base: str | os.PathLike[str] | None = None,
                 keep: bool = False) -> None:
        self.n = n
        self.heartbeat = heartbeat
        self._own_dir = base is None
        self.base = Path(tempfile.mkdtemp(prefix="dtx-storage-")) if base is None else Path(base)
        self.base.mkdir(parents=True, exist_ok=True)
        self.keep = keep
        self.ledger_path = self.base / "ledger.db"
        self.ledger = SQLiteLedger(self.ledger_path, create=not self.ledger_path.exists())
        self.nodes: list[LocalNode] = []
        self.ids: list[str] = []

    def add_node(self) -> LocalNode:
        i = len(self.nodes)
        ident = NodeIdentity.generate()
        key = self.base / f"node{i}.key"
        ident.save(key, overwrite=True)
        argv = [sys.executable, "-m", "dtxfast", "storage", "start", "--key", str(key), "-L", str(self.ledger_path),
                "--data-dir", str(self.base / f"data{i}"), "--listen", "127.0.0.1:0",
                "--heartbeat", str(self.heartbeat)]
        node = LocalNode(argv, log_path=self.base / f"node{i}.log")
        self.nodes.append(node)
        self.ids.append(ident.node_id)
        node.start()
        return node

    def node(self, node_id: str) -> LocalNode:
        return self.nodes[self.ids.index(node_id)]

    def __enter__(self) -> LocalStorageNetwork:
        try:
            for _ in range(self.n):
                self.add_node()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Stop every node (in parallel), close the ledger, remove the directory unless ``keep``."""
        stop_all(self.nodes)
        self.ledger.close()
        if self._own_dir and not self.keep:
            shutil.rmtree(self.base, ignore_errors=True)

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_storage_demo(*, size_mib: float = 24.0, nodes: int = 5, slice_mib: float = 4.0, interval: float = 2.0,
                     echo: Callable[[str], Any] = print, keep: str | None = None) -> dict[str, Any]:
    """Start ``nodes`` storage nodes on a temporary SQLite ledger, upload a random file, run a
    challenge round, SIGKILL the node holding the most replicas, repair, download bit-exact, stop.

    Returns what happened (file id, timings, the repair), for the caller to print or check.
    """
    from ..storage.monitor import StorageMonitor
    from ..storage.network import StorageNetwork

    size = max(1, int(size_mib * 1024 * 1024))
    slice_size = max(4096, int(slice_mib * 1024 * 1024))
    out: dict[str, Any] = {}
    t0 = time.monotonic()
    with LocalStorageNetwork(nodes, heartbeat=min(1.0, interval), base=keep, keep=keep is not None) as net:
        echo(f"started {nodes} storage nodes in {time.monotonic() - t0:.1f} s on ledger {net.ledger_path}")
        for i, n in zip(net.ids, net.nodes):
            echo(f"  {i}  {n.url}")
        owner = NodeIdentity.generate()
        client = StorageNetwork(net.ledger, owner, liveness=max(10.0, 5 * interval))
        src = net.base / "demo-input.bin"
        with open(src, "wb") as fh:
            left = size
            while left:
                fh.write(os.urandom(min(left, 1 << 20)))
                left -= min(left, 1 << 20)
        digest = hashlib.sha256(src.read_bytes()).hexdigest()
        t = time.monotonic()
        fid = client.upload(src, slice_size=slice_size, replicas=3)
        up = time.monotonic() - t
        f = net.ledger.get_file(fid)
        echo(f"uploaded {size / 2**20:.1f} MiB as file {fid}: {len(f.slices)} slices x 3 replicas "
             f"in {up:.2f} s ({size / 2**20 / up:.0f} MiB/s)")
        monitor = StorageMonitor(client, interval=interval)
        report = monitor.run_round()
        echo(f"challenge round: {report.summary()}")
        victim = max(net.ids, key=lambda n: sum(n in s.nodes for s in f.slices))
        held = sum(victim in s.nodes for s in f.slices)
        net.node(victim).kill()
        killed = time.monotonic()
        echo(f"SIGKILLed node {victim} holding {held} replicas; repairing (a round every {interval:g} s)")

        def full() -> bool:
            g = net.ledger.get_file(fid)
            return all(net.node(n).alive for s in g.slices for n in s.nodes)

        rounds = 0
        while not full():
            if time.monotonic() - killed > 300:
                raise ProtocolError("the repair did not finish within 300 s")
            started = time.monotonic()
            report = monitor.run_round()
            rounds += 1
            for line in report.summary().splitlines()[1:]:
                if "repaired" in line or "error" in line:
                    echo(line)
            if not full():
                time.sleep(max(0.0, interval - (time.monotonic() - started)))
        repair_s = time.monotonic() - killed
        echo(f"all slices back to 3 live replicas {repair_s:.1f} s after the kill ({rounds} rounds)")
        dst = net.base / "demo-output.bin"
        t = time.monotonic()
        client.download(fid, dst)
        down = time.monotonic() - t
        same = hashlib.sha256(dst.read_bytes()).hexdigest() == digest
        echo(f"downloaded in {down:.2f} s ({size / 2**20 / down:.0f} MiB/s): "
             + ("bit-exact" if same else "MISMATCH"))
        if not same:
            raise ProtocolError("the downloaded file differs from the uploaded one")
        out.update(file_id=fid, upload_s=up, download_s=down, repair_s=repair_s, rounds=rounds,
                   killed=victim, replicas_moved=held)
    echo("stopped every node")
    return out
