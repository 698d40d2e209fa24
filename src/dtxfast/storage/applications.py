"""A data owner's answers to executors' applications to use its files (ApplyFile).

An executor that needs a file submits an :class:`~dtxfast.ledger.ApplyFile`; the file's owner
answers it once, on the ledger:

* :func:`approve_application`: the file's key sealed to the executor's registered key
  (:meth:`StorageNetwork.sealed_file_key <dtxfast.storage.network.StorageNetwork.sealed_file_key>`),
  with an expiry no later than the file's (``min(file expiry, now + days)``);
* :func:`reject_application`: a reason, no key;
* :func:`revoke_application`: withdraws an approval (the sealed key is dropped from the record;
  storage nodes stop serving the executor).

The same functions serve the ``dtx file approve|reject|revoke`` commands and the DataOwner node
(:mod:`dtxfast.nodes.dataowner`). Each checks the application first and refuses with one clear
error (:class:`~dtxfast.errors.NotFound` for an unknown id, :class:`~dtxfast.errors.Unauthorized`
for someone else's file, :class:`~dtxfast.errors.StateError` for an application already decided or
an expired file); the ledger's contract checks the same again when the answer is appended.

Examples
--------
>>> from dtxfast.ledger import ApplicationRecord
>>> rec = ApplicationRecord(application_id="ab" * 16, file_id="cd" * 16, owner="o", executor="e",
...                         applied_ms=1_700_000_000_000)
>>> application_row(rec)["status"]
'Unapproved'
"""

from __future__ import annotations

from typing import Any

from ..errors import ParameterError, StateError, Unauthorized
from ..ledger import (
    ApplicationRecord,
    ApplicationStatus,
    ApproveApplication,
    Ledger,
    RejectApplication,
    RevokeApplication,
)
from .network import StorageNetwork

__all__ = [
    "DAY_MS",
    "application_row",
    "approval_expiry",
    "approve_application",
    "list_applications",
    "reject_application",
    "revoke_application",
]

#: milliseconds in a day
DAY_MS = 86_400_000


def application_row(app: ApplicationRecord) -> dict[str, Any]:
    """An application as JSON-ready data (times in seconds since the epoch; no sealed key)."""
    return {
        "application_id": app.application_id, "file_id": app.file_id, "owner": app.owner,
        "executor": app.executor, "purpose": app.purpose, "status": app.status,
        "applied_at": app.applied_ms // 1000, "updated_at": app.updated_ms // 1000,
        "expires_at": app.expires_ms // 1000 if app.expires_ms else None, "reason": app.reason,
    }


def _status(status: str | None) -> str | None:
    if status is None:
        return None
    for s in ApplicationStatus.ALL:
        if s.lower() == status.strip().lower():
            return s
    raise ParameterError(f"unknown application status {status!r}; one of {', '.join(ApplicationStatus.ALL)}")


def list_applications(ledger: Ledger, *, owner: str | None = None, file_id: str | None = None,
                      status: str | None = None, executor: str | None = None) -> list[ApplicationRecord]:
    """Applications, filtered; ``status`` is matched case-insensitively (ParameterError if unknown).

    Examples
    --------
    >>> from dtxfast.ledger import MemoryLedger
    >>> list_applications(MemoryLedger(), status="unapproved")
    []
    """
    return ledger.list_applications(owner=owner, file_id=file_id, status=_status(status), executor=executor)


def _pending(net: StorageNetwork, application_id: str, want: str = ApplicationStatus.UNAPPROVED
             ) -> ApplicationRecord:
    """The application, checked: it exists, belongs to one of the caller's files, has status ``want``."""
    if not isinstance(application_id, str) or len(application_id) != 32:
        raise ParameterError(f"an application id is 32 hex characters, got {application_id!r}")
    app = net.ledger.get_application(application_id)
    me = net.identity.node_id
    if app.owner != me:
        raise Unauthorized(f"application {application_id} is for file {app.file_id} of {app.owner}; "
                           f"you ({me}) are not its owner")
    if app.status != want:
        done = "already decided: " if app.status != ApplicationStatus.UNAPPROVED else ""
        why = f" ({app.reason})" if app.reason else ""
        raise StateError(f"application {application_id} is {done}{app.status}{why}, not {want}")
    return app


