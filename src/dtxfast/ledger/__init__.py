"""The dtxfast ledger: signed, hash-chained, embedded by default, pluggable for other backends.

Every party coordinates through the ledger: nodes register and send heartbeats, data owners
publish file metadata and approve executors, requesters publish tasks that the named executors
confirm, challenges of storage nodes and their outcomes are recorded, and anyone can audit the
history with :meth:`Ledger.verify_chain`.

* :class:`NodeIdentity`: a node's Ed25519 key pair and key file; :func:`seal_to` encrypts to a node.
* :mod:`~dtxfast.ledger.tx`: the transaction kinds (typed msgspec structs), :func:`sign_tx`.
* :mod:`~dtxfast.ledger.contract`: the rules every transaction passes before it is appended.
* :class:`Ledger` (:mod:`~dtxfast.ledger.base`): the interface, over the chain format of
  :mod:`~dtxfast.ledger.block` and the backend hooks of :mod:`~dtxfast.ledger.backend`, with
  :mod:`~dtxfast.ledger.queries`, :mod:`~dtxfast.ledger.subscription` and
  :mod:`~dtxfast.ledger.health` mixed in; :class:`SQLiteLedger` (embedded, WAL, multi-process)
  and :class:`MemoryLedger` (tests) implement it; :func:`open_ledger` picks one from a location.

Examples
--------
>>> from dtxfast.ledger import MemoryLedger, NodeIdentity, RegisterNode, CreateNamespace
>>> led = MemoryLedger()
>>> owner = NodeIdentity.generate()
>>> _ = led.submit(owner, RegisterNode(role="dataowner", address="10.0.0.5:8000"))
>>> _ = led.submit(owner, CreateNamespace(name="hospital", replicas=2))
>>> [ns.ns_id.split("/")[1] for ns in led.list_namespaces(owner=owner.node_id)]
['hospital']
"""

from __future__ import annotations

import os
from typing import Any

from ..errors import ParameterError
from .base import Ledger
from .block import (
    Block,
    BlockHeader,
    ChainCorrupted,
    ChainReport,
    DuplicateTransaction,
    Entry,
    Receipt,
)
from .health import FileHealth, HealthPolicy, NodeHealth
from .identity import NodeIdentity, seal_to
from .memory import MemoryLedger
from .records import (
    ApplicationRecord,
    ApplicationStatus,
    ChallengeRecord,
    ChallengeStatus,
    FileRecord,
    FileStatus,
    MigrationRecord,
    NamespaceRecord,
    NodeRecord,
    TaskRecord,
    TaskStatus,
)
from .sqlite import SQLiteLedger
from .subscription import Subscription
from .tx import (
    AddReplica,
    ApplyFile,
    ApproveApplication,
    ConfirmTask,
    CreateNamespace,
    DeleteFile,
    ExpireFile,
    ExtendFile,
    FailTask,
    ReportProgress,
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
    ResolveChallenge,
    RevokeApplication,
    SetNamespaceReplicas,
    SetNodeStatus,
    SignedTx,
    SliceInfo,
    StartTask,
    TaskParty,
    TxBody,
    UnsignedTx,
    decode_tx,
    register_kind,
    sign_tx,
    unregister_kind,
)

__all__ = [
    "AddReplica",
    "ApplicationRecord",
    "ApplicationStatus",
    "ApplyFile",
    "ApproveApplication",
    "Block",
    "BlockHeader",
    "ChainCorrupted",
    "ChainReport",
    "ChallengeRecord",
    "ChallengeStatus",
    "ConfirmTask",
    "CreateNamespace",
    "DeleteFile",
    "DuplicateTransaction",
    "Entry",
    "ExpireFile",
    "ExtendFile",
    "FailTask",
    "ReportProgress",
    "FileHealth",
    "FileRecord",
    "FileStatus",
    "FinishTask",
    "HealthPolicy",
    "Heartbeat",
    "IssueChallenge",
    "Ledger",
    "MemoryLedger",
    "MigrateSlice",
    "MigrationRecord",
    "NamespaceRecord",
    "NodeHealth",
    "NodeIdentity",
    "NodeRecord",
    "ProcessTask",
    "PublishFile",
    "PublishTask",
    "Receipt",
    "RegisterNode",
    "RejectApplication",
    "RejectTask",
    "ReplicaInfo",
    "ResolveChallenge",
    "RevokeApplication",
    "SQLiteLedger",
    "SetNamespaceReplicas",
    "SetNodeStatus",
    "SignedTx",
    "SliceInfo",
    "StartTask",
    "Subscription",
    "TaskParty",
    "TaskRecord",
    "TaskStatus",
    "TxBody",
    "UnsignedTx",
    "decode_tx",
    "open_ledger",
    "register_kind",
    "seal_to",
    "sign_tx",
    "unregister_kind",
]


def open_ledger(location: str | os.PathLike[str], *, create: bool = False, **options: Any) -> Ledger:
    """Open a ledger from a location: ``":memory:"`` or ``"memory:"`` for :class:`MemoryLedger`,
    ``"etcd://HOST:PORT[,HOST:PORT...][/CHAIN]"`` for :class:`~dtxfast.ledger.etcd.EtcdLedger`
    (replicated by an etcd cluster), ``"sqlite:PATH"`` or a plain file path for
    :class:`SQLiteLedger`.

    Parameters
    ----------
    location : str or path
        Where the ledger lives.
    create : bool
        Create the ledger (its genesis block) if it does not exist (default: it must exist).
    **options
        Passed to the backend (``clock``, ``max_skew_ms``; SQLite: ``durability``; etcd:
        ``timeout``, ``request_timeout``).

    Examples
    --------
    >>> open_ledger("memory:").height
    0
    """
    loc = os.fspath(location)
    if loc in (":memory:", "memory:"):
        return MemoryLedger(**options)
    if loc.startswith("etcd://"):
        from .etcd import EtcdLedger

        return EtcdLedger(loc, create=create, **options)
    loc = loc.removeprefix("sqlite:")
    if not loc:
        raise ParameterError("empty ledger location")
    return SQLiteLedger(loc, create=create, **options)
