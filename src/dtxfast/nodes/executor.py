"""An executor: runs its party of the training and prediction tasks that name it.

What ``dtx executor start`` runs, built by :func:`build_executor_node` from an
:class:`ExecutorConfig` (TOML file < ``DTX_*`` environment < flags), so a test builds in-process
exactly what the command runs as a process.

An executor is a server of the executors' network: a :class:`~dtxfast.transport.tls.TlsNode`
listening for its peers (mutual TLS 1.3, each side's certificate pinned to the Ed25519 key the
ledger registered for that executor; see :mod:`dtxfast.transport.tls`). It registers itself (role
``executor``, its address), heartbeats, and follows the ledger for the tasks naming it:

``Confirming``
    It checks the task's parameters (:class:`~dtxfast.nodes.jobs.TaskSpec`; a prediction also
    needs the model part of its training task here), applies for each file its party uses
    (``ApplyFile``) and, once the files' owners approved, confirms (``ConfirmTask``). A bad task,
    a missing model part or a rejected application makes it reject the task with the reason.
``ToProcess``
    It moves the task to ``Processing``, downloads its party's sample file from the storage
    network through its approval (decrypting it with the key the owner sealed to it), opens a
    channel to the other executors of the task (session = the task id), and runs its party
    (:mod:`dtxfast.nodes.jobs`: PSI alignment, then training or prediction), recording its
    progress on the ledger at most every ``progress_interval`` seconds.
``Finished`` / ``Failed``
    After the parties agree they are all done, the party with the result finishes the task: the
    label party of a training (each party keeps its own model part in its ``models/`` folder, as
    in PaddleDTX), or the party that assembled a prediction, which first uploads the predictions
    to the storage network encrypted so that only the requester can read them (the file key is
    sealed to the requester's registered key and recorded on the task). Any error fails the task
    with a reason naming the party and what went wrong; a peer that dies breaks the TLS link, so
    the others fail the task at once, and a peer that hangs fails it after ``task_timeout``
    seconds without a message.

Tasks run in parallel (``max_tasks`` at once), each with its own channel, peers and progress; one
task's failure does not touch the others. SIGTERM fails the tasks in flight ("executor stopped")
and stops; a restarted executor fails the tasks it had started and not finished (their state
in memory is lost), so no task stays in Processing. Like the other nodes it keeps the highest
block it has seen (:class:`~dtxfast.ledger.watermark.HighWaterMark`) and refuses, at start and
at every heartbeat, a ledger that went back below it.

Examples
--------
>>> cfg = ExecutorConfig.load(None, env={}, listen="127.0.0.1:0", task_timeout=60)
>>> cfg.task_timeout, cfg.max_tasks
(60.0, 4)
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._fs import atomic_output
from ..errors import DtxError, NotFound, ParameterError, ProtocolError, StateError, Unauthorized
from ..ledger import (
    ApplyFile,
    ConfirmTask,
    FailTask,
    FinishTask,
    Heartbeat,
    Ledger,
    NodeIdentity,
    ProcessTask,
    RegisterNode,
    RejectTask,
    ReportProgress,
    open_ledger,
    seal_to,
)
from ..ledger.records import KEY_PREFIX, METRICS_PREFIX, RESULT_PREFIX, ApplicationStatus, TaskRecord, TaskStatus
from ..protocols.channel import Channel
from ..transport.tls import LedgerDirectory, Peer, TlsNode
from ._config import NodeConfig, parse_listen
from .jobs import TaskSpec, read_party_csv, run_predict_party, run_train_party

__all__ = ["ExecutorConfig", "ExecutorNode", "build_executor_node", "run_executor_node"]

_log = logging.getLogger("dtxfast.nodes.executor")
_DONE = b"dtx/task-done"
_ACTIVE = (TaskStatus.TO_PROCESS, TaskStatus.PROCESSING)


@dataclass
class ExecutorConfig(NodeConfig):
    """How an executor runs.

    Attributes
    ----------
    key, ledger, data_dir : str
        The node's key file, the ledger location, where models and task folders are kept.
    listen : str
        ``HOST:PORT`` of the executors' network (port 0: any free port).
    heartbeat, poll : float
        Seconds between heartbeats; between looks at the ledger.
    task_timeout : float
        Seconds a party waits for a peer's next message before it fails the task.
    connect_timeout : float
        Seconds to wait for every peer of a task to connect.
    progress_interval : float
        Least seconds between two progress records of one task on the ledger.
    max_tasks : int
        Tasks run at once.
    approval_wait : float
        Seconds a Confirming task waits for its files' approvals before the executor rejects it
        (0: wait as long as the task is Confirming).
    compute : str
        Where the batch kernels of its parties run (``local``, ``ray``, ``ray:HOST:PORT``,
        ``ray://HOST:PORT``; see :mod:`dtxfast.compute`; empty: ``$DTXFAST_COMPUTE``, else local).
        A Ray cluster is the executor's own; its private keys stay in this process (policy
        ``local``): PSI signing and decryption run here, the public-key batches on the cluster.
    name : str
        A name recorded with the registration.
    """

    SECTION = "executor"
    key: str = ""
    ledger: str = ""
    data_dir: str = ""
    listen: str = "127.0.0.1:0"
    heartbeat: float = 60.0
    poll: float = 0.5
    task_timeout: float = 180.0
    connect_timeout: float = 60.0
    progress_interval: float = 2.0
    max_tasks: int = 4
    approval_wait: float = 0.0
    compute: str = ""
    name: str = ""

    def validate(self) -> None:
        parse_listen(self.listen)
        for f in ("heartbeat", "poll", "task_timeout", "connect_timeout"):
            if not getattr(self, f) > 0:
                raise ParameterError(f"{f.replace('_', '-')} must be positive")
        if self.progress_interval < 0 or self.approval_wait < 0:
            raise ParameterError("progress-interval and approval-wait must be at least 0")
        if not 1 <= self.max_tasks <= 256:
            raise ParameterError("max-tasks must be in 1..256")


class _Progress:
    """Rate-limited ``ReportProgress`` for one task (stage changes always go out)."""

    def __init__(self, node: ExecutorNode, task_id: str) -> None:
        self.node, self.task_id = node, task_id
        self.last_stage, self.last_t = "", -math.inf

    def __call__(self, stage: str, done: int = 0, total: int = 0, loss: float | None = None) -> None:
        now = time.monotonic()
        final = total and done >= total
        if stage == self.last_stage and not final and now - self.last_t < self.node.config.progress_interval:
            return
        self.last_stage, self.last_t = stage, now
        lo = None if loss is None or not math.isfinite(loss) else float(loss)
        try:
            self.node.ledger.submit(self.node.identity, ReportProgress(
                task_id=self.task_id, stage=stage, done=max(0, int(done)), total=max(0, int(total)), loss=lo))
        except DtxError as exc:  # the task moved on (failed by a peer): the run notices on its channel
            _log.info("task %s: progress not recorded (%s)", self.task_id, exc)


class ExecutorNode:
    """One executor (see the module docstring); :meth:`step` does one round over the ledger."""

    def __init__(self, config: ExecutorConfig, identity: NodeIdentity, ledger: Ledger, *,
                 clock: Callable[[], int] | None = None) -> None:
        self.config = config
        self.identity = identity
        self.ledger = ledger
        self._clock = clock or ledger.now_ms
        self.data_dir = Path(config.data_dir)
        self.models = self.data_dir / "models"
        self.tasks = self.data_dir / "tasks"
        self.transport: TlsNode | None = None
        self._pool = ThreadPoolExecutor(config.max_tasks, thread_name_prefix="dtx-task")
        self._running: dict[str, Future[None]] = {}
        self._channels: dict[str, Channel] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._seen_confirming: dict[str, float] = {}
        from ..compute import get_compute

        self.compute = get_compute(config.compute or None, private_keys="local")
        from ..ledger.watermark import HighWaterMark

        self._mark = HighWaterMark(self.data_dir / ".ledger-mark.json")

    @property
    def node_id(self) -> str:
        return str(self.identity.node_id)

    # -- life cycle -----------------------------------------------------------------------------
    def start(self) -> str:
        """Listen, register (or update the address), fail tasks a previous run left in flight."""
        if not self.config.data_dir:
            raise ParameterError("an executor needs a data directory (--data-dir)")
        for d in (self.models, self.tasks):
            d.mkdir(parents=True, exist_ok=True)
        self._mark.check(self.ledger)  # refuse a ledger that went back below what this node saw
        host, port = parse_listen(self.config.listen)
        self.transport = TlsNode(self.identity, LedgerDirectory(self.ledger, roles={"executor"}), host=host, port=port)
        try:
            node = self.ledger.get_node(self.node_id)
        except NotFound:
            node = None
        if node is not None and node.role != "executor":
            raise StateError(f"key {self.node_id} is registered as a {node.role}; an executor needs its own key")
        if node is None or node.address != self.transport.address or node.name != self.config.name:
            self.ledger.submit(self.identity, RegisterNode(role="executor", address=self.transport.address,
                                                           name=self.config.name))
        self.ledger.submit(self.identity, Heartbeat())
        self._fail_interrupted()
        _log.info("executor %s on %s; batch kernels: %s", self.node_id, self.transport.address,
                  self.compute.describe())
        return self.transport.address

    def _fail_interrupted(self) -> None:
        for status in _ACTIVE:
            for t in self.ledger.list_tasks(status=status, executor=self.node_id):
                d = self.tasks / t.task_id
                if (d / "started").exists() and not (d / "done").exists():
                    self._fail(t.task_id, "executor restarted while running its party; the run's state was lost")

    def stop(self) -> None:
        """Fail the tasks in flight ("executor stopped"), close every channel and the listener."""
        self._stopping.set()
        with self._lock:
            running = [tid for tid, fut in self._running.items() if not fut.done()]
            channels = list(self._channels.values())
        for tid in running:
            self._fail(tid, "executor stopped (SIGTERM) during the task")
        for ch in channels:
            try:
                ch.close()  # type: ignore[attr-defined]
            except Exception:  # pragma: no cover - best effort
                pass
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self.transport is not None:
            self.transport.close()
        self.compute.close()

    def serve(self, stop: threading.Event, ready: Callable[[str], None] | None = None) -> None:
        """Run until ``stop`` is set: start, then look at the ledger every ``poll`` seconds."""
        address = self.start()
        if ready is not None:
            ready(address)
        next_beat = time.monotonic() + self.config.heartbeat
        try:
            while not stop.is_set():
                try:
                    self.step()
                    if time.monotonic() >= next_beat:
                        self._mark.check(self.ledger)
                        self.ledger.submit(self.identity, Heartbeat())
                        next_beat = time.monotonic() + self.config.heartbeat
                except DtxError as exc:
                    _log.warning("ledger round failed: %s", exc)
                stop.wait(self.config.poll)
        finally:
            self.stop()

    # -- one round ------------------------------------------------------------------------------
    def step(self) -> None:
        """Confirm what can be confirmed, start what was started, reap finished runs."""
        with self._lock:
            for tid in [t for t, f in self._running.items() if f.done()]:
                self._running.pop(tid)
        for t in self.ledger.list_tasks(status=TaskStatus.CONFIRMING, executor=self.node_id):
            if self.node_id not in t.confirmed:
                self._confirm(t)
        for status in _ACTIVE:
            for t in self.ledger.list_tasks(status=status, executor=self.node_id):
                self._maybe_run(t)

    def _confirm(self, t: TaskRecord) -> None:
        me = self.node_id
        first = self._seen_confirming.setdefault(t.task_id, time.monotonic())
        try:
            TaskSpec.from_ledger(t.algorithm, t.task_type, t.params)
        except ParameterError as exc:
            self._reject(t.task_id, f"bad task parameters: {exc}")
            return
        if t.task_type == "predict" and not self._model_path(t.model_task).exists():
            self._reject(t.task_id, f"this executor holds no model part of training task {t.model_task}")
            return
        party = next(p for p in t.parties if p.executor == me)
        now = self._clock()
        pending = False
        for fid in party.files:
            apps = self.ledger.list_applications(file_id=fid, executor=me)
            if any(a.status == ApplicationStatus.APPROVED and now < a.expires_ms for a in apps):
                continue
            if any(a.status == ApplicationStatus.UNAPPROVED for a in apps):
                pending = True
                continue
            refused = [a for a in apps if a.status in (ApplicationStatus.REJECTED, ApplicationStatus.REVOKED)]
            if refused:
                a = refused[-1]
                self._reject(t.task_id, f"the owner of file {fid} {a.status.lower()} its use"
                                        + (f": {a.reason}" if a.reason else ""))
                return
            try:
                self.ledger.submit(self.identity, ApplyFile(file_id=fid, purpose=f"task {t.task_id}"))
                _log.info("task %s: applied for file %s", t.task_id, fid)
            except DtxError as exc:
                self._reject(t.task_id, f"cannot apply for file {fid}: {exc}")
                return
            pending = True
        if pending:
            wait = self.config.approval_wait
            if wait and time.monotonic() - first > wait:
                self._reject(t.task_id, f"no approval for its files within {wait:g} s")
            return
        try:
            self.ledger.submit(self.identity, ConfirmTask(task_id=t.task_id))
            _log.info("task %s: confirmed", t.task_id)
        except (StateError, Unauthorized) as exc:
            _log.info("task %s: not confirmed yet (%s)", t.task_id, exc)

    def _reject(self, task_id: str, reason: str) -> None:
        try:
            self.ledger.submit(self.identity, RejectTask(task_id=task_id, reason=reason[:4000]))
            _log.info("task %s: rejected: %s", task_id, reason)
        except DtxError as exc:
            _log.info("task %s: could not reject (%s)", task_id, exc)

    def _maybe_run(self, t: TaskRecord) -> None:
        if self._stopping.is_set():
            return
        d = self.tasks / t.task_id
        with self._lock:
            if t.task_id in self._running or (d / "started").exists():
                return
            d.mkdir(parents=True, exist_ok=True)
            (d / "started").write_text(str(self._clock()))
            self._running[t.task_id] = self._pool.submit(self._run_guarded, t.task_id)

    # -- one task -------------------------------------------------------------------------------
    def _model_path(self, task_id: str) -> Path:
        if not task_id or not all(c in "0123456789abcdef" for c in task_id):
            raise ParameterError(f"not a task id: {task_id!r}")
        return self.models / f"{task_id}.model"

    def _fail(self, task_id: str, reason: str) -> None:
        try:
            self.ledger.submit(self.identity, FailTask(task_id=task_id, reason=reason[:4000]))
            _log.warning("task %s: failed: %s", task_id, reason)
        except DtxError as exc:  # already Failed by a peer, or Finished
            _log.info("task %s: not marked failed (%s)", task_id, exc)

    def _run_guarded(self, task_id: str) -> None:
        try:
            self._run(task_id)
        except BaseException as exc:  # every failure is explained on the ledger
            what = exc.args[0] if isinstance(exc, DtxError) and exc.args else f"{type(exc).__name__}: {exc}"
            party = "?"
            try:
                party = f"p{self.ledger.get_task(task_id).executors.index(self.node_id)}"
            except Exception:  # pragma: no cover - the ledger is gone
                pass
            if self._stopping.is_set() and isinstance(exc, ProtocolError):
                return  # stop() already failed the task with its reason
            self._fail(task_id, f"party {party}: {what}")
        finally:
            with self._lock:
                ch = self._channels.pop(task_id, None)
            if ch is not None:
                ch.close()  # type: ignore[attr-defined]
            shutil.rmtree(self.tasks / task_id / "work", ignore_errors=True)  # the plaintext sample file

    def _run(self, task_id: str) -> None:
        t = self.ledger.get_task(task_id)
        if t.status == TaskStatus.TO_PROCESS:
            try:
                self.ledger.submit(self.identity, ProcessTask(task_id=task_id))
            except StateError:
                pass  # a peer moved it first
        index = t.executors.index(self.node_id)
        spec = TaskSpec.from_ledger(t.algorithm, t.task_type, t.params)
        progress = _Progress(self, task_id)
        work = self.tasks / task_id / "work"
        work.mkdir(parents=True, exist_ok=True)
        progress("fetch", 0, 1)
        from ..storage.network import StorageNetwork

        net = StorageNetwork(self.ledger, self.identity)
        sample = work / "sample.csv"
        net.download(t.parties[index].files[0], sample)
        table = read_party_csv(sample, spec)
        sample.unlink()
        names = [f"p{i}" for i in range(len(t.parties))]
        peers = {names[i]: Peer(e) for i, e in enumerate(t.executors)}
        assert self.transport is not None
        progress("connect", 0, 1)
        channel = self.transport.open_channel(task_id, names[index], peers, timeout=self.config.connect_timeout)
        with self._lock:
            self._channels[task_id] = channel
        timeout = self.config.task_timeout
        results: list[str] = []
        if t.task_type == "train":
            out = run_train_party(spec, index, table, channel, names, progress=progress, timeout=timeout,
                                  task_id=task_id, compute=self.compute)
            with atomic_output(self._model_path(task_id), "wb") as fh:
                fh.write(out.model)
            leader = table.y is not None
            results.append(f"model:{hashlib.sha256(out.model).hexdigest()[:32]}")
            if out.metrics:  # for the requester only: sealed to its key, like a prediction result
                blob = json.dumps(out.metrics, sort_keys=True).encode()
                results.append(METRICS_PREFIX + seal_to(self.ledger.get_node(t.requester).public_key, blob).hex())
        else:
            try:
                model = self._model_path(t.model_task).read_bytes()
            except OSError:
                raise StateError(f"this executor holds no model part of training task {t.model_task}") from None
            pred = run_predict_party(spec, index, table, model, channel, names, progress=progress, timeout=timeout,
                                     task_id=task_id, compute=self.compute)
            leader = pred is not None
            if pred is not None:
                progress("upload", 0, 1)
                csv_path = work / "prediction.csv"
                pred.to_csv(csv_path)
                results += self._publish_result(t, csv_path, net)
        self._barrier(channel, names, index, timeout)
        if leader:
            self.ledger.submit(self.identity, FinishTask(task_id=task_id, results=results))
            _log.info("task %s: finished (%s)", task_id, ", ".join(results))
        (self.tasks / task_id / "done").write_text(str(self._clock()))

    def _publish_result(self, t: TaskRecord, path: Path, net: Any) -> list[str]:
        """Upload the predictions encrypted, seal their key to the requester; the task's result refs."""
        fid = net.upload(path, name=f"prediction-{t.task_id}.csv", namespace="results",
                         description=f"predictions of task {t.task_id} for requester {t.requester}")
        key = net.file_key(self.ledger.get_file(fid))
        sealed = seal_to(self.ledger.get_node(t.requester).public_key, key)
        return [RESULT_PREFIX + fid, KEY_PREFIX + sealed.hex()]

    @staticmethod
    def _barrier(channel: Channel, names: Sequence[str], index: int, timeout: float) -> None:
        """Every party tells every other it is done (its model part saved, its result uploaded)."""
        me = names[index]
        for peer in names:
            if peer != me:
                channel.send(peer, _DONE)
        for peer in names:
            if peer != me and channel.recv(peer, timeout=timeout) != _DONE:
                raise ProtocolError(f"party {peer} sent data after the end of the protocol")


def build_executor_node(config: ExecutorConfig, *, identity: NodeIdentity | None = None,
                        ledger: Ledger | None = None, clock: Callable[[], int] | None = None) -> ExecutorNode:
    """The one factory: an :class:`ExecutorNode` from its config (key and ledger opened from it
    unless given)."""
    config.validate()
    if identity is None:
        if not config.key:
            raise ParameterError("an executor needs its key file (--key)")
        identity = NodeIdentity.load(config.key)
    if ledger is None:
        if not config.ledger:
            raise ParameterError("an executor needs a ledger (-L)")
        ledger = open_ledger(config.ledger)
    if not config.data_dir:
        raise ParameterError("an executor needs a data directory (--data-dir)")
    return ExecutorNode(config, identity, ledger, clock=clock)


def run_executor_node(config: ExecutorConfig) -> None:
    """Run an executor in the foreground until SIGTERM or SIGINT; prints ``listening on tls://ADDR``."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    node = build_executor_node(config)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        node.serve(stop, ready=lambda addr: print(f"listening on tls://{addr}", flush=True))
    finally:
        node.ledger.close()
