"""The state the ledger's contract maintains: one typed record per node, namespace, file,
application, task, challenge and slice migration.

Records are msgspec structs stored by the backends as opaque canonical bytes under
``(KIND, key)``, with a few ``(attribute, value)`` index terms for the queries. Statuses are the
string constants below.

Examples
--------
>>> from dtxfast.ledger.records import TaskStatus
>>> TaskStatus.CONFIRMING
'Confirming'
"""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec

from .tx import Param, SliceInfo, TaskParty

__all__ = [
    "KEY_PREFIX",
    "METRICS_PREFIX",
    "RESULT_PREFIX",
    "RECORD_TYPES",
    "ApplicationRecord",
    "ApplicationStatus",
    "ChallengeRecord",
    "ChallengeStatus",
    "FileRecord",
    "FileStatus",
    "HeartbeatBucket",
    "MigrationRecord",
    "NamespaceRecord",
    "NodeRecord",
    "Record",
    "TaskProgress",
    "TaskRecord",
    "TaskStatus",
    "decode_record",
    "encode_record",
]


class TaskStatus:
    """Task statuses; a task only moves forward along ``TRANSITIONS``."""

    CONFIRMING = "Confirming"
    READY = "Ready"
    TO_PROCESS = "ToProcess"
    PROCESSING = "Processing"
    FINISHED = "Finished"
    FAILED = "Failed"
    REJECTED = "Rejected"
    ALL = (CONFIRMING, READY, TO_PROCESS, PROCESSING, FINISHED, FAILED, REJECTED)
    #: the allowed moves
    TRANSITIONS: ClassVar[dict[str, tuple[str, ...]]] = {
        CONFIRMING: (READY, REJECTED),
        READY: (TO_PROCESS,),
        TO_PROCESS: (PROCESSING, FAILED),
        PROCESSING: (FINISHED, FAILED),
        FINISHED: (),
        FAILED: (),
        REJECTED: (),
    }


class ApplicationStatus:
    """Statuses of an executor's application to use a file."""

    UNAPPROVED = "Unapproved"
    APPROVED = "Approved"
    REJECTED = "Rejected"
    REVOKED = "Revoked"
    ALL = (UNAPPROVED, APPROVED, REJECTED, REVOKED)


class ChallengeStatus:
    """Statuses of a storage challenge."""

    TO_PROVE = "ToProve"
    PROVED = "Proved"
    FAILED = "Failed"
    ALL = (TO_PROVE, PROVED, FAILED)


class FileStatus:
    """Statuses of a published file."""

    PUBLISHED = "Published"
    EXPIRED = "Expired"
    DELETED = "Deleted"


class Record(msgspec.Struct, kw_only=True):
    """Base of the state records: ``KIND`` names the table, :meth:`key` the row."""

    KIND: ClassVar[str] = ""

    def key(self) -> str:
        """The record's key within its kind."""
        raise NotImplementedError

    def terms(self) -> list[tuple[str, str]]:
        """Index terms ``(attribute, value)`` the queries look records up by."""
        return []


class NodeRecord(Record, kw_only=True):
    """A registered node, its role, address and liveness."""

    KIND: ClassVar[str] = "node"
    node_id: str
    public_key: bytes
    role: str
    address: str
    name: str = ""
    registered_ms: int
    online: bool = True
    status_ms: int = 0
    last_heartbeat_ms: int = 0

    def key(self) -> str:
        return self.node_id

    def terms(self) -> list[tuple[str, str]]:
        return [("role", self.role)]


class NamespaceRecord(Record, kw_only=True):
    """A data owner's namespace (``owner/name``) with its replica count."""

    KIND: ClassVar[str] = "namespace"
    owner: str
    name: str
    replicas: int
    created_ms: int

    @property
    def ns_id(self) -> str:
        """``owner/name``."""
        return f"{self.owner}/{self.name}"

    def key(self) -> str:
        return self.ns_id

    def terms(self) -> list[tuple[str, str]]:
        return [("owner", self.owner)]


class FileRecord(Record, kw_only=True):
    """A published file's metadata and where its slices are."""

    KIND: ClassVar[str] = "file"
    file_id: str
    owner: str
    namespace: str  # owner/name
    name: str
    size: int
    digest: bytes
    expires_ms: int
    published_ms: int
    slices: list[SliceInfo]
    description: str = ""
    status: str = FileStatus.PUBLISHED
    content_id: bytes = b""  # storage network: the id replicas are encrypted and stored under
    slice_size: int = 0
    chunk_size: int = 0

    def key(self) -> str:
        return self.file_id

    def terms(self) -> list[tuple[str, str]]:
        nodes = sorted({n for s in self.slices for n in s.nodes})
        return [("owner", self.owner), ("namespace", self.namespace)] + [("node", n) for n in nodes]

    def is_live(self, now_ms: int) -> bool:
        """Published and not past its expiry at ``now_ms``."""
        return self.status == FileStatus.PUBLISHED and now_ms < self.expires_ms

    def slice(self, slice_id: str) -> SliceInfo | None:
        """The slice with this id, or None."""
        for s in self.slices:
            if s.slice_id == slice_id:
                return s
        return None


