"""The contract: every rule a transaction must pass before it is appended, in one place.

Each kind has one rule, ``rule(state, tx, tx_id) -> None``, that checks the sender's right and the
fields against the current state and writes the records it changes. Backends never check anything
themselves: :meth:`Ledger.append <dtxfast.ledger.Ledger.append>` verifies the signature, refuses a
replay, then calls :func:`apply` inside the backend's write transaction, so a refused transaction
changes nothing. A refusal raises a typed error:

* :class:`~dtxfast.errors.Unauthorized`: the sender may not do this (not the file's owner, not a
  named executor, not the requester, wrong role, not registered);
* :class:`~dtxfast.errors.StateError`: not allowed in the object's current state (a task moving
  backwards, approving twice, using an expired file);
* :class:`~dtxfast.errors.NotFound`: the file / task / application / namespace does not exist;
* :class:`~dtxfast.errors.ParameterError`: a field is ill-formed for this state (an approval outliving
  its file, a slice with the wrong replica count, duplicate executors).

The "now" of a rule is the transaction's own signed timestamp, so replaying the chain reaches the
same state on every machine.

Examples
--------
>>> from dtxfast.ledger.contract import rule
>>> from dtxfast.ledger.tx import TxBody, register_kind, unregister_kind
>>> @register_kind
... class Note(TxBody, tag="doc_note"):
...     text: str = ""
>>> @rule(Note)
... def _note(state, tx, tx_id):
...     state.require_node(tx)  # only registered nodes may leave notes
>>> unregister_kind(Note)  # the example cleans up after itself (the kind and its rule)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from ..errors import DtxError, NotFound, ParameterError, StateError, Unauthorized
from .identity import SEALED_OVERHEAD
from .records import (
    ApplicationRecord,
    ApplicationStatus,
    ChallengeRecord,
    ChallengeStatus,
    FileRecord,
    FileStatus,
    HeartbeatBucket,
    MigrationRecord,
    NamespaceRecord,
    NodeRecord,
    Record,
    TaskProgress,
    TaskRecord,
    TaskStatus,
    decode_record,
    encode_record,
)
from .tx import (
    _ON_UNREGISTER,
    AddReplica,
    ApplyFile,
    ApproveApplication,
    ConfirmTask,
    CreateNamespace,
    DeleteFile,
    ExpireFile,
    ExtendFile,
    FailTask,
    FinishTask,
    Heartbeat,
    IssueChallenge,
    MigrateSlice,
    ProcessTask,
    PublishFile,
    PublishTask,
    RegisterNode,
    RejectApplication,
    RejectTask,
    ReplicaInfo,
    ReportProgress,
    ResolveChallenge,
    RevokeApplication,
    SetNamespaceReplicas,
    SetNodeStatus,
    SliceInfo,
    StartTask,
    TxBody,
    UnsignedTx,
)

__all__ = ["FILE_OWNER_ROLES", "HOUR_MS", "State", "StateView", "apply", "holds_approval", "object_id", "rule"]

HOUR_MS = 3_600_000
#: who may own namespaces and files: data owners, and executors (a prediction task's result file,
#: which the label party's executor publishes for the requester)
FILE_OWNER_ROLES = ("dataowner", "executor")
R = TypeVar("R", bound=Record)


class StateView(Protocol):
    """What a backend's write transaction offers the contract: opaque records with index terms."""

    def get(self, kind: str, key: str) -> bytes | None:
        """The stored bytes of ``(kind, key)``, or None."""

    def put(self, kind: str, key: str, value: bytes, terms: Sequence[tuple[str, str]]) -> None:
        """Store (insert or replace) a record and replace its index terms."""

    def keys(self, kind: str, attr: str, value: str) -> list[str]:
        """Keys of the records of ``kind`` with index term ``(attr, value)``."""


def object_id(tx_id: bytes) -> str:
    """The id of the object a transaction creates: the first 16 bytes of its id, in hex."""
    return tx_id[:16].hex()


