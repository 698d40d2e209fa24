"""The requester: publishes tasks on the ledger, starts them, follows them and collects results.

A requester runs no server: these functions are what ``dtx task publish|start|list|show|result``
call. A task moves along the ledger's state machine (:class:`~dtxfast.ledger.records.TaskStatus`):

``Confirming`` (published) → ``Ready`` (every named executor confirmed: each holds an approval for
its files) → ``ToProcess`` (the requester started it) → ``Processing`` (an executor began) →
``Finished`` or ``Failed`` (with a reason); or ``Rejected`` by an executor, with a reason.

Parameters are validated here, before anything is published (:class:`~dtxfast.nodes.jobs.TaskSpec`),
so a bad one is one error line at publish time, not a failed task later.

A prediction task's result is a file the label party's executor uploads to the storage network,
encrypted under a fresh file key; the executor records on the finished task the file's id
(``result:FILE_ID``) and that key sealed to the requester's registered key (``key:HEX``). Only the
requester can unseal it, and the storage nodes serve the replicas only to the owner (the
executor) and to the requester of the finished task that names the file.

Examples
--------
>>> from dtxfast.ledger import NodeIdentity, open_ledger
>>> led = open_ledger(":memory:")
>>> req = NodeIdentity.generate()
>>> register_requester(led, req)
>>> list_tasks(led)
[]
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import InvalidProof, NotFound, ParameterError, ProtocolError, StateError, Unauthorized
from ..ledger import Ledger, NodeIdentity, PublishTask, RegisterNode, StartTask
from ..ledger.contract import object_id
from ..ledger.records import KEY_PREFIX, METRICS_PREFIX, RESULT_PREFIX, TaskRecord, TaskStatus
from ..ledger.tx import TaskParty
from .jobs import TaskSpec

__all__ = [
    "fetch_result",
    "list_tasks",
    "publish_task",
    "register_requester",
    "start_task",
    "task_metrics",
    "task_timeline",
    "task_view",
]

def register_requester(ledger: Ledger, identity: NodeIdentity, name: str = "") -> None:
    """Register ``identity`` as a requester if it is not registered yet (idempotent)."""
    try:
        node = ledger.get_node(identity.node_id)
    except NotFound:
        ledger.submit(identity, RegisterNode(role="requester", name=name))
        return
    if node.role != "requester":
        raise StateError(f"key {identity.node_id} is registered as a {node.role}; a requester needs its own key")


def publish_task(
    ledger: Ledger,
    identity: NodeIdentity,
    *,
    algorithm: str,
    kind: str,
    files: Sequence[str],
    executors: Sequence[str],
    label: str,
    id_column: str,
    params: Mapping[str, Any] | None = None,
    model_task: str = "",
    name: str = "",
) -> str:
    """Validate and publish a task; returns its id.

    Parameters
    ----------
    algorithm : {"linear", "logistic", "dnn"}
    kind : {"train", "predict"}
    files : the sample file of each party, in party order (one per executor).
    executors : the executor node ids, in party order.
    label, id_column : column names (the label column is in exactly one party's file).
    params : task parameters (PaddleDTX's names where they exist: ``alpha``, ``batchSize``, ...).
    model_task : for ``predict``, the finished training task whose model parts the executors hold.

    Raises
    ------
    ParameterError
        A bad parameter, or files and executors that do not pair up.
    Unauthorized, StateError, NotFound
        The ledger refused the task (e.g. a named node is not an executor, a file expired).
    """
    if len(files) != len(executors):
        raise ParameterError(f"--files names {len(files)} files for {len(executors)} executors; "
                             "give one file per executor, in the same order")
    spec = TaskSpec.from_params(algorithm, kind, label=label, id_column=id_column, params=dict(params or {}),
                                parties=len(executors))
    if kind == "predict":
        if not model_task:
            raise ParameterError("a prediction task needs --model TASK_ID (a finished training task)")
        try:
            model = ledger.get_task(model_task)
        except NotFound:
            raise ParameterError(f"--model: task {model_task} does not exist") from None
        if model.algorithm != algorithm:
            raise ParameterError(f"--model: task {model_task} trained a {model.algorithm} model, not {algorithm}")
        if model.executors != list(executors):
            raise ParameterError(f"--model: the model parts of task {model_task} are held by executors "
                                 f"{','.join(model.executors)} (in that order); name the same executors")
    elif model_task:
        raise ParameterError("--model is for prediction tasks")
    # what the contract would refuse, checked before anything is written (no registration left behind)
    for f in files:
        try:
            ledger.get_file(f)
        except NotFound:
            raise NotFound(f"--files: no file {f} on the ledger") from None
    for e in executors:
        try:
            node = ledger.get_node(e)
        except NotFound:
            raise NotFound(f"--executors: no node {e} on the ledger") from None
        if node.role != "executor":
            raise ParameterError(f"--executors: node {e} is a {node.role}, not an executor")
    register_requester(ledger, identity)
    body = PublishTask(task_type=kind, algorithm=algorithm,  # type: ignore[arg-type]
                       parties=[TaskParty(executor=e, files=[f]) for e, f in zip(executors, files)],
                       params=spec.to_ledger(), model_task=model_task, name=name)
    receipt = ledger.submit(identity, body)
    return receipt.object_id


def start_task(ledger: Ledger, identity: NodeIdentity, task_id: str) -> None:
    """Start a Ready task (Ready → ToProcess); StateError saying why not otherwise."""
    task = ledger.get_task(task_id)
    if task.requester != identity.node_id:
        raise Unauthorized(f"task {task_id} belongs to another requester")
    if task.status == TaskStatus.CONFIRMING:
        waiting = [e for e in task.executors if e not in task.confirmed]
        raise StateError(f"task {task_id} is still Confirming: waiting for executor(s) {', '.join(waiting)} "
                         "(each needs an approval for its files from their owner)")
    ledger.submit(identity, StartTask(task_id=task_id))


def list_tasks(ledger: Ledger, *, requester: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
    """Every task (optionally of one requester / status) as JSON-ready summaries, oldest first."""
    if status is not None and status not in TaskStatus.ALL:
        raise ParameterError(f"--status must be one of {', '.join(TaskStatus.ALL)}")
    return [_summary(t) for t in ledger.list_tasks(requester=requester, status=status)]


def _summary(t: TaskRecord) -> dict[str, Any]:
    return {"task_id": t.task_id, "name": t.name, "kind": t.task_type, "algorithm": t.algorithm,
            "status": t.status, "requester": t.requester, "executors": t.executors,
            "published_ms": t.published_ms, "updated_ms": t.updated_ms, "reason": t.reason}


def task_timeline(ledger: Ledger, task_id: str) -> list[dict[str, Any]]:
    """Every ledger entry about the task, in chain order: time, node, what happened.

    Read from the signed chain itself (the publish transaction and every transaction naming the
    task), so the timeline is as trustworthy as the ledger.
    """
    out = []
    for e in ledger.entries():
        body = e.tx.body
        if getattr(body, "task_id", None) == task_id or (
                isinstance(body, PublishTask) and object_id(e.tx_id) == task_id):
            event: dict[str, Any] = {"time_ms": e.tx.ts_ms, "node": e.sender, "event": e.kind,
                                     "height": e.height}
            for field in ("reason", "stage", "done", "total", "loss"):
                v = getattr(body, field, None)
                if v not in (None, ""):
                    event[field] = v
            out.append(event)
    return out


def task_metrics(task: TaskRecord, identity: NodeIdentity) -> dict[str, float] | None:
    """A training task's evaluation metrics, unsealed with the requester's key (None: none recorded).

    Raises
    ------
    Unauthorized
        ``identity`` is not the task's requester.
    """
    blob = next((r[len(METRICS_PREFIX):] for r in task.results if r.startswith(METRICS_PREFIX)), None)
    if blob is None:
        return None
    if identity.node_id != task.requester:
        raise Unauthorized(f"task {task.task_id} belongs to another requester; only it can read the metrics")
    import json

    return {str(k): float(v) for k, v in json.loads(identity.unseal(bytes.fromhex(blob))).items()}


def task_view(ledger: Ledger, task_id: str, identity: NodeIdentity | None = None) -> dict[str, Any]:
    """A task with its parameters, per-party progress, results and timeline (JSON-ready); with the
    requester's ``identity``, also its sealed evaluation metrics (``metrics``)."""
    t = ledger.get_task(task_id)
    view = _summary(t)
    view.update({
        "model_task": t.model_task,
        "params": dict(t.params),
        "parties": [{"executor": p.executor, "files": list(p.files), "confirmed": p.executor in t.confirmed,
                     "progress": (None if p.executor not in t.progress else {
                         "stage": t.progress[p.executor].stage, "done": t.progress[p.executor].done,
                         "total": t.progress[p.executor].total, "loss": t.progress[p.executor].loss,
                         "updated_ms": t.progress[p.executor].updated_ms})}
                    for p in t.parties],
        "results": list(t.results),
        "timeline": task_timeline(ledger, task_id),
    })
    if identity is not None:
        view["metrics"] = task_metrics(t, identity)
    return view


def _result_refs(t: TaskRecord) -> tuple[str, bytes]:
    fid = next((r[len(RESULT_PREFIX):] for r in t.results if r.startswith(RESULT_PREFIX)), None)
    key = next((r[len(KEY_PREFIX):] for r in t.results if r.startswith(KEY_PREFIX)), None)
    if fid is None or key is None:
        raise StateError(f"task {t.task_id} has no result file (a {t.task_type} task; results: {t.results})")
    try:
        return fid, bytes.fromhex(key)
    except ValueError:
        raise StateError(f"task {t.task_id}: its result key is not hex") from None


def fetch_result(ledger: Ledger, identity: NodeIdentity, task_id: str, out: str | os.PathLike[str], *,
                 revive: bool = False, notice: Callable[[str], Any] | None = None) -> int:
    """Download and decrypt a finished prediction task's result file into ``out``; returns its size.

    With ``revive``, when no storage node answers and the ledger is the one of a local network
    directory whose processes were stopped (``dtx demo --workdir DIR``), its storage nodes are
    restarted for the download and stopped again (``notice`` says so).

    Raises
    ------
    Unauthorized
        ``identity`` is not the task's requester (it could not unseal the key either).
    StateError
        The task is not Finished, or has no result file.
    """
    from ..storage.network import StorageNetwork

    t = ledger.get_task(task_id)
    if t.requester != identity.node_id:
        raise Unauthorized(f"task {task_id} belongs to another requester; only it can read the result")
    if t.status != TaskStatus.FINISHED:
        why = f": {t.reason}" if t.reason else ""
        raise StateError(f"task {task_id} is {t.status}, not Finished{why}")
    fid, sealed = _result_refs(t)
    key = identity.unseal(sealed)
    try:
        return StorageNetwork(ledger, identity).download(fid, out, key=key)
    except (InvalidProof, ProtocolError) as exc:
        # every replica unreachable: the nodes of a stopped local network (dtx demo --workdir)
        location = getattr(ledger, "path", None)
        if not revive or location is None:
            raise
        from .cluster import revived_storage

        with revived_storage(location) as names:
            if not names:
                raise exc from None
            if notice is not None:
                notice(f"the storage nodes were stopped: restarted {', '.join(names)} from "
                       f"{Path(location).parent} for the download")
            return StorageNetwork(ledger, identity).download(fid, out, key=key)
