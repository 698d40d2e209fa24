"""Audit a file's replicas in a local replica store against its signed metadata.

:func:`audit_store` challenges every replica of a file (a fresh
:class:`~dtxfast.protocols.storage.Challenge` each), answers each from the bytes the store holds
(:class:`~dtxfast.protocols.storage.StorageProver`), and checks all answers in one batch against
the Merkle roots of the signed :class:`~dtxfast.storage.metadata.FileMetadata`
(:meth:`StorageVerifier.check_many <dtxfast.protocols.storage.StorageVerifier.check_many>`).
A missing or unreadable replica is a failure of its own, never the end of the audit. What
``dtx storage audit`` runs; the storage network's scheduled version over node processes is
:mod:`dtxfast.storage.monitor`.

Examples
--------
>>> import io
>>> from dtxfast.crypto.signatures import Ed25519PrivateKey
>>> from dtxfast.storage import DataOwner, MemoryReplicaStore
>>> store = MemoryReplicaStore()
>>> meta = DataOwner(Ed25519PrivateKey.generate()).upload(io.BytesIO(b"x" * 5000), store,
...     name="x", slice_size=4096, replicas=2, chunk_size=1024)
>>> report = audit_store(meta, store, k=4)
>>> report.total, report.failed
(4, 0)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import DtxError
from ..protocols.storage import DEFAULT_CHALLENGE_SIZE, ReplicaId, StorageProver, StorageVerifier
from .metadata import FileMetadata
from .store import ReplicaStore

__all__ = ["AuditReport", "audit_store"]


@dataclass
class AuditReport:
    """The outcome of one audit: ``results[replica]`` is None (passed) or why it failed."""

    file_id: str
    name: str
    results: dict[ReplicaId, str | None] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """Replicas audited."""
        return len(self.results)

    @property
    def failed(self) -> int:
        """Replicas that failed (a wrong proof, or no answer at all)."""
        return sum(err is not None for err in self.results.values())

    def rows(self) -> list[tuple[int, int, str | None]]:
        """``(slice, replica, error or None)`` in slice, replica order."""
        return [(r.slice_index, r.replica_index, err)
                for r, err in sorted(self.results.items(), key=lambda x: (x[0].slice_index, x[0].replica_index))]


def audit_store(metadata: FileMetadata, store: ReplicaStore, *, k: int = DEFAULT_CHALLENGE_SIZE) -> AuditReport:
    """Challenge every replica of ``metadata``'s file held in ``store`` and check the answers.

    Parameters
    ----------
    metadata : FileMetadata
        The file's signed metadata (verified by the caller: its roots are what is checked).
    store : ReplicaStore
        Where the replicas are.
    k : int
        Chunks asked per challenge.

    Returns
    -------
    AuditReport
        Every replica with None (pass) or the reason it failed.
    """
    verifier = StorageVerifier(metadata.commitments(), k=k)
    answers = []
    report = AuditReport(metadata.file_id_hex, metadata.name)
    for challenge in verifier.challenge_all():
        try:
            with store.open(challenge.replica) as f:
                answers.append(StorageProver(challenge.replica, f, metadata.chunk_size).answer(challenge))
        except (DtxError, OSError) as exc:  # a missing or damaged replica must not stop the audit
            report.results[challenge.replica] = f"cannot answer: {exc}"
    for rid, err in verifier.check_many(answers).items():
        report.results[rid] = None if err is None else str(err)
    return report