class ApplicationRecord(Record, kw_only=True):
    """An executor's application to use a file, and the owner's answer."""

    KIND: ClassVar[str] = "application"
    application_id: str
    file_id: str
    owner: str
    executor: str
    purpose: str = ""
    status: str = ApplicationStatus.UNAPPROVED
    applied_ms: int
    expires_ms: int = 0
    sealed_key: bytes = b""
    reason: str = ""
    updated_ms: int = 0

    def key(self) -> str:
        return self.application_id

    def terms(self) -> list[tuple[str, str]]:
        return [("file", self.file_id), ("executor", self.executor), ("owner", self.owner),
                ("status", self.status)]


#: how a finished task names, in ``TaskRecord.results``, a result file for its requester ...
RESULT_PREFIX = "result:"
#: ... and that file's key, sealed to the requester's registered key (hex)
KEY_PREFIX = "key:"
#: a training task's evaluation metrics (JSON), sealed to the requester's key (hex): the ledger is
#: public, the model's quality on the parties' data is the requester's to know
METRICS_PREFIX = "metrics:"


class TaskProgress(msgspec.Struct, kw_only=True):
    """One executor's last reported progress on a task."""

    stage: str
    done: int = 0
    total: int = 0
    loss: float | None = None
    updated_ms: int = 0


class TaskRecord(Record, kw_only=True):
    """A training or prediction task and where it is in its life."""

    KIND: ClassVar[str] = "task"
    task_id: str
    requester: str
    task_type: str
    algorithm: str
    parties: list[TaskParty]
    params: dict[str, Param] = {}
    model_task: str = ""
    name: str = ""
    status: str = TaskStatus.CONFIRMING
    confirmed: list[str] = []
    published_ms: int
    updated_ms: int = 0
    results: list[str] = []
    reason: str = ""
    progress: dict[str, TaskProgress] = {}

    @property
    def executors(self) -> list[str]:
        """The named executors, in party order."""
        return [p.executor for p in self.parties]

    def key(self) -> str:
        return self.task_id

    def terms(self) -> list[tuple[str, str]]:
        return [("status", self.status), ("requester", self.requester)] + [
            ("executor", e) for e in self.executors
        ]


class ChallengeRecord(Record, kw_only=True):
    """A storage challenge and its outcome."""

    KIND: ClassVar[str] = "challenge"
    challenge_id: str
    challenger: str
    node: str
    file_id: str
    slice_id: str
    challenge: bytes = b""
    status: str = ChallengeStatus.TO_PROVE
    issued_ms: int
    resolved_ms: int = 0
    evidence: bytes = b""

    def key(self) -> str:
        return self.challenge_id

    def terms(self) -> list[tuple[str, str]]:
        return [("node", self.node), ("file", self.file_id), ("status", self.status)]


class MigrationRecord(Record, kw_only=True):
    """A slice replica moved from one storage node to another."""

    KIND: ClassVar[str] = "migration"
    migration_id: str
    file_id: str
    slice_id: str
    from_node: str
    to_node: str
    at_ms: int

    def key(self) -> str:
        return self.migration_id

    def terms(self) -> list[tuple[str, str]]:
        return [("file", self.file_id), ("node", self.from_node), ("node", self.to_node)]


class HeartbeatBucket(Record, kw_only=True):
    """How many heartbeats a node sent within one hour (key ``node:hour``)."""

    KIND: ClassVar[str] = "heartbeat"
    node: str
    hour: int
    count: int = 0

    def key(self) -> str:
        return f"{self.node}:{self.hour}"


RECORD_TYPES: dict[str, type[Record]] = {
    t.KIND: t
    for t in (NodeRecord, NamespaceRecord, FileRecord, ApplicationRecord, TaskRecord,
              ChallengeRecord, MigrationRecord, HeartbeatBucket)
}

_encoder = msgspec.msgpack.Encoder(order="deterministic")
_decoders: dict[type, Any] = {}


def encode_record(rec: Record) -> bytes:
    """Canonical bytes of a record."""
    return _encoder.encode(rec)


def decode_record(cls: type[Record], data: bytes) -> Any:
    """Parse a record of type ``cls``."""
    dec = _decoders.get(cls)
    if dec is None:
        dec = _decoders[cls] = msgspec.msgpack.Decoder(cls)
    return dec.decode(data)
