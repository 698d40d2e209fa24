"""Typed record lookups of a ledger: ``get_*`` one record by id, ``list_*`` records by index terms.

Written once over the backend's read hooks (:class:`~dtxfast.ledger.backend.LedgerReader`) and
mixed into :class:`~dtxfast.ledger.Ledger`; lists come sorted by creation time, then id.

Examples
--------
>>> from dtxfast.ledger import MemoryLedger, NodeIdentity, RegisterNode
>>> led = MemoryLedger(); n = NodeIdentity.generate()
>>> _ = led.submit(n, RegisterNode(role="storage", address="127.0.0.1:7001"))
>>> [r.address for r in led.list_nodes(role="storage")], led.list_nodes(role="executor")
(['127.0.0.1:7001'], [])
"""

from __future__ import annotations

from typing import TypeVar

from ..errors import NotFound
from .backend import LedgerReader
from .records import (
    ApplicationRecord,
    ChallengeRecord,
    FileRecord,
    MigrationRecord,
    NamespaceRecord,
    NodeRecord,
    Record,
    TaskRecord,
    decode_record,
)

__all__ = ["LedgerQueries"]

R = TypeVar("R", bound=Record)

_SORT = {
    NodeRecord: lambda r: (r.registered_ms, r.node_id),
    NamespaceRecord: lambda r: (r.created_ms, r.ns_id),
    FileRecord: lambda r: (r.published_ms, r.file_id),
    ApplicationRecord: lambda r: (r.applied_ms, r.application_id),
    TaskRecord: lambda r: (r.published_ms, r.task_id),
    ChallengeRecord: lambda r: (r.issued_ms, r.challenge_id),
    MigrationRecord: lambda r: (r.at_ms, r.migration_id),
}


class LedgerQueries(LedgerReader):
    """The ``get_*`` / ``list_*`` queries of :class:`~dtxfast.ledger.Ledger`."""

    def _load(self, cls: type[R], key: str) -> R | None:
        data = self._r_get(cls.KIND, key)
        return None if data is None else decode_record(cls, data)

    def _need(self, cls: type[R], key: str, what: str) -> R:
        rec = self._load(cls, key)
        if rec is None:
            raise NotFound(f"{what} {key} does not exist")
        return rec

    def _query(self, cls: type[R], **terms: str | None) -> list[R]:
        keys: set[str] | None = None
        for attr, value in terms.items():
            if value is None:
                continue
            found = set(self._r_keys(cls.KIND, attr, value))
            keys = found if keys is None else keys & found
        if keys is None:
            keys = set(self._r_all(cls.KIND))
        recs = [r for r in (self._load(cls, k) for k in keys) if r is not None]
        return sorted(recs, key=_SORT[cls])

    def raw_record(self, kind: str, key: str) -> bytes | None:
        """The stored encoding of one record (``kind`` is its class's ``KIND``), None if absent.

        For callers that keep decoded records: comparing these bytes with the ones a record was
        decoded from tells whether it changed, at the cost of the read alone.
        """
        return self._r_get(kind, key)

    def get_node(self, node_id: str) -> NodeRecord:
        """A registered node; NotFound otherwise."""
        return self._need(NodeRecord, node_id, "node")

    def get_namespace(self, ns_id: str) -> NamespaceRecord:
        """A namespace by ``owner/name``."""
        return self._need(NamespaceRecord, ns_id, "namespace")

    def get_file(self, file_id: str) -> FileRecord:
        """A file's metadata."""
        return self._need(FileRecord, file_id, "file")

    def get_application(self, application_id: str) -> ApplicationRecord:
        """An executor's application to use a file."""
        return self._need(ApplicationRecord, application_id, "application")

    def get_task(self, task_id: str) -> TaskRecord:
        """A task."""
        return self._need(TaskRecord, task_id, "task")

    def get_challenge(self, challenge_id: str) -> ChallengeRecord:
        """A storage challenge."""
        return self._need(ChallengeRecord, challenge_id, "challenge")

    def list_nodes(self, *, role: str | None = None) -> list[NodeRecord]:
        """Registered nodes (with their last heartbeat), by registration time."""
        return self._query(NodeRecord, role=role)

    def list_namespaces(self, *, owner: str | None = None) -> list[NamespaceRecord]:
        """Namespaces, optionally of one owner."""
        return self._query(NamespaceRecord, owner=owner)

    def list_files(self, *, owner: str | None = None, namespace: str | None = None,
                   node: str | None = None) -> list[FileRecord]:
        """Files by owner, namespace (``owner/name``) and/or a node holding a replica."""
        return self._query(FileRecord, owner=owner, namespace=namespace, node=node)

    def list_applications(self, *, file_id: str | None = None, executor: str | None = None,
                          owner: str | None = None, status: str | None = None
                          ) -> list[ApplicationRecord]:
        """Applications to use files, filtered."""
        return self._query(ApplicationRecord, file=file_id, executor=executor, owner=owner,
                           status=status)

    def list_tasks(self, *, status: str | None = None, executor: str | None = None,
                   requester: str | None = None) -> list[TaskRecord]:
        """Tasks by status, named executor and/or requester, by publication time."""
        return self._query(TaskRecord, status=status, executor=executor, requester=requester)

    def list_challenges(self, *, node: str | None = None, file_id: str | None = None,
                        status: str | None = None) -> list[ChallengeRecord]:
        """Storage challenges, filtered."""
        return self._query(ChallengeRecord, node=node, file=file_id, status=status)

    def list_migrations(self, *, file_id: str | None = None) -> list[MigrationRecord]:
        """Slice migrations, optionally of one file."""
        return self._query(MigrationRecord, file=file_id)