class State:
    """Typed access to a :class:`StateView` for the rules."""

    __slots__ = ("view",)

    def __init__(self, view: StateView) -> None:
        self.view = view

    def load(self, cls: type[R], key: str) -> R | None:
        """The record ``cls`` under ``key``, or None."""
        data = self.view.get(cls.KIND, key)
        return None if data is None else decode_record(cls, data)

    def need(self, cls: type[R], key: str, what: str) -> R:
        """The record, or NotFound naming ``what``."""
        rec = self.load(cls, key)
        if rec is None:
            raise NotFound(f"{what} {key} does not exist")
        return rec

    def store(self, rec: Record) -> None:
        """Write a record and its index terms."""
        self.view.put(rec.KIND, rec.key(), encode_record(rec), rec.terms())

    def require_node(self, tx: UnsignedTx, role: str | tuple[str, ...] | None = None) -> NodeRecord:
        """The sender's node record; Unauthorized if it is not registered (with ``role``, or one of them)."""
        node = self.load(NodeRecord, tx.sender_id)
        if node is None:
            raise Unauthorized(f"node {tx.sender_id} is not registered")
        roles = (role,) if isinstance(role, str) else role
        if roles is not None and node.role not in roles:
            raise Unauthorized(f"node {tx.sender_id} is a {node.role}, only a {' or '.join(roles)} may do this")
        return node

    def owned_live_file(self, tx: UnsignedTx, file_id: str) -> FileRecord:
        """A file the sender owns and that is live at the transaction's time."""
        f = self.need(FileRecord, file_id, "file")
        if f.owner != tx.sender_id:
            raise Unauthorized(f"only the owner of file {file_id} may do this")
        if not f.is_live(tx.ts_ms):
            raise StateError(f"file {file_id} has expired")
        return f


Rule = Callable[[State, UnsignedTx, bytes], None]
_RULES: dict[type, Rule] = {}
_ON_UNREGISTER.append(lambda kind: _RULES.pop(kind, None))


def rule(kind: type[TxBody]) -> Callable[[Rule], Rule]:
    """Register the rule of a transaction kind (decorator); one rule per kind."""

    def deco(fn: Rule) -> Rule:
        _RULES[kind] = fn
        return fn

    return deco


def apply(view: StateView, tx: UnsignedTx, tx_id: bytes) -> None:
    """Check ``tx`` against the state in ``view`` and write its effects, or raise.

    Parameters
    ----------
    view : StateView
        The backend's open write transaction.
    tx : UnsignedTx
        A decoded transaction whose signature was already verified.
    tx_id : bytes
        Its id (SHA-256 of the payload).

    Raises
    ------
    Unauthorized, StateError, NotFound, ParameterError
        The transaction is refused (nothing is written by this call's rule).
    """
    fn = _RULES.get(type(tx.body))
    if fn is None:
        raise ParameterError(f"no contract rule for transaction kind {tx.kind!r}")
    fn(State(view), tx, tx_id)


# --- nodes ---------------------------------------------------------------------------------


@rule(RegisterNode)
def _register_node(state: State, tx: UnsignedTx, tx_id: bytes) -> None:
    b: RegisterNode = tx.body
    node = state.load(NodeRecord, tx.sender_id)
    if node is None:
        node = NodeRecord(node_id=tx.sender_id, public_key=tx.sender, role=b.role, address=b.address,
                          name=b.name, registered_ms=tx.ts_ms, status_ms=tx.ts_ms)
    else:
        if node.role != b.role:
            raise StateError(f"node {node.node_id} is registered as {node.role}; a role cannot change")
        node.address, node.name = b.address, b.name
    state.store(node)


