"""A local etcd cluster on loopback: real ``etcd`` processes for tests, benchmarks and demos.

:class:`LocalEtcdCluster` starts ``n`` members of one cluster, each on two free loopback ports (client
and peer) with its own data directory, waits until every member answers ``/health`` (which needs an
elected leader), and stops them all on :meth:`~LocalEtcdCluster.stop` (also on leaving a ``with``
block). Single members can be killed, paused (SIGSTOP, a partition as far as the others can tell),
resumed and restarted on the same ports and data, so failover can be tested on real processes.

The ``etcd`` binary is looked up on ``PATH`` (Debian: ``apt-get install etcd-server``, etcd 3.4),
or taken from ``DTX_ETCD_BIN``.

Examples
--------
>>> from dtxfast.ledger.etcd_local import LocalEtcdCluster, etcd_binary
>>> if etcd_binary() is not None:
...     with LocalEtcdCluster(1) as c:
...         print(len(c.endpoints))
... else:
...     print(1)
1
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from ..errors import NotFound, StateError

__all__ = ["LocalEtcdCluster", "etcd_binary"]


def etcd_binary() -> str | None:
    """The path of the ``etcd`` server binary (``DTX_ETCD_BIN`` or ``PATH``), or None."""
    env = os.environ.get("DTX_ETCD_BIN")
    if env:
        return env if os.access(env, os.X_OK) else None
    return shutil.which("etcd")


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _get_json(url: str, timeout: float) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (loopback only)
        return json.loads(resp.read())  # type: ignore[no-any-return]


class LocalEtcdCluster:
    """``n`` etcd members on loopback, started by the constructor (see the module docs).

    Parameters
    ----------
    n : int
        Members (3 tolerates one failure).
    data_dir : str or path, optional
        Where the members keep their data (default: a temporary directory removed on stop).
    start_timeout : float
        Seconds to wait for every member to be healthy.
    max_txn_ops : int
        etcd's ``--max-txn-ops`` (operations per transaction); a block of ``k`` entries needs
        some ``4 k + 8`` (see :class:`~dtxfast.ledger.etcd.EtcdLedger`).

    Attributes
    ----------
    endpoints : list of str
        ``host:port`` of each member's client URL, in member order.
    """

    def __init__(self, n: int = 3, *, data_dir: str | os.PathLike[str] | None = None,
                 start_timeout: float = 30.0, max_txn_ops: int = 4096,
                 quiet: bool = True) -> None:
        binary = etcd_binary()
        if binary is None:
            raise NotFound("no etcd binary (install it: apt-get install etcd-server, or set "
                           "DTX_ETCD_BIN)")
        if n < 1:
            raise ValueError("a cluster has at least one member")
        self.binary = binary
        self.n = n
        self.max_txn_ops = max_txn_ops
        self._own_dir = data_dir is None
        self.dir = Path(tempfile.mkdtemp(prefix="dtx-etcd-") if data_dir is None else data_dir)
        ports = _free_ports(2 * n)
        self.client_ports = ports[:n]
        self.peer_ports = ports[n:]
        self.names = [f"m{i}" for i in range(n)]
        self.endpoints = [f"127.0.0.1:{p}" for p in self.client_ports]
        self.token = f"dtx-{os.getpid()}-{ports[0]}"
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * n
        self._quiet = quiet
        self._logs: list[object] = [None] * n
        try:
            for i in range(n):
                self._spawn(i, "new")
            self.wait_healthy(range(n), start_timeout)
        except BaseException:
            self.stop()
            raise

    # --- processes ----------------------------------------------------------------------

    def _spawn(self, i: int, state: str) -> None:
        cluster = ",".join(f"{nm}=http://127.0.0.1:{p}" for nm, p in zip(self.names, self.peer_ports))
        peer = f"http://127.0.0.1:{self.peer_ports[i]}"
        client = f"http://127.0.0.1:{self.client_ports[i]}"
        args = [
            self.binary, "--name", self.names[i], "--data-dir", str(self.dir / self.names[i]),
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", cluster, "--initial-cluster-token", self.token,
            "--initial-cluster-state", state,
            "--heartbeat-interval", "50", "--election-timeout", "500",
            "--max-txn-ops", str(self.max_txn_ops),
            "--logger", "zap", "--log-level", "warn",
        ]
        log = open(self.dir / f"{self.names[i]}.log", "ab")  # noqa: SIM115 (closed in stop)
        self._logs[i] = log
        self.procs[i] = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         start_new_session=True)

    def wait_healthy(self, members: object, timeout: float = 30.0) -> None:
        """Wait until each member in ``members`` (indices) answers ``/health`` with true."""
        deadline = time.monotonic() + timeout
        for i in members:  # type: ignore[attr-defined]
            url = f"http://{self.endpoints[i]}/health"
            while True:
                p = self.procs[i]
                if p is not None and p.poll() is not None:
                    raise StateError(f"etcd member {self.names[i]} exited with {p.returncode}: "
                                     f"{self.log_tail(i)}")
                try:
                    if _get_json(url, 1.0).get("health") == "true":
                        break
                except (OSError, ValueError, urllib.error.URLError):
                    pass
                if time.monotonic() > deadline:
                    raise StateError(f"etcd member {self.names[i]} not healthy after {timeout} s: "
                                     f"{self.log_tail(i)}")
                time.sleep(0.05)

    def log_tail(self, i: int, n: int = 400) -> str:
        """The last ``n`` characters of member ``i``'s log."""
        try:
            return (self.dir / f"{self.names[i]}.log").read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def url(self, chain: str = "") -> str:
        """The ledger location of this cluster: ``etcd://h:p,h:p,h:p[/chain]``."""
        return "etcd://" + ",".join(self.endpoints) + (f"/{chain}" if chain else "")

    def member_url(self, i: int, chain: str = "") -> str:
        """The ledger location of one member only."""
        return f"etcd://{self.endpoints[i]}" + (f"/{chain}" if chain else "")

    def leader(self, timeout: float = 10.0) -> int:
        """Index of the current leader (asked of the members that answer)."""
        deadline = time.monotonic() + timeout
        while True:
            for i, ep in enumerate(self.endpoints):
                p = self.procs[i]
                if p is None or p.poll() is not None:
                    continue
                with contextlib.suppress(OSError, ValueError, urllib.error.URLError):
                    req = urllib.request.Request(f"http://{ep}/v3/maintenance/status", data=b"{}",
                                                 method="POST")
                    with urllib.request.urlopen(req, timeout=0.5) as resp:  # noqa: S310
                        st = json.loads(resp.read())
                    leader_id = st.get("leader")
                    member_id = st.get("header", {}).get("member_id")
                    if leader_id and leader_id == member_id:
                        return i
            if time.monotonic() > deadline:
                raise StateError("no etcd leader")
            time.sleep(0.05)

    def kill(self, i: int) -> None:
        """SIGKILL member ``i`` and reap it."""
        p = self.procs[i]
        if p is not None and p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGCONT)
            p.kill()
            p.wait()

    def pause(self, i: int) -> None:
        """SIGSTOP member ``i`` (it stops answering its peers and clients)."""
        p = self.procs[i]
        if p is not None and p.poll() is None:
            os.kill(p.pid, signal.SIGSTOP)

    def resume(self, i: int) -> None:
        """SIGCONT member ``i``."""
        p = self.procs[i]
        if p is not None and p.poll() is None:
            os.kill(p.pid, signal.SIGCONT)

    def restart(self, i: int, timeout: float = 30.0) -> None:
        """Start a killed member again on its ports and data directory; wait until healthy."""
        self.kill(i)
        self._spawn(i, "existing")
        self.wait_healthy([i], timeout)

    def stop(self) -> None:
        """Stop every member (SIGTERM, then SIGKILL) and remove the temporary data directory."""
        for i, p in enumerate(self.procs):
            if p is None:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGCONT)
                p.terminate()
        for i, p in enumerate(self.procs):
            if p is None:
                continue
            try:
                p.wait(1)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            self.procs[i] = None
        for log in self._logs:
            if log is not None:
                with contextlib.suppress(OSError):
                    log.close()  # type: ignore[attr-defined]
        self._logs = [None] * self.n
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> LocalEtcdCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            if any(p is not None for p in self.procs):
                self.stop()
