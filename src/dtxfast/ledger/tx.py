"""Ledger transactions: typed kinds, one canonical byte form, signed by their sender.

A transaction is an :class:`UnsignedTx` envelope (format version, the ledger's chain id, the
sender's Ed25519 public key, a random nonce, the sender's timestamp) around a **body**, one of the
kinds below. Its canonical bytes are the msgpack encoding by msgspec (struct fields in declared
order, map keys sorted), and a decoder accepts only bytes that re-encode to themselves, so every
transaction has exactly one byte form and its signature is reproducible. The sender signs
``b"dtxfast/ledger/tx/v1\\x00" + payload``; the transaction id is SHA-256 of the payload, so the
same signed transaction cannot be appended twice, and the chain id stops replay on another ledger.

Adding a kind
-------------
Declare a frozen :class:`msgspec.Struct` with a unique ``tag`` (``class MyKind(TxBody,
tag="my_kind")``), call :func:`register_kind` on it, and register its rule with
:func:`dtxfast.ledger.contract.rule`. Nothing in the backends changes.

Examples
--------
>>> from dtxfast.ledger.identity import NodeIdentity
>>> from dtxfast.ledger.tx import RegisterNode, sign_tx, decode_tx
>>> ident = NodeIdentity.generate()
>>> stx = sign_tx(ident, RegisterNode(role="storage", address="127.0.0.1:7001"), chain_id=bytes(32))
>>> tx = decode_tx(stx.encode())
>>> tx.body.role, tx.sender_id == ident.node_id
('storage', True)
"""

from __future__ import annotations

import functools
import hashlib
import os
import time
from collections.abc import Callable
from typing import Annotated, Any, Literal, Union

import msgspec
from msgspec import UNSET, Meta, UnsetType

from ..crypto.signatures import Ed25519PublicKey, node_id_of
from ..errors import InvalidSignature, MalformedInput, ParameterError

__all__ = [
    "MAX_TX_SIZE",
    "ROLES",
    "TX_VERSION",
    "AddReplica",
    "ApplyFile",
    "ApproveApplication",
    "ConfirmTask",
    "CreateNamespace",
    "DeleteFile",
    "ExpireFile",
    "ExtendFile",
    "FailTask",
    "FinishTask",
    "Heartbeat",
    "IssueChallenge",
    "MigrateSlice",
    "ProcessTask",
    "PublishFile",
    "PublishTask",
    "RegisterNode",
    "ReportProgress",
    "RejectApplication",
    "RejectTask",
    "ReplicaInfo",
    "ResolveChallenge",
    "RevokeApplication",
    "SetNamespaceReplicas",
    "SetNodeStatus",
    "SignedTx",
    "SliceInfo",
    "StartTask",
    "TaskParty",
    "TxBody",
    "UnsignedTx",
    "decode_tx",
    "encode_payload",
    "kind_of",
    "kinds",
    "register_kind",
    "sign_tx",
    "signing_message",
    "unregister_kind",
]

TX_VERSION = 1
MAX_TX_SIZE = 1 << 20
_DOMAIN = b"dtxfast/ledger/tx/v1\x00"

#: the roles a node registers with
ROLES = ("storage", "executor", "dataowner", "requester")

NodeId = Annotated[str, Meta(pattern=r"^[a-z2-7]{16}$")]
ObjectId = Annotated[str, Meta(pattern=r"^[0-9a-f]{32}$")]
Name = Annotated[str, Meta(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f]+$")]
Text = Annotated[str, Meta(max_length=4096)]
Digest = Annotated[bytes, Meta(min_length=32, max_length=32)]
TimeMs = Annotated[int, Meta(ge=0, le=2**53)]
Param = Union[str, int, float, bool]


class TxBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="kind"):
    """Base of every transaction kind (a msgspec tagged struct; the tag is the kind's name)."""


class RegisterNode(TxBody, frozen=True, tag="register_node"):
    """Register the sender as a node (or update its address; the role cannot change)."""

    role: Literal["storage", "executor", "dataowner", "requester"]
    address: Annotated[str, Meta(max_length=512)] = ""
    name: Annotated[str, Meta(max_length=256)] = ""


class Heartbeat(TxBody, frozen=True, tag="heartbeat"):
    """The sender is alive (counted per hour towards its health)."""