@rule(Heartbeat)
def _heartbeat(state: State, tx: UnsignedTx, tx_id: bytes) -> None:
    node = state.require_node(tx)
    hour = tx.ts_ms // HOUR_MS
    bucket = state.load(HeartbeatBucket, f"{node.node_id}:{hour}") or HeartbeatBucket(
        node=node.node_id, hour=hour
    )
    bucket.count += 1
    state.store(bucket)
    node.last_heartbeat_ms = max(node.last_heartbeat_ms, tx.ts_ms)
    state.store(node)


@rule(SetNodeStatus)
def _set_node_status(state: State, tx: UnsignedTx, tx_id: bytes) -> None:
    node = state.require_node(tx)
    node.online = tx.body.online
    node.status_ms = tx.ts_ms
    state.store(node)


# --- namespaces and files ------------------------------------------------------------------


@rule(CreateNamespace)
def _create_namespace(state: State, tx: UnsignedTx, tx_id: bytes) -> None:
    state.require_node(tx, FILE_OWNER_ROLES)
    b: CreateNamespace = tx.body
    if "/" in b.name:
        raise ParameterError("a namespace name cannot contain '/'")
    ns = NamespaceRecord(owner=tx.sender_id, name=b.name, replicas=b.replicas, created_ms=tx.ts_ms)
    if state.load(NamespaceRecord, ns.ns_id) is not None:
        raise StateError(f"namespace {ns.ns_id} already exists")
    state.store(ns)


def _check_slice_nodes(state: State, s: SliceInfo, replicas: int) -> None:
    if len(s.nodes) != replicas:
        raise ParameterError(
            f"slice {s.slice_id} has {len(s.nodes)} replicas, its namespace keeps {replicas}"
        )
    if len(set(s.nodes)) != len(s.nodes):
        raise ParameterError(f"slice {s.slice_id} lists a node twice")
    if s.replicas and len(s.replicas) != len(s.nodes):
        raise ParameterError(f"slice {s.slice_id} describes {len(s.replicas)} replicas for {len(s.nodes)} nodes")
    if len({r.index for r in s.replicas}) != len(s.replicas):
        raise ParameterError(f"slice {s.slice_id} uses a replica index twice")
    for n in s.nodes:
        _require_storage(state, n)


def _fresh_replica(s: SliceInfo, replica: ReplicaInfo | None) -> None:
    """A new replica of a slice that records its replicas needs an index above every current one."""
    if not s.replicas:
        if replica is not None:
            raise ParameterError(f"slice {s.slice_id} does not record its replicas")
        return
    if replica is None:
        raise ParameterError(f"slice {s.slice_id} records its replicas: describe the new one")
    if replica.index <= max(r.index for r in s.replicas):
        raise ParameterError("a new replica needs a replica index above every current one (a fresh key and nonce)")


def _require_storage(state: State, node_id: str) -> NodeRecord:
    node = state.need(NodeRecord, node_id, "node")
    if node.role != "storage":
        raise ParameterError(f"node {node_id} is not a storage node")
    return node


@rule(PublishFile)
def _publish_file(state: State, tx: UnsignedTx, tx_id: bytes) -> None:
    state.require_node(tx, FILE_OWNER_ROLES)
    b: PublishFile = tx.body
    ns = state.need(NamespaceRecord, f"{tx.sender_id}/{b.namespace}", "namespace")
    if b.expires_ms <= tx.ts_ms:
        raise ParameterError("a file's expiry must be later than its publication")
    if len({s.slice_id for s in b.slices}) != len(b.slices):
        raise ParameterError("slice ids of a file must be distinct")
    for s in b.slices:
        _check_slice_nodes(state, s, ns.replicas)
    content_id, slice_size, chunk_size = b.content_id or b"", b.slice_size or 0, b.chunk_size or 0
    if content_id:
        if not slice_size or not chunk_size:
            raise ParameterError("a file stored by content id needs its slice and chunk sizes")
        if any(not s.replicas for s in b.slices):
            raise ParameterError("a file stored by content id describes every slice's replicas")
    state.store(FileRecord(
        file_id=object_id(tx_id), owner=tx.sender_id, namespace=ns.ns_id, name=b.name, size=b.size,
        digest=b.digest, expires_ms=b.expires_ms, published_ms=tx.ts_ms, slices=list(b.slices),
        description=b.description, content_id=content_id, slice_size=slice_size, chunk_size=chunk_size,
    ))


