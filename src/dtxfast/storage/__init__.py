"""Encrypted, sliced, replicated file storage (L3) and its proofs of storage.

A :class:`DataOwner` turns a file (streamed) into slices, each slice into ``r`` replicas each
encrypted under its own key (AES-256-GCM, HKDF-derived), and signs the :class:`FileMetadata`
that records every replica's Merkle root. Replicas go to a :class:`ReplicaStore`
(:class:`MemoryReplicaStore`, :class:`DirectoryReplicaStore`, :func:`open_replica_store`).
Storage nodes prove they still hold replicas with the challenge/answer objects of
:mod:`dtxfast.protocols.storage`, re-exported here.

Submodules: :mod:`~dtxfast.storage.owner`, :mod:`~dtxfast.storage.metadata`,
:mod:`~dtxfast.storage.store`.
"""

from __future__ import annotations

from .._deprecated import renamed as _renamed
from ..protocols.storage import (
    DEFAULT_CHALLENGE_SIZE,
    Answer,
    Challenge,
    ReplicaCommitment,
    ReplicaId,
    StorageProver,
    StorageVerifier,
    check_answers,
    detection_probability,
    pass_probability,
    verify_answer,
)
from .metadata import FileMetadata
from .owner import (
    DEFAULT_REPLICAS,
    DEFAULT_SLICE_SIZE,
    DataOwner,
    EncryptedReplica,
    ReplicaEncryptor,
    decrypt_file,
    decrypt_replica,
)
from .store import DirectoryReplicaStore, MemoryReplicaStore, ReplicaStore, open_replica_store

__all__ = [
    "DEFAULT_CHALLENGE_SIZE",
    "DEFAULT_REPLICAS",
    "DEFAULT_SLICE_SIZE",
    "Answer",
    "Challenge",
    "DataOwner",
    "DirectoryReplicaStore",
    "EncryptedReplica",
    "FileMetadata",
    "MemoryReplicaStore",
    "ReplicaCommitment",
    "ReplicaEncryptor",
    "ReplicaId",
    "ReplicaStore",
    "StorageProver",
    "StorageVerifier",
    "check_answers",
    "decrypt_file",
    "decrypt_replica",
    "detection_probability",
    "open_replica_store",
    "pass_probability",
    "verify_answer",
]


# names before the house rename (issue 14): importable with a DeprecationWarning
__getattr__ = _renamed("dtxfast.storage", {'verify_answers': 'check_answers'}, globals())
