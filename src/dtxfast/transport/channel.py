"""In-process implementations of the :class:`~dtxfast.protocols.channel.Channel` interface.

The interface itself and the contract every implementation keeps (``send`` never waits, per-peer
FIFO order, ``recv`` raises :class:`~dtxfast.errors.ProtocolError` on timeout, payload byte
counters) live in :mod:`dtxfast.protocols.channel`, below the protocols that use it; ``Channel``
and ``BytesLike`` are re-exported here for convenience. :class:`InMemoryNetwork` runs every party
of a protocol in one process (threads or one cooperative loop).

Examples
--------
>>> net = InMemoryNetwork(["A", "B"])
>>> a, b = net.channel("A"), net.channel("B")
>>> a.send("B", b"hello")
>>> a.poll("B"), b.poll("A")
(False, True)
>>> b.recv("A")
b'hello'
>>> net.bytes_sent("A"), net.bytes_received("B")
(5, 5)
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable

from ..errors import ParameterError, ProtocolError
from ..protocols.channel import BytesLike, Channel

__all__ = ["BytesLike", "Channel", "InMemoryChannel", "InMemoryNetwork"]


class InMemoryNetwork:
    """A set of in-process endpoints with per-party byte counters (thread-safe).

    Parameters
    ----------
    parties : iterable of str
        Names of the parties; each gets one :class:`InMemoryChannel` from :meth:`channel`.
    record : bool, default False
        Keep a transcript of every message as ``(sender, receiver, bytes)`` in :attr:`transcript`
        (tests use it to inspect what a party saw).

    Notes
    -----
    One plain lock guards the queues and counters; a receiver that has to wait registers itself,
    and only then does a send pay for a wake-up (a condition on the same lock). Every endpoint
    keeps its own links by peer name, so a message costs one copy (none for a buffer handed over
    with :meth:`InMemoryChannel.send_owned`), one lock and two deque operations;
    :meth:`InMemoryChannel.try_recv` takes a waiting message with one lock where ``poll`` then
    ``recv`` take two (what :func:`~dtxfast.protocols.mpc.run_local` calls).
    """

    def __init__(self, parties: Iterable[str], *, record: bool = False) -> None:
        names = list(parties)
        if len(set(names)) != len(names) or len(names) < 2:
            raise ParameterError("an in-memory network needs at least two distinct party names")
        self._names = names
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._waiting = 0  # receivers blocked in _wait (guarded by the lock)
        self._queues: dict[tuple[str, str], deque[bytes]] = {
            (s, r): deque() for s in names for r in names if s != r
        }
        self._sent = dict.fromkeys(names, 0)
        self._received = dict.fromkeys(names, 0)
        self._channels = {n: InMemoryChannel(self, n) for n in names}
        self.transcript: list[tuple[str, str, bytes]] | None = [] if record else None

    @property
    def parties(self) -> list[str]:
        """The party names, in the order given."""
        return list(self._names)

    def channel(self, name: str) -> InMemoryChannel:
        """The endpoint of party ``name``."""
        try:
            return self._channels[name]
        except KeyError:
            raise ParameterError(f"no party named {name!r} in this network") from None

    def bytes_sent(self, name: str) -> int:
        """Payload bytes party ``name`` has sent so far."""
        return self._sent[name]

    def bytes_received(self, name: str) -> int:
        """Payload bytes party ``name`` has received so far."""
        return self._received[name]

    def reset_counters(self) -> None:
        """Set every byte counter back to zero (the transcript is kept)."""
        with self._lock:
            for n in self._names:
                self._sent[n] = 0
                self._received[n] = 0

    def pending(self) -> int:
        """Number of messages sent but not yet received (0 after a clean protocol run)."""
        with self._lock:
            return sum(len(q) for q in self._queues.values())

    # -- used by InMemoryChannel ---------------------------------------------------------------
    def _put(self, sender: str, receiver: str, queue: deque[bytes], data: BytesLike, owned: bool = False) -> None:
        # copy, as the caller may reuse its buffer; a buffer handed over (send_owned) is queued as
        # a read-only byte view of itself
        payload = memoryview(data).toreadonly().cast("B") if owned else bytes(data)
        with self._lock:
            queue.append(payload)  # type: ignore[arg-type]
            self._sent[sender] += len(payload)
            if self.transcript is not None:
                self.transcript.append((sender, receiver, bytes(payload)))
            if self._waiting:
                self._cond.notify_all()

    def _take(self, receiver: str, queue: deque[bytes]) -> bytes | None:
        with self._lock:
            if not queue:
                return None
            payload = queue.popleft()
            self._received[receiver] += len(payload)
            return payload

    def _wait(self, receiver: str, sender: str, queue: deque[bytes], timeout: float | None) -> bytes:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while not queue:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise ProtocolError(f"{receiver}: no message from {sender} within {timeout} s")
                self._waiting += 1
                try:
                    self._cond.wait(remaining)
                finally:
                    self._waiting -= 1
            payload = queue.popleft()
            self._received[receiver] += len(payload)
            return payload


class InMemoryChannel(Channel):
    """Endpoint of one party in an :class:`InMemoryNetwork`."""

    def __init__(self, network: InMemoryNetwork, name: str) -> None:
        self._net = network
        self.name = name
        # this endpoint's links by peer name (the network's queues, looked up once)
        self._out = {r: q for (s, r), q in network._queues.items() if s == name}
        self._in = {s: q for (s, r), q in network._queues.items() if r == name}

    def _link(self, links: dict[str, deque[bytes]], peer: str, outgoing: bool) -> deque[bytes]:
        try:
            return links[peer]
        except KeyError:
            pair = (self.name, peer) if outgoing else (peer, self.name)
            raise ParameterError(f"no link from {pair[0]!r} to {pair[1]!r} in this network") from None

    def send(self, peer: str, data: BytesLike) -> None:
        queue = self._out.get(peer)
        if queue is None:
            queue = self._link(self._out, peer, True)
        self._net._put(self.name, peer, queue, data)

    def send_owned(self, peer: str, data: BytesLike) -> None:
        """:meth:`send` without the copy: the receiver gets a read-only view of ``data``, which
        the caller hands over (it never writes to that buffer again)."""
        queue = self._out.get(peer)
        if queue is None:
            queue = self._link(self._out, peer, True)
        self._net._put(self.name, peer, queue, data, owned=True)

    def recv(self, peer: str, timeout: float | None = None) -> bytes:
        queue = self._in.get(peer)
        if queue is None:
            queue = self._link(self._in, peer, False)
        payload = self._net._take(self.name, queue)
        if payload is None:
            payload = self._net._wait(self.name, peer, queue, timeout)
        return payload

    def try_recv(self, peer: str) -> bytes | None:
        """The oldest unread message from ``peer``, or ``None`` at once if there is none."""
        queue = self._in.get(peer)
        if queue is None:
            queue = self._link(self._in, peer, False)
        return self._net._take(self.name, queue)

    def poll(self, peer: str) -> bool:
        queue = self._in.get(peer)
        if queue is None:
            queue = self._link(self._in, peer, False)
        return bool(queue)  # a deque's length is read atomically

    @property
    def bytes_sent(self) -> int:
        return self._net.bytes_sent(self.name)

    @property
    def bytes_received(self) -> int:
        return self._net.bytes_received(self.name)

    def __repr__(self) -> str:
        return f"InMemoryChannel({self.name!r})"