@rule(SetNamespaceReplicas)
def _set_namespace_replicas(state: State, tx: UnsignedTx, tx_id: bytes) -> None:
    b: SetNamespaceReplicas = tx.body
    ns = state.need(NamespaceRecord, f"{tx.sender_id}/{b.name}", "namespace")
    if b.replicas <= ns.replicas:
        raise ParameterError(f"namespace {ns.ns_id} keeps {ns.replicas} replicas; it can only be raised")
    ns.replicas = b.replicas
    state.store(ns)


@rule(AddReplica)
def _add_replica(state: State, tx: UnsignedTx, tx_id: bytes) -> None:
    b: AddReplica = tx.body
    f = state.owned_live_file(tx, b.file_id)
    ns = state.need(NamespaceRecord, f.namespace, "namespace")
    s = f.slice(b.slice_id)
    if s is None:
        raise NotFound(f"file {f.file_id} has no slice {b.slice_id}")
    if len(s.nodes) >= ns.replicas:
        raise StateError(f"slice {b.slice_id} already has the {ns.replicas} replicas its namespace keeps")
    if b.node in s.nodes:
        raise ParameterError(f"node {b.node} already holds slice {b.slice_id}")
    _require_storage(state, b.node)
    _fresh_replica(s, b.replica)
    replicas = [*s.replicas, b.replica] if s.replicas else []
    f.slices = [SliceInfo(x.slice_id, x.digest, [*x.nodes, b.node], replicas) if x.slice_id == b.slice_id else x
                for x in f.slices]
    state.store(f)


@rule(ExtendFile)
def _extend_file(state: State, tx: UnsignedTx, tx_id: bytes) -> None:
    # a file past its expiry but not expired by its owner (nor deleted) can still be extended:
    # its storage nodes keep it for a retention period
    f = state.need(FileRecord, tx.body.file_id, "file")
    if f.owner != tx.sender_id:
        raise Unauthorized(f"only the owner of file {f.file_id} may do this")
    if f.status != FileStatus.PUBLISHED:
        raise StateError(f"file {f.file_id} is {f.status.lower()}")
    if tx.body.expires_ms <= max(f.expires_ms, tx.ts_ms):
        raise ParameterError("extending a file must move its expiry later (and into the future)")
    f.expires_ms = tx.body.expires_ms
    state.store(f)


@rule(DeleteFile)
def _delete_file(state: State, tx: UnsignedTx, tx_id: bytes) -> None:
    f = state.need(FileRecord, tx.body.file_id, "file")
    if f.owner != tx.sender_id:
        raise Unauthorized(f"only the owner of file {f.file_id} may do this")
    if f.status == FileStatus.DELETED:
        raise StateError(f"file {f.file_id} is already deleted")
    if f.is_live(tx.ts_ms):
        raise StateError(f"file {f.file_id} has not expired; expire it first")
    f.status = FileStatus.DELETED
    state.store(f)


@rule(ExpireFile)
def _expire_file(state: State, tx: UnsignedTx, tx_id: bytes) -> None:
    f = state.owned_live_file(tx, tx.body.file_id)
    f.status = FileStatus.EXPIRED
    f.expires_ms = min(f.expires_ms, tx.ts_ms)
    state.store(f)


# --- applications to use a file -----------------------------------------------------------