class SetNodeStatus(TxBody, frozen=True, tag="set_node_status"):
    """The sender goes online or offline."""

    online: bool


class CreateNamespace(TxBody, frozen=True, tag="create_namespace"):
    """A data owner creates a namespace; its files keep ``replicas`` copies of every slice."""

    name: Name
    replicas: Annotated[int, Meta(ge=1, le=64)]


class SetNamespaceReplicas(TxBody, frozen=True, tag="set_namespace_replicas"):
    """The owner raises a namespace's replica count (its files gain replicas with :class:`AddReplica`)."""

    name: Name
    replicas: Annotated[int, Meta(ge=1, le=64)]


class ReplicaInfo(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One encrypted replica of a slice, as the storage network records it.

    ``index`` selects the replica's key and nonce (:meth:`dtxfast.crypto.aead.FileCipher.key_and_nonce`):
    a repaired replica gets an index never used before for its slice, so a new key and nonce.
    ``root`` is the Merkle root of its encrypted bytes and ``size`` their length.
    """

    index: Annotated[int, Meta(ge=0, lt=2**32)]
    root: Digest
    size: Annotated[int, Meta(ge=1, le=2**40)]


class SliceInfo(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """One slice of a file: its id, the digest of its (encrypted) bytes, the nodes holding it.

    ``replicas`` (optional; one per node, in the order of ``nodes``) describes each node's
    encrypted replica when the replicas differ (the storage network encrypts every replica under
    its own key, so each has its own Merkle root).
    """

    slice_id: Name
    digest: Digest
    nodes: Annotated[list[NodeId], Meta(min_length=1, max_length=64)]
    replicas: Annotated[list[ReplicaInfo], Meta(max_length=64)] = []


class PublishFile(TxBody, frozen=True, tag="publish_file"):
    """The sender (owner) publishes a file's metadata; the file id is the transaction id.

    For files of the storage network, ``content_id`` is the id the replicas were encrypted and
    stored under (chosen before the file id exists), ``slice_size`` the plaintext bytes per slice
    and ``chunk_size`` the Merkle chunk size of the proofs of storage. Left unset they are not
    encoded, so a file published without them keeps exactly the bytes it had before they existed.
    """

    namespace: Name
    name: Name
    size: Annotated[int, Meta(ge=0)]
    digest: Digest
    expires_ms: TimeMs
    slices: Annotated[list[SliceInfo], Meta(min_length=1, max_length=100_000)]
    description: Text = ""
    content_id: Union[Annotated[bytes, Meta(min_length=1, max_length=64)], UnsetType] = UNSET
    slice_size: Union[Annotated[int, Meta(ge=1, le=2**31)], UnsetType] = UNSET
    chunk_size: Union[Annotated[int, Meta(ge=1, le=2**24)], UnsetType] = UNSET


class ExtendFile(TxBody, frozen=True, tag="extend_file"):
    """The owner moves the file's expiry later."""

    file_id: ObjectId
    expires_ms: TimeMs


class ExpireFile(TxBody, frozen=True, tag="expire_file"):
    """The owner expires the file now (its approvals lapse with it)."""

    file_id: ObjectId


class DeleteFile(TxBody, frozen=True, tag="delete_file"):
    """The owner marks an expired file deleted: its storage nodes may drop its replicas."""

    file_id: ObjectId


class ApplyFile(TxBody, frozen=True, tag="apply_file"):
    """An executor applies to use a file; the application id is the transaction id."""

    file_id: ObjectId
    purpose: Text = ""


class ApproveApplication(TxBody, frozen=True, tag="approve_application"):
    """The file's owner approves, handing over the decryption material sealed to the executor."""

    application_id: ObjectId
    expires_ms: TimeMs
    sealed_key: Annotated[bytes, Meta(min_length=50, max_length=65536)]


class RejectApplication(TxBody, frozen=True, tag="reject_application"):
    """The file's owner rejects an application."""

    application_id: ObjectId
    reason: Text = ""


class RevokeApplication(TxBody, frozen=True, tag="revoke_application"):
    """The file's owner withdraws an approval."""

    application_id: ObjectId
    reason: Text = ""


class TaskParty(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One party of a task: the executor that computes for it and the files it uses."""

    executor: NodeId
    files: Annotated[list[ObjectId], Meta(max_length=1024)]


class PublishTask(TxBody, frozen=True, tag="publish_task"):
    """A requester publishes a training or prediction task; the task id is the transaction id."""

    task_type: Literal["train", "predict"]
    algorithm: Name
    parties: Annotated[list[TaskParty], Meta(min_length=1, max_length=64)]
    params: dict[Annotated[str, Meta(max_length=128)], Param] = {}
    model_task: str = ""  # for "predict": the finished training task whose model is used
    name: Annotated[str, Meta(max_length=256)] = ""


class ConfirmTask(TxBody, frozen=True, tag="confirm_task"):
    """A named executor confirms the task (it holds approvals for its files)."""

    task_id: ObjectId


class RejectTask(TxBody, frozen=True, tag="reject_task"):
    """A named executor rejects the task."""

    task_id: ObjectId
    reason: Text = ""


class StartTask(TxBody, frozen=True, tag="start_task"):
    """The requester starts a Ready task (Ready -> ToProcess)."""

    task_id: ObjectId


class ProcessTask(TxBody, frozen=True, tag="process_task"):
    """A named executor begins the computation (ToProcess -> Processing)."""

    task_id: ObjectId


class FinishTask(TxBody, frozen=True, tag="finish_task"):
    """A named executor reports success with references to the results (Processing -> Finished)."""

    task_id: ObjectId
    results: Annotated[list[Annotated[str, Meta(max_length=1024)]], Meta(max_length=256)] = []


class FailTask(TxBody, frozen=True, tag="fail_task"):
    """A named executor or the requester reports failure (ToProcess/Processing -> Failed)."""

    task_id: ObjectId
    reason: Text = ""


class ReportProgress(TxBody, frozen=True, tag="report_progress"):
    """A named executor records how far its party of a Processing task is (at a modest rate).

    ``stage`` is a short public word (``"fetch"``, ``"psi"``, ``"train"``, ``"predict"``...),
    ``done`` of ``total`` steps; ``loss`` only where the protocol reveals it to the parties.
    """

    task_id: ObjectId
    stage: Annotated[str, Meta(min_length=1, max_length=32, pattern=r"^[a-z0-9_-]+$")]
    done: Annotated[int, Meta(ge=0, le=2**31)] = 0
    total: Annotated[int, Meta(ge=0, le=2**31)] = 0
    loss: float | None = None


class IssueChallenge(TxBody, frozen=True, tag="issue_challenge"):
    """The file's owner challenges a storage node to prove it holds a slice (-> ToProve)."""

    node: NodeId
    file_id: ObjectId
    slice_id: Name
    challenge: Annotated[bytes, Meta(max_length=65536)] = b""


class ResolveChallenge(TxBody, frozen=True, tag="resolve_challenge"):
    """The challenger records the outcome (ToProve -> Proved / Failed)."""

    challenge_id: ObjectId
    proved: bool
    evidence: Annotated[bytes, Meta(max_length=65536)] = b""


class MigrateSlice(TxBody, frozen=True, tag="migrate_slice", omit_defaults=True):
    """The file's owner moves a replica of a slice from one storage node to another.

    ``replica`` describes the new node's replica when the slice records its replicas (a
    re-encrypted replica has a new index and root).
    """

    file_id: ObjectId
    slice_id: Name
    from_node: NodeId
    to_node: NodeId
    replica: ReplicaInfo | None = None


class AddReplica(TxBody, frozen=True, tag="add_replica"):
    """The file's owner records one more replica of a slice (its namespace keeps more copies)."""

    file_id: ObjectId
    slice_id: Name
    node: NodeId
    replica: ReplicaInfo


_KINDS: list[type[TxBody]] = [
    RegisterNode, Heartbeat, SetNodeStatus, CreateNamespace, PublishFile, ExtendFile, ExpireFile,
    ApplyFile, ApproveApplication, RejectApplication, RevokeApplication, PublishTask, ConfirmTask,
    RejectTask, StartTask, ProcessTask, FinishTask, FailTask, ReportProgress, IssueChallenge, ResolveChallenge,
    MigrateSlice, SetNamespaceReplicas, DeleteFile, AddReplica,
]
_BUILTIN_KINDS: frozenset[type[TxBody]] = frozenset(_KINDS)
#: called with a kind that :func:`unregister_kind` removes (the contract registers one)
_ON_UNREGISTER: list[Callable[[type[TxBody]], object]] = []


class UnsignedTx(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The signed content of a transaction.

    Attributes
    ----------
    version : int
        Format version (:data:`TX_VERSION`).
    chain_id : bytes
        The ledger's id (hash of its genesis block): a transaction is valid on one ledger only.
    sender : bytes
        The sender's 32-byte Ed25519 public key.
    nonce : bytes
        16 random bytes, so that two equal bodies are two transactions.
    ts_ms : int
        The sender's clock, milliseconds since the epoch; the contract's "now" for this transaction.
    body : TxBody
        The kind and its fields.
    """

    version: int
    chain_id: Digest
    sender: Annotated[bytes, Meta(min_length=32, max_length=32)]
    nonce: Annotated[bytes, Meta(min_length=16, max_length=16)]
    ts_ms: TimeMs
    body: Any  # a registered TxBody; the decoder below is built over the registered union

    @property
    def kind(self) -> str:
        """The kind's tag, e.g. ``"publish_task"``."""
        return kind_of(type(self.body))

    @property
    def sender_id(self) -> str:
        """The sender's node id."""
        return _node_id(self.sender)


class SignedTx(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    """A transaction as stored on the ledger: canonical payload bytes and the sender's signature.

    Examples
    --------
    >>> from dtxfast.ledger.identity import NodeIdentity
    >>> s = sign_tx(NodeIdentity.generate(), Heartbeat(), chain_id=bytes(32))
    >>> SignedTx.decode(s.encode()) == s
    True
    """

    payload: bytes
    signature: Annotated[bytes, Meta(min_length=64, max_length=64)]

    @property
    def tx_id(self) -> bytes:
        """SHA-256 of the payload: the transaction's id (32 bytes)."""
        return hashlib.sha256(self.payload).digest()

    def encode(self) -> bytes:
        """The stored bytes of this signed transaction."""
        return _signed_encoder.encode(self)

    @classmethod
    def decode(cls, data: bytes) -> SignedTx:
        """Parse stored bytes (canonical form only)."""
        if len(data) > MAX_TX_SIZE + 128:
            raise MalformedInput("signed transaction is too large")
        try:
            stx = _signed_decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
            raise MalformedInput(f"not a signed transaction: {exc}") from None
        if _signed_encoder.encode(stx) != bytes(data):
            raise MalformedInput("signed transaction is not in canonical form")
        return stx

    def unsigned(self) -> UnsignedTx:
        """Decode and validate the payload (no signature check)."""
        return _decode_payload(self.payload)

    def verify(self) -> UnsignedTx:
        """Decode the payload and check the signature; raises InvalidSignature if it fails."""
        tx = _decode_payload(self.payload)
        Ed25519PublicKey(tx.sender).verify(self.signature, signing_message(self.payload))
        return tx


_node_id = functools.lru_cache(maxsize=4096)(node_id_of)
_encoder = msgspec.msgpack.Encoder(order="deterministic")
_signed_encoder = msgspec.msgpack.Encoder(order="deterministic")
_signed_decoder = msgspec.msgpack.Decoder(SignedTx)
_kind_names: dict[type, str] = {}
_payload_decoder: msgspec.msgpack.Decoder[Any]


def _rebuild() -> None:
    global _payload_decoder

    union = Union[tuple(_KINDS)]  # type: ignore[valid-type]
    typed = msgspec.defstruct(
        "UnsignedTx",
        [("version", int), ("chain_id", Digest), ("sender", UnsignedTx.__annotations__["sender"]),
         ("nonce", UnsignedTx.__annotations__["nonce"]), ("ts_ms", TimeMs), ("body", union)],
        frozen=True,
        forbid_unknown_fields=True,
    )
    _payload_decoder = msgspec.msgpack.Decoder(typed)
    _kind_names.clear()
    for k in _KINDS:
        _kind_names[k] = msgspec.inspect.type_info(k).tag  # type: ignore[attr-defined]


def register_kind(kind: type[TxBody]) -> type[TxBody]:
    """Add a transaction kind (a :class:`TxBody` subclass with a unique tag); usable as decorator.

    Examples
    --------
    >>> class Ping(TxBody, frozen=True, tag="test_ping"):
    ...     note: str = ""
    >>> _ = register_kind(Ping)
    >>> "test_ping" in kinds()
    True
    >>> unregister_kind(Ping)
    >>> "test_ping" in kinds()
    False
    """
    if not (isinstance(kind, type) and issubclass(kind, TxBody)):
        raise ParameterError("a transaction kind subclasses TxBody")
    tag = msgspec.inspect.type_info(kind).tag  # type: ignore[attr-defined]
    if not isinstance(tag, str) or not tag:
        raise ParameterError("a transaction kind needs a string tag")
    if kind in _KINDS:
        return kind
    if tag in kinds():
        raise ParameterError(f"transaction kind {tag!r} is already registered")
    _KINDS.append(kind)
    _rebuild()
    return kind


def unregister_kind(kind: type[TxBody]) -> None:
    """Remove a kind added by :func:`register_kind` (the built-in kinds stay).

    Entries of that kind already on a ledger no longer decode afterwards: this is for tests and
    plugins that are unloaded, not for a running network.
    """
    if kind in _BUILTIN_KINDS:
        raise ParameterError(f"{kind.__name__} is a built-in transaction kind")
    if kind in _KINDS:
        _KINDS.remove(kind)
        _rebuild()
        for forget in _ON_UNREGISTER:  # e.g. the contract drops the kind's rule
            forget(kind)


def kinds() -> dict[str, type[TxBody]]:
    """The registered kinds by tag."""
    return {name: k for k, name in _kind_names.items()}


def kind_of(cls: type[TxBody]) -> str:
    """The tag of a registered kind class."""
    try:
        return _kind_names[cls]
    except KeyError:
        raise ParameterError(f"{cls.__name__} is not a registered transaction kind") from None


def encode_payload(tx: UnsignedTx) -> bytes:
    """The canonical bytes of an unsigned transaction."""
    return _encoder.encode(tx)


def signing_message(payload: bytes) -> bytes:
    """What the sender signs: a domain prefix and the canonical payload."""
    return _DOMAIN + payload


def _decode_payload(payload: bytes) -> UnsignedTx:
    if len(payload) > MAX_TX_SIZE:
        raise MalformedInput(f"transaction payload exceeds {MAX_TX_SIZE} bytes")
    try:
        raw = _payload_decoder.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
        raise MalformedInput(f"invalid transaction: {exc}") from None
    if raw.version != TX_VERSION:
        raise MalformedInput(f"unknown transaction version {raw.version}")
    tx = UnsignedTx(raw.version, raw.chain_id, raw.sender, raw.nonce, raw.ts_ms, raw.body)
    if _encoder.encode(tx) != bytes(payload):
        raise MalformedInput("transaction is not in canonical form")
    return tx


def decode_tx(data: bytes, *, verify: bool = True) -> UnsignedTx:
    """Parse stored signed-transaction bytes; check the signature unless ``verify=False``.

    Raises
    ------
    MalformedInput
        Not canonical, unknown version or kind, or a field out of range.
    InvalidSignature
        The signature does not verify.
    """
    stx = SignedTx.decode(data)
    return stx.verify() if verify else stx.unsigned()


def sign_tx(
    identity: Any,
    body: TxBody,
    *,
    chain_id: bytes,
    ts_ms: int | None = None,
    nonce: bytes | None = None,
) -> SignedTx:
    """Build, validate and sign a transaction.

    Parameters
    ----------
    identity : NodeIdentity
        The sender.
    body : TxBody
        A registered kind.
    chain_id : bytes
        The target ledger's :attr:`~dtxfast.ledger.Ledger.chain_id`.
    ts_ms : int, optional
        The timestamp (default: now).
    nonce : bytes, optional
        16 bytes (default: random).

    Raises
    ------
    MalformedInput
        A field is out of range (the same check the ledger applies).
    """
    if type(body) not in _kind_names:
        raise ParameterError(f"{type(body).__name__} is not a registered transaction kind")
    tx = UnsignedTx(
        TX_VERSION,
        bytes(chain_id),
        identity.public_key_bytes,
        os.urandom(16) if nonce is None else bytes(nonce),
        int(time.time() * 1000) if ts_ms is None else int(ts_ms),
        body,
    )
    payload = _encoder.encode(tx)
    _decode_payload(payload)  # validate exactly as the ledger will
    return SignedTx(payload, identity.sign(signing_message(payload)))


_rebuild()

# keep flake8 quiet about the imported-for-docs name
_ = InvalidSignature
