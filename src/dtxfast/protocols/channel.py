"""The message-channel interface every protocol is written against.

A :class:`Channel` is one party's endpoint: it sends bytes-like messages to a named peer and
receives the next message a named peer sent to it. Messages between one ordered pair of parties
arrive in the order they were sent; there is no ordering between different peers. That is the
whole contract, so any protocol written against it (the three-party MPC of
:mod:`dtxfast.protocols.mpc`, the two-party VFL protocols) runs unchanged in-process
(:class:`dtxfast.transport.InMemoryNetwork`) or across processes (a networked implementation of
the same interface in :mod:`dtxfast.transport`).

The interface lives here, in the protocol layer, because protocols depend on it; the
implementations live one layer up, in :mod:`dtxfast.transport`.

Contract every implementation keeps
-----------------------------------
- ``send(peer, data)`` never waits for the peer to receive: it queues the message (copying it,
  so the caller may reuse its buffer) and returns. Protocols rely on this to let every party send
  first and receive afterwards in the same round without deadlock.
- ``send_owned(peer, data)`` is ``send`` for a buffer the caller hands over: it never writes
  to it again, so an in-process implementation may queue the buffer itself instead of a copy
  (the default sends a copy; a transport that writes to a socket copies anyway).
- ``recv(peer, timeout=None)`` returns the oldest unread message from ``peer`` as ``bytes`` (a
  read-only ``memoryview`` for a message handed over with ``send_owned`` where the
  implementation did not copy it), waiting for it if needed; it raises
  :class:`~dtxfast.errors.ProtocolError` on timeout.
- ``poll(peer)`` tells without waiting whether ``recv(peer)`` would return at once;
  ``try_recv(peer)`` returns the message if one is waiting, else ``None`` (defined from the two).
- ``bytes_sent`` / ``bytes_received`` count payload bytes of this endpoint (no framing).

Examples
--------
A minimal implementation: a loopback endpoint that talks to itself.

>>> from collections import deque
>>> class Loopback(Channel):
...     def __init__(self):
...         self.name, self._q, self._n = "A", deque(), 0
...     def send(self, peer, data):
...         self._q.append(bytes(data)); self._n += len(data)
...     def recv(self, peer, timeout=None):
...         return self._q.popleft()
...     def poll(self, peer):
...         return bool(self._q)
...     bytes_sent = property(lambda self: self._n)
...     bytes_received = property(lambda self: self._n)
>>> ch = Loopback()
>>> ch.send("A", b"hi"); ch.poll("A"), ch.recv("A"), ch.bytes_sent
(True, b'hi', 2)
"""

from __future__ import annotations

from abc import ABC, abstractmethod

__all__ = ["BytesLike", "Channel"]

BytesLike = bytes | bytearray | memoryview


class Channel(ABC):
    """One party's endpoint for sending messages to, and receiving them from, named peers."""

    #: this endpoint's party name
    name: str

    @abstractmethod
    def send(self, peer: str, data: BytesLike) -> None:
        """Queue ``data`` (any C-contiguous buffer) for ``peer``; never waits for the peer."""

    def send_owned(self, peer: str, data: BytesLike) -> None:
        """:meth:`send` for a buffer the caller hands over and never writes to again: an
        implementation may queue it without a copy. The default sends a copy."""
        self.send(peer, data)

    @abstractmethod
    def recv(self, peer: str, timeout: float | None = None) -> bytes:
        """Return the oldest unread message from ``peer``, waiting up to ``timeout`` seconds.

        Raises
        ------
        ProtocolError
            If no message arrived in time.
        """

    @abstractmethod
    def poll(self, peer: str) -> bool:
        """Whether a message from ``peer`` is waiting (``recv`` would not block)."""

    def try_recv(self, peer: str) -> bytes | None:
        """The oldest unread message from ``peer``, or ``None`` at once if none is waiting.

        The default is :meth:`poll` then :meth:`recv`; an implementation may do both in one step
        (a driver that runs many parties in one thread calls this once per message).
        """
        return self.recv(peer) if self.poll(peer) else None

    @property
    @abstractmethod
    def bytes_sent(self) -> int:
        """Payload bytes this endpoint has sent."""

    @property
    @abstractmethod
    def bytes_received(self) -> int:
        """Payload bytes this endpoint has received."""