@rule(ApplyFile)
def _apply_file(state: State, tx: UnsignedTx, tx_id: bytes) -> None:
    state.require_node(tx, "executor")
    f = state.need(FileRecord, tx.body.file_id, "file")
    if not f.is_live(tx.ts_ms):
        raise StateError(f"file {f.file_id} has expired")
    state.store(ApplicationRecord(
        application_id=object_id(tx_id), file_id=f.file_id, owner=f.owner, executor=tx.sender_id,
        purpose=tx.body.purpose, applied_ms=tx.ts_ms, updated_ms=tx.ts_ms,
    ))


def _owned_application(state: State, tx: UnsignedTx, app_id: str, status: str) -> ApplicationRecord:
    app = state.need(ApplicationRecord, app_id, "application")
    if app.owner != tx.sender_id:
        raise Unauthorized(f"only the owner of file {app.file_id} may decide application {app_id}")
    if app.status != status:
        raise StateError(f"application {app_id} is {app.status}, not {status}")
    return app


@rule(ApproveApplication)
def _approve(state: State, tx: UnsignedTx, tx_id: bytes) -> None:
    b: ApproveApplication = tx.body
    app = _owned_application(state, tx, b.application_id, ApplicationStatus.UNAPPROVED)
    f = state.owned_live_file(tx, app.file_id)
    if not tx.ts_ms < b.expires_ms <= f.expires_ms:
        raise ParameterError("an approval's expiry must be in the future and no later than the file's")
    if len(b.sealed_key) < SEALED_OVERHEAD + 1 or b.sealed_key[0] != 1:
        raise ParameterError("the decryption material must be sealed to the executor (seal_to)")
    app.status, app.expires_ms, app.sealed_key, app.updated_ms = (
        ApplicationStatus.APPROVED, b.expires_ms, b.sealed_key, tx.ts_ms)
    state.store(app)


@rule(RejectApplication)
def _reject_application(state: State, tx: UnsignedTx, tx_id: bytes) -> None:
    app = _owned_application(state, tx, tx.body.application_id, ApplicationStatus.UNAPPROVED)
    app.status, app.reason, app.updated_ms = ApplicationStatus.REJECTED, tx.body.reason, tx.ts_ms
    state.store(app)


@rule(RevokeApplication)
def _revoke_application(state: State, tx: UnsignedTx, tx_id: bytes) -> None:
    app = _owned_application(state, tx, tx.body.application_id, ApplicationStatus.APPROVED)
    app.status, app.reason, app.updated_ms = ApplicationStatus.REVOKED, tx.body.reason, tx.ts_ms
    app.sealed_key = b""
    state.store(app)


def holds_approval(state: State, executor: str, file_id: str, now_ms: int) -> bool:
    """True if ``executor`` holds an approved, unexpired application for a live file."""
    f = state.load(FileRecord, file_id)
    if f is None or not f.is_live(now_ms):
        return False
    for key in state.view.keys(ApplicationRecord.KIND, "executor", executor):
        app = state.load(ApplicationRecord, key)
        if (app is not None and app.file_id == file_id and app.status == ApplicationStatus.APPROVED
                and now_ms < app.expires_ms):
            return True
    return False


# --- tasks ---------------------------------------------------------------------------------


@rule(PublishTask)
def _publish_task(state: State, tx: UnsignedTx, tx_id: bytes) -> None:
    state.require_node(tx, "requester")
    b: PublishTask = tx.body
    executors = [p.executor for p in b.parties]
    if len(set(executors)) != len(executors):
        raise ParameterError("each executor is named once per task")
    for p in b.parties:
        node = state.need(NodeRecord, p.executor, "node")
        if node.role != "executor":
            raise ParameterError(f"node {p.executor} is not an executor")
        if len(set(p.files)) != len(p.files):
            raise ParameterError("a party lists a file twice")
        for fid in p.files:
            f = state.need(FileRecord, fid, "file")
            if not f.is_live(tx.ts_ms):
                raise StateError(f"file {fid} has expired")
    if b.task_type == "predict":
        if not b.model_task:
            raise ParameterError("a prediction task names the finished training task of its model")
        model = state.need(TaskRecord, b.model_task, "task")
        if model.task_type != "train" or model.status != TaskStatus.FINISHED:
            raise StateError(f"task {b.model_task} is not a finished training task")
        if model.requester != tx.sender_id:
            raise Unauthorized(f"task {b.model_task} belongs to another requester")
    elif b.model_task:
        raise ParameterError("a training task does not name a model task")
    state.store(TaskRecord(
        task_id=object_id(tx_id), requester=tx.sender_id, task_type=b.task_type,
        algorithm=b.algorithm, parties=list(b.parties), params=dict(b.params),
        model_task=b.model_task, name=b.name, published_ms=tx.ts_ms, updated_ms=tx.ts_ms,
    ))