def approval_expiry(file_expires_ms: int, now_ms: int, days: float) -> int:
    """When an approval given now for ``days`` ends: never after the file's own expiry.

    Examples
    --------
    >>> approval_expiry(10 * DAY_MS, 0, 30.0) == 10 * DAY_MS
    True
    >>> approval_expiry(10 * DAY_MS, 0, 1.5) == int(1.5 * DAY_MS)
    True
    """
    if not days > 0:
        raise ParameterError(f"an approval lasts a positive number of days, got {days!r}")
    return min(file_expires_ms, now_ms + int(days * DAY_MS))


def approve_application(net: StorageNetwork, application_id: str, *, days: float = 30.0,
                        now_ms: int | None = None) -> ApplicationRecord:
    """Approve an application to one of ``net.identity``'s files; returns the updated record.

    The file key is sealed to the executor's registered Ed25519 key: only that executor's
    :meth:`~dtxfast.ledger.NodeIdentity.unseal` opens it. The approval lasts ``days`` but never
    longer than the file.

    Parameters
    ----------
    net : StorageNetwork
        The owner's client (its identity signs the approval).
    application_id : str
        The application (the id of its ApplyFile transaction).
    days : float
        How long the approval lasts at most.
    now_ms : int, optional
        The time of the approval (default: the network's clock).

    Raises
    ------
    NotFound
        No such application (or its executor is no longer registered).
    Unauthorized
        The caller does not own the file.
    StateError
        The application was already decided, or the file has expired.
    ParameterError
        ``days`` is not positive, or the file is not stored in the storage network (it has no key).
    """
    app = _pending(net, application_id)
    f = net.ledger.get_file(app.file_id)
    now = net._clock() if now_ms is None else now_ms
    if not f.is_live(now):
        raise StateError(f"file {f.file_id} has expired; it cannot be approved for use")
    if not f.content_id:
        raise ParameterError(f"file {f.file_id} is not stored in the storage network; it has no key to hand out")
    expires = approval_expiry(f.expires_ms, now, days)
    sealed = net.sealed_file_key(f.file_id, app.executor)
    net.ledger.submit(net.identity, ApproveApplication(application_id=application_id, expires_ms=expires,
                                                       sealed_key=sealed), ts_ms=now)
    return net.ledger.get_application(application_id)


def reject_application(net: StorageNetwork, application_id: str, reason: str, *,
                       now_ms: int | None = None) -> ApplicationRecord:
    """Reject an undecided application with a reason (shown to the executor); the updated record.

    Raises
    ------
    NotFound, Unauthorized, StateError
        As for :func:`approve_application`.
    ParameterError
        An empty reason.
    """
    if not reason or not reason.strip():
        raise ParameterError("a rejection needs a reason (--reason)")
    _pending(net, application_id)
    net.ledger.submit(net.identity, RejectApplication(application_id=application_id, reason=reason.strip()),
                      ts_ms=now_ms)
    return net.ledger.get_application(application_id)


def revoke_application(net: StorageNetwork, application_id: str, reason: str, *,
                       now_ms: int | None = None) -> ApplicationRecord:
    """Withdraw an approval (the sealed key leaves the record); the updated record.

    An executor that already unsealed the key keeps what it read; storage nodes refuse it from
    now on, so it cannot fetch the file again.

    Raises
    ------
    NotFound, Unauthorized
        As for :func:`approve_application`.
    StateError
        The application is not Approved.
    ParameterError
        An empty reason.
    """
    if not reason or not reason.strip():
        raise ParameterError("a revocation needs a reason (--reason)")
    _pending(net, application_id, ApplicationStatus.APPROVED)
    net.ledger.submit(net.identity, RevokeApplication(application_id=application_id, reason=reason.strip()),
                      ts_ms=now_ms)
    return net.ledger.get_application(application_id)

