"""A DataOwner node: answers executors' applications to use the owner's files, on the ledger.

What ``dtx dataowner start`` runs, built by :func:`build_dataowner_node` from a
:class:`DataOwnerConfig` (TOML ``[dataowner]`` table < ``DTX_*`` environment < flags), so a test
builds in-process exactly what the command runs as a process.

The node has no server: it registers its key on the ledger (role ``dataowner``) if it is not
registered, sends a heartbeat every ``heartbeat`` seconds, and every ``poll`` seconds looks up the
undecided applications (:class:`~dtxfast.ledger.ApplyFile`) for the files it owns. Its file keys
are derived from its own key (:class:`~dtxfast.storage.owner.DataOwner`), so nothing secret is
kept beside it; ``data_dir`` holds ``decisions.jsonl``, one JSON line per decision.

``approve = "auto"``
    An application from an executor in ``executors`` (node ids; an empty list means any
    registered executor) is approved (:func:`~dtxfast.storage.applications.approve_application`):
    the file's key sealed to that executor's registered key, valid until
    ``min(file expiry, now + approval_days)``. Any other application is rejected with the reason
    (:func:`~dtxfast.storage.applications.reject_application`), as is one for a file that has
    expired or is not in the storage network.
``approve = "manual"``
    Applications stay Unapproved; the node logs each once and the owner decides with
    ``dtx file applications`` and ``dtx file approve|reject ID``.

With ``monitor`` on, the storage monitor (:class:`~dtxfast.storage.monitor.StorageMonitor`)
challenges and repairs the owner's files every ``monitor_interval`` seconds in a thread of its own.

The node prints one line ``listening on dtx://dataowner/<node_id>`` when it is registered and
ready, logs one line per decision (who, what, why) on stderr, and stops on SIGTERM / SIGINT after
the decision in hand (and the monitor's round in progress), exit code 0.

Examples
--------
>>> cfg = DataOwnerConfig.load(None, env={}, approve="auto", executors="aaaa,bbbb", poll=0.2)
>>> cfg.approve, cfg.executor_ids, cfg.poll
('auto', ('aaaa', 'bbbb'), 0.2)
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from ..errors import DtxError, NotFound, ParameterError, StateError
from ..ledger import (
    ApplicationRecord,
    ApplicationStatus,
    Heartbeat,
    Ledger,
    NodeIdentity,
    RegisterNode,
    SetNodeStatus,
    open_ledger,
)
from ..storage.applications import approve_application, reject_application
from ..storage.network import StorageNetwork
from ._config import NodeConfig

__all__ = ["DataOwnerConfig", "DataOwnerNode", "Decision", "build_dataowner_node", "run_dataowner_node"]

_log = logging.getLogger("dtxfast.nodes.dataowner")
_MODES = ("auto", "manual")


@dataclass
class DataOwnerConfig(NodeConfig):
    """How a DataOwner node runs.

    Attributes
    ----------
    key : str
        The owner's key file (``dtx keys new``); the same key its files were uploaded with.
    ledger : str
        The ledger location (a SQLite path, ``sqlite:PATH``).
    data_dir : str
        Where the node writes ``decisions.jsonl``.
    approve : str
        ``auto`` (approve listed executors, reject others) or ``manual`` (leave them to the CLI).
    executors : str
        Comma-separated node ids auto-approved; empty: any registered executor.
    heartbeat : float
        Seconds between heartbeats on the ledger.
    poll : float
        Seconds between two looks at the ledger for new applications.
    approval_days : float
        How long an approval lasts at most (never longer than the file).
    monitor : bool
        Also run the storage monitor over the owner's files.
    monitor_interval : float
        Seconds between the monitor's rounds.
    liveness : float
        Seconds without a heartbeat after which the monitor counts a storage node as down.
    name : str
        A name recorded with the node's registration.
    """

    key: str = ""
    ledger: str = ""
    data_dir: str = ""
    approve: str = "auto"
    executors: str = ""
    heartbeat: float = 60.0
    poll: float = 0.5
    approval_days: float = 30.0
    monitor: bool = False
    monitor_interval: float = 60.0
    liveness: float = 180.0
    name: str = ""

    SECTION = "dataowner"

    @property
    def executor_ids(self) -> tuple[str, ...]:
        """The node ids of ``executors`` (empty: any registered executor)."""
        return tuple(e.strip() for e in self.executors.split(",") if e.strip())

    def validate(self) -> None:
        if self.approve not in _MODES:
            raise ParameterError(f"approve must be one of {', '.join(_MODES)}, got {self.approve!r}")
        if not self.heartbeat > 0 or not self.poll > 0 or not self.monitor_interval > 0 or not self.liveness > 0:
            raise ParameterError("heartbeat, poll, monitor_interval and liveness must be positive")
        if not self.approval_days > 0:
            raise ParameterError(f"approval_days must be positive, got {self.approval_days!r}")
        for e in self.executor_ids:
            if not e.isalnum() or len(e) > 64:
                raise ParameterError(f"--executors takes comma-separated node ids, got {e!r}")


class Decision(msgspec.Struct, frozen=True):
    """What the node did with one application.

    ``action`` is ``approved``, ``rejected``, ``pending`` (manual mode: left to the owner) or
    ``skipped`` (decided meanwhile by someone else, e.g. the owner with the CLI).
    """

    application_id: str
    file_id: str
    executor: str
    action: str
    reason: str = ""
    expires_ms: int = 0
    at_ms: int = 0


def _fmt(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ms / 1000))


class DataOwnerNode:
    """A DataOwner node (see the module docstring); :func:`build_dataowner_node` builds one.

    Parameters
    ----------
    config : DataOwnerConfig
    identity : NodeIdentity
        The owner's key.
    ledger : Ledger
    clock : callable, optional
        Milliseconds since the epoch (default: the ledger's clock); decisions, expiries and
        heartbeats follow it, so tests drive :meth:`step` without sleeping.
    """

    def __init__(self, config: DataOwnerConfig, identity: NodeIdentity, ledger: Ledger, *,
                 clock: Callable[[], int] | None = None) -> None:
        if not config.data_dir:
            raise ParameterError("a DataOwner node needs a data directory (--data-dir)")
        self.config = config
        self.identity = identity
        self.node_id = identity.node_id
        self.ledger = ledger
        self._clock = clock or ledger.now_ms
        self.net = StorageNetwork(ledger, identity, liveness=config.liveness, clock=self._clock)
        self.data_dir = Path(config.data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        from ..ledger.watermark import HighWaterMark

        self._mark = HighWaterMark(self.data_dir / ".ledger-mark.json")
        self._allowed = frozenset(config.executor_ids)
        self._registered = False
        self._last_beat: int | None = None
        self._announced: set[str] = set()
        self._failed: dict[str, str] = {}
        self._monitor_thread: threading.Thread | None = None
        self.url = f"dtx://dataowner/{self.node_id}"

    # -- lifecycle --------------------------------------------------------------------------
    def register(self) -> None:
        """Register as a data owner if not yet (online again if it was marked offline)."""
        self._mark.check(self.ledger)  # refuse a ledger that went back below what this node saw
        try:
            node = self.ledger.get_node(self.node_id)
        except NotFound:
            node = None
        if node is not None and node.role != "dataowner":
            raise StateError(f"key {self.node_id} is registered as a {node.role}, not a data owner")
        now = self._clock()
        if node is None or (self.config.name and node.name != self.config.name):
            self.ledger.submit(self.identity, RegisterNode(role="dataowner", name=self.config.name), ts_ms=now)
        if node is not None and not node.online:
            self.ledger.submit(self.identity, SetNodeStatus(online=True), ts_ms=now)
        self._registered = True

    def heartbeat(self, force: bool = False) -> bool:
        """Send a heartbeat if ``heartbeat`` seconds passed since the last (or ``force``); True if sent."""
        now = self._clock()
        if not force and self._last_beat is not None and now - self._last_beat < self.config.heartbeat * 1000:
            return False
        self._mark.check(self.ledger)
        self.ledger.submit(self.identity, Heartbeat(), ts_ms=now)
        self._last_beat = now
        return True

    # -- one round ----------------------------------------------------------------------------
    def step(self) -> list[Decision]:
        """One round: register if needed, heartbeat when due, answer every undecided application
        to the owner's files; returns what it decided (oldest application first)."""
        if not self._registered:
            self.register()
        self.heartbeat()
        out = []
        for app in self.ledger.list_applications(owner=self.node_id, status=ApplicationStatus.UNAPPROVED):
            try:
                d = self.decide(app)
            except DtxError as exc:  # refused by the ledger (busy, a race): retried next round
                msg = str(exc)
                if self._failed.get(app.application_id) != msg:  # logged once per new reason
                    _log.warning("could not answer application %s of executor %s: %s",
                                 app.application_id, app.executor, msg)
                self._failed[app.application_id] = msg
                continue
            self._failed.pop(app.application_id, None)
            if d is not None:
                out.append(d)
        return out

    def _policy(self, app: ApplicationRecord, now: int) -> str | None:
        """Why ``app`` must be rejected, or None if it may be approved."""
        try:
            f = self.ledger.get_file(app.file_id)
        except NotFound:
            return f"file {app.file_id} is not on the ledger"
        if not f.is_live(now):
            return f"file {f.file_id} expired on {_fmt(f.expires_ms)}"
        if not f.content_id:
            return f"file {f.file_id} is not stored in the storage network"
        if self._allowed:
            if app.executor not in self._allowed:
                return f"executor {app.executor} is not among the executors this owner approves"
        else:
            try:
                role = self.ledger.get_node(app.executor).role
            except NotFound:
                role = "unregistered node"
            if role != "executor":
                return f"node {app.executor} is not a registered executor"
        return None

    def decide(self, app: ApplicationRecord) -> Decision | None:
        """Answer one undecided application by the node's policy; None if already announced
        (manual mode)."""
        now = self._clock()
        who = f"application {app.application_id} of executor {app.executor} for file {app.file_id}"
        if self.config.approve == "manual":
            if app.application_id in self._announced:
                return None
            self._announced.add(app.application_id)
            d = Decision(app.application_id, app.file_id, app.executor, "pending",
                         "manual mode: dtx file approve|reject", at_ms=now)
            _log.info("%s awaits the owner's decision (dtx file approve|reject %s)", who, app.application_id)
            return self._record(d)
        reason = self._policy(app, now)
        try:
            if reason is None:
                rec = approve_application(self.net, app.application_id, days=self.config.approval_days, now_ms=now)
                why = "listed executor" if self._allowed else "registered executor"
                d = Decision(app.application_id, app.file_id, app.executor, "approved", why,
                             expires_ms=rec.expires_ms, at_ms=now)
                _log.info("approved %s until %s (%s; file key sealed to the executor)", who, _fmt(rec.expires_ms), why)
            else:
                reject_application(self.net, app.application_id, reason, now_ms=now)
                d = Decision(app.application_id, app.file_id, app.executor, "rejected", reason, at_ms=now)
                _log.info("rejected %s: %s", who, reason)
        except StateError as exc:  # decided meanwhile (the owner with the CLI, another instance)
            current = self.ledger.get_application(app.application_id)
            if current.status == ApplicationStatus.UNAPPROVED:
                raise
            d = Decision(app.application_id, app.file_id, app.executor, "skipped",
                         f"already {current.status}", at_ms=now)
            _log.info("skipped %s: already %s (%s)", who, current.status, exc)
        return self._record(d)

    def _record(self, d: Decision) -> Decision:
        with open(self.data_dir / "decisions.jsonl", "ab") as fh:
            fh.write(msgspec.json.encode(d) + b"\n")
        return d

    # -- the loop -----------------------------------------------------------------------------
    def _start_monitor(self, stop: threading.Event) -> None:
        from ..storage.monitor import StorageMonitor

        mon = StorageMonitor(self.net, interval=self.config.monitor_interval)

        def run() -> None:
            while not stop.is_set():
                try:
                    mon.run(stop=stop, on_round=lambda r: _log.info("monitor round: %s",
                                                                    r.summary().splitlines()[0]))
                except Exception as exc:  # a failed round (ledger busy, network down): retry next interval
                    _log.warning("monitor round failed: %s", exc)
                    stop.wait(self.config.monitor_interval)

        self._monitor_thread = threading.Thread(target=run, name="dtx-dataowner-monitor", daemon=True)
        self._monitor_thread.start()

    def run(self, stop: threading.Event, ready: Callable[[str], None] | None = None) -> None:
        """Register, call ``ready(url)``, then a :meth:`step` every ``poll`` seconds until ``stop``
        is set; the step in hand finishes first."""
        self.register()
        self.heartbeat(force=True)
        if self.config.monitor:
            self._start_monitor(stop)
        if ready is not None:
            ready(self.url)
        try:
            while not stop.is_set():
                try:
                    self.step()
                except DtxError as exc:  # ledger busy or a refused answer: log it, retry next poll
                    _log.warning("round failed: %s", exc)
                except Exception:  # a bug must not take the node down: log it, retry next poll
                    _log.exception("round failed")
                stop.wait(self.config.poll)
        finally:
            if self._monitor_thread is not None:
                self._monitor_thread.join(max(30.0, self.config.monitor_interval))


def build_dataowner_node(config: DataOwnerConfig, *, identity: NodeIdentity | None = None,
                         ledger: Ledger | None = None, clock: Callable[[], int] | None = None) -> DataOwnerNode:
    """The one factory: a :class:`DataOwnerNode` from its config (key and ledger opened from it
    unless given)."""
    config.validate()
    if identity is None:
        if not config.key:
            raise ParameterError("a DataOwner node needs its key file (--key)")
        identity = NodeIdentity.load(config.key)
    if ledger is None:
        if not config.ledger:
            raise ParameterError("a DataOwner node needs a ledger (-L)")
        ledger = open_ledger(config.ledger)
    return DataOwnerNode(config, identity, ledger, clock=clock)


def run_dataowner_node(config: DataOwnerConfig) -> None:
    """Run a node in the foreground until SIGTERM or SIGINT; prints
    ``listening on dtx://dataowner/<node_id>`` when ready."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    node = build_dataowner_node(config)
    stop = threading.Event()
    previous: dict[signal.Signals, Any] = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous[sig] = signal.signal(sig, lambda *_: stop.set())
    try:
        node.run(stop, ready=lambda url: print(f"listening on {url}", flush=True))
        _log.info("stopped")
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        node.ledger.close()