def _move(task: TaskRecord, to: str, tx: UnsignedTx) -> None:
    if to not in TaskStatus.TRANSITIONS[task.status]:
        raise StateError(f"task {task.task_id} is {task.status}; it cannot become {to}")
    task.status, task.updated_ms = to, tx.ts_ms


def _executor_task(state: State, tx: UnsignedTx, task_id: str) -> TaskRecord:
    task = state.need(TaskRecord, task_id, "task")
    if tx.sender_id not in task.executors:
        raise Unauthorized(f"node {tx.sender_id} is not an executor of task {task_id}")
    return task


@rule(ConfirmTask)
def _confirm_task(state: State, tx: UnsignedTx, tx_id: bytes) -> None:
    task = _executor_task(state, tx, tx.body.task_id)
    if task.status != TaskStatus.CONFIRMING:
        raise StateError(f"task {task.task_id} is {task.status}, not Confirming")
    if tx.sender_id in task.confirmed:
        raise StateError(f"executor {tx.sender_id} already confirmed task {task.task_id}")
    party = next(p for p in task.parties if p.executor == tx.sender_id)
    for fid in party.files:
        if not holds_approval(state, tx.sender_id, fid, tx.ts_ms):
            raise Unauthorized(f"executor {tx.sender_id} holds no valid approval for file {fid}")
    task.confirmed = [*task.confirmed, tx.sender_id]
    task.updated_ms = tx.ts_ms
    if set(task.confirmed) == set(task.executors):
        _move(task, TaskStatus.READY, tx)
    state.store(task)


@rule(RejectTask)
def _reject_task(state: State, tx: UnsignedTx, tx_id: bytes) -> None:
    task = _executor_task(state, tx, tx.body.task_id)
    _move(task, TaskStatus.REJECTED, tx)
    task.reason = f"{tx.sender_id}: {tx.body.reason}"
    state.store(task)


@rule(StartTask)
def _start_task(state: State, tx: UnsignedTx, tx_id: bytes) -> None:
    task = state.need(TaskRecord, tx.body.task_id, "task")
    if task.requester != tx.sender_id:
        raise Unauthorized(f"only the requester of task {task.task_id} may start it")
    _move(task, TaskStatus.TO_PROCESS, tx)
    state.store(task)


@rule(ProcessTask)
def _process_task(state: State, tx: UnsignedTx, tx_id: bytes) -> None:
    task = _executor_task(state, tx, tx.body.task_id)
    _move(task, TaskStatus.PROCESSING, tx)
    state.store(task)


@rule(ReportProgress)
def _report_progress(state: State, tx: UnsignedTx, tx_id: bytes) -> None:
    b: ReportProgress = tx.body
    task = _executor_task(state, tx, b.task_id)
    if task.status != TaskStatus.PROCESSING:
        raise StateError(f"task {task.task_id} is {task.status}, not Processing")
    if b.loss is not None and b.loss != b.loss:
        raise ParameterError("a reported loss is a number (not NaN); leave it out when not revealed")
    if b.total and b.done > b.total:
        raise ParameterError("progress: done cannot exceed total")
    task.progress = {**task.progress, tx.sender_id: TaskProgress(
        stage=b.stage, done=b.done, total=b.total, loss=b.loss, updated_ms=tx.ts_ms)}
    task.updated_ms = tx.ts_ms
    state.store(task)


@rule(FinishTask)
def _finish_task(state: State, tx: UnsignedTx, tx_id: bytes) -> None:
    task = _executor_task(state, tx, tx.body.task_id)
    _move(task, TaskStatus.FINISHED, tx)
    task.results = list(tx.body.results)
    state.store(task)


@rule(FailTask)
def _fail_task(state: State, tx: UnsignedTx, tx_id: bytes) -> None:
    task = state.need(TaskRecord, tx.body.task_id, "task")
    if tx.sender_id not in task.executors and tx.sender_id != task.requester:
        raise Unauthorized(f"only an executor or the requester of task {task.task_id} may fail it")
    _move(task, TaskStatus.FAILED, tx)
    task.reason = f"{tx.sender_id}: {tx.body.reason}"
    state.store(task)


# --- storage challenges and migrations ----------------------------------------------------


@rule(IssueChallenge)
def _issue_challenge(state: State, tx: UnsignedTx, tx_id: bytes) -> None:
    b: IssueChallenge = tx.body
    f = state.owned_live_file(tx, b.file_id)
    s = f.slice(b.slice_id)
    if s is None:
        raise NotFound(f"file {f.file_id} has no slice {b.slice_id}")
    if b.node not in s.nodes:
        raise ParameterError(f"node {b.node} does not hold slice {b.slice_id}")
    state.store(ChallengeRecord(
        challenge_id=object_id(tx_id), challenger=tx.sender_id, node=b.node, file_id=f.file_id,
        slice_id=b.slice_id, challenge=b.challenge, issued_ms=tx.ts_ms,
    ))


@rule(ResolveChallenge)
def _resolve_challenge(state: State, tx: UnsignedTx, tx_id: bytes) -> None:
    b: ResolveChallenge = tx.body
    ch = state.need(ChallengeRecord, b.challenge_id, "challenge")
    if ch.challenger != tx.sender_id:
        raise Unauthorized(f"only the challenger may resolve challenge {ch.challenge_id}")
    if ch.status != ChallengeStatus.TO_PROVE:
        raise StateError(f"challenge {ch.challenge_id} is already {ch.status}")
    ch.status = ChallengeStatus.PROVED if b.proved else ChallengeStatus.FAILED
    ch.resolved_ms, ch.evidence = tx.ts_ms, b.evidence
    state.store(ch)


@rule(MigrateSlice)
def _migrate_slice(state: State, tx: UnsignedTx, tx_id: bytes) -> None:
    b: MigrateSlice = tx.body
    f = state.owned_live_file(tx, b.file_id)
    s = f.slice(b.slice_id)
    if s is None:
        raise NotFound(f"file {f.file_id} has no slice {b.slice_id}")
    if b.from_node not in s.nodes:
        raise ParameterError(f"node {b.from_node} does not hold slice {b.slice_id}")
    if b.to_node in s.nodes:
        raise ParameterError(f"node {b.to_node} already holds slice {b.slice_id}")
    _require_storage(state, b.to_node)
    _fresh_replica(s, b.replica)
    nodes = [b.to_node if n == b.from_node else n for n in s.nodes]
    new = b.replica
    replicas = ([new if n == b.from_node and new is not None else r for n, r in zip(s.nodes, s.replicas)]
                if s.replicas else [])
    f.slices = [SliceInfo(x.slice_id, x.digest, nodes, replicas) if x.slice_id == b.slice_id else x
                for x in f.slices]
    state.store(f)
    state.store(MigrationRecord(
        migration_id=object_id(tx_id), file_id=f.file_id, slice_id=b.slice_id,
        from_node=b.from_node, to_node=b.to_node, at_ms=tx.ts_ms,
    ))


_unused: Any = DtxError
