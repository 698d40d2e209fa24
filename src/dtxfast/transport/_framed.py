"""Length-framed message channels over connected sockets (the machinery under the networked channels).

:class:`FramedChannel` keeps the :class:`~dtxfast.protocols.channel.Channel` contract over one
connection (or one per direction) to each peer: every message is sent as a 4-byte big-endian
length and the bytes; a writer thread per peer drains an unbounded queue (``send`` never waits),
joining small messages into one write and handing large ones to the socket whole; a reader thread
per peer fills the peer's inbox, reading small frames through a 256 KiB buffer and large ones into
a reused buffer that is copied out once. :class:`~dtxfast.transport.tls.TlsChannel` runs it over
mutual TLS; :class:`~dtxfast.transport.stream.StreamChannel` over one plain TCP connection.
"""

from __future__ import annotations

import queue
import socket
import ssl
import struct
import threading
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

from ..errors import MalformedInput, ParameterError, ProtocolError
from ..protocols.channel import BytesLike, Channel

__all__ = ["MAX_FRAME", "FramedChannel"]

_FRAME = struct.Struct(">I")
#: the largest message a frame can carry
MAX_FRAME = (1 << 32) - 1
_COALESCE = 1 << 16  # messages below this size are joined into one write
_READ_BUFFER = 1 << 18
_KEEP_BUFFER = 1 << 26  # a reader keeps a buffer for large messages up to this size


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return exc.reason or str(exc)
    return str(exc) or type(exc).__name__


def _close_quietly(sock: Any) -> None:
    """Shut the connection down (waking a thread blocked reading it), then close it."""
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)  # not SSLSocket.shutdown: it drops the TLS state
    except OSError:
        pass
    try:
        sock.close()
    except OSError:  # pragma: no cover
        pass


class _Link:
    """Both directions to one peer: an outgoing queue with its writer thread, an inbox filled by a reader.

    ``wsock`` and ``rsock`` may be one socket (plain TCP is full duplex); two TLS connections
    otherwise, since an OpenSSL connection must not be used by two threads at once.
    """

    def __init__(self, channel: FramedChannel, peer: str, wsock: Any, rsock: Any) -> None:
        self.channel = channel
        self.peer = peer
        self.wsock, self.rsock = wsock, rsock
        self.shared = wsock is rsock
        self.out: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self.inbox: deque[bytes] = deque()
        self.cond = threading.Condition()
        self.error: str | None = None  # the link is broken: why
        self.eof = False  # the peer closed its side
        tag = f"{channel.session}/{channel.name}->{peer}"
        self.writer = threading.Thread(target=self._write_loop, name=f"dtx-w {tag}", daemon=True)
        self.reader = threading.Thread(target=self._read_loop, name=f"dtx-r {tag}", daemon=True)
        self.writer.start()
        self.reader.start()

    def _fail(self, why: str) -> None:
        with self.cond:
            if self.error is None:
                self.error = why
            self.cond.notify_all()

    def _write_loop(self) -> None:
        sock, out, pack = self.wsock, self.out, _FRAME.pack
        try:
            while True:
                item = out.get()
                if item is None:
                    break
                batch: list[bytes] = []
                size = 0
                stop = False
                while True:
                    batch.append(pack(len(item)))
                    if len(item) < _COALESCE:
                        batch.append(item)
                        size += len(item) + 4
                    else:  # large: the header rides with what is queued, the body goes whole
                        sock.sendall(b"".join(batch))
                        batch, size = [], 0
                        sock.sendall(item)
                    if size >= _COALESCE:
                        break
                    try:
                        nxt = out.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        stop = True
                        break
                    item = nxt
                if batch:
                    sock.sendall(b"".join(batch))
                if stop:
                    break
        except (OSError, ValueError) as exc:
            self._fail(f"sending to {self.peer} failed: {_reason(exc)}")
            return
        try:  # flushed: tell the peer we are done (TLS close_notify, or a TCP FIN)
            if hasattr(sock, "unwrap"):
                sock.settimeout(2.0)
                sock.unwrap()  # the peer closes on reading it, which ends this wait
            else:
                sock.shutdown(socket.SHUT_WR)
        except (OSError, ValueError):
            pass

    def _read_loop(self) -> None:
        sock, limit, unpack = self.rsock, self.channel.max_message, _FRAME.unpack_from
        buf = bytearray(_READ_BUFFER)
        view = memoryview(buf)
        start = end = 0
        big = bytearray(0)
        try:
            while True:
                while end - start < 4:
                    if len(buf) - start < 4:  # no room for a header after start: compact
                        view[: end - start] = view[start:end]
                        end -= start
                        start = 0
                    n = sock.recv_into(view[end:])
                    if not n:
                        if end != start:
                            raise ProtocolError(f"the link from {self.peer} ended inside a frame header")
                        with self.cond:  # close_notify (or FIN): the peer closed its side cleanly
                            self.eof = True
                            self.cond.notify_all()
                        if not self.shared:
                            _close_quietly(sock)
                        return
                    end += n
                (size,) = unpack(buf, start)
                start += 4
                if size > limit:
                    raise MalformedInput(f"frame of {size} bytes from {self.peer} exceeds {limit}")
                have = end - start
                if size <= have:
                    msg = bytes(view[start : start + size])
                    start += size
                elif size <= len(buf) - start or size <= len(buf) // 4:
                    # fits the buffer (after compaction if needed): keep reading into it
                    if size > len(buf) - start:
                        view[:have] = view[start:end]
                        start, end = 0, have
                    while end - start < size:
                        n = sock.recv_into(view[end:])
                        if not n:
                            raise ProtocolError(f"the link from {self.peer} ended inside a message")
                        end += n
                    msg = bytes(view[start : start + size])
                    start += size
                else:  # large: read into a reused buffer (no fresh pages per message), copy out once
                    if len(big) < size:
                        big = bytearray(size) if size <= _KEEP_BUFFER else bytearray(0)
                    target = big if len(big) >= size else bytearray(size)
                    bview = memoryview(target)[:size]
                    bview[:have] = view[start:end]
                    start = end = 0
                    got = have
                    while got < size:
                        n = sock.recv_into(bview[got:])
                        if not n:
                            raise ProtocolError(f"the link from {self.peer} ended inside a message")
                        got += n
                    msg = bytes(bview)
                    bview.release()
                    del target
                if start == end:
                    start = end = 0
                with self.cond:
                    self.inbox.append(msg)
                    self.cond.notify_all()
        except (OSError, ValueError, MalformedInput, ProtocolError) as exc:
            if self.channel.closed:
                return
            self._fail(f"the link from {self.peer} is broken: {_reason(exc)}")

    def close(self) -> None:
        self.out.put(None)
        self.writer.join(5)  # flushes, then close_notify
        _close_quietly(self.rsock)  # wakes the reader
        self.reader.join(5)
        _close_quietly(self.wsock)


class FramedChannel(Channel):
    """One party's endpoint over connected sockets, one link per peer (see the module docstring).

    Keeps the :class:`~dtxfast.protocols.channel.Channel` contract: ``send`` queues and returns,
    messages from one peer arrive in order, ``recv`` raises
    :class:`~dtxfast.errors.ProtocolError` on timeout, and at once when the link from that peer is
    broken (a tampered record, a reset, a truncated frame) or the peer closed its side with nothing
    left to read.

    Parameters
    ----------
    name, session : str
        This party's name and the session's (for messages).
    links : mapping of peer name to (writing socket, reading socket)
        Connected sockets; the same socket twice for a full-duplex connection.
    max_message : int
        Largest message accepted from a peer (a larger frame breaks the link).
    """

    def __init__(self, name: str, session: str, links: Mapping[str, tuple[Any, Any]],
                 max_message: int = MAX_FRAME) -> None:
        if not 0 < max_message <= MAX_FRAME:
            raise ParameterError(f"max_message must be in 1..{MAX_FRAME}")
        self.name = name
        self.session = session
        self.max_message = max_message
        self.closed = False
        self._sent = 0
        self._received = 0
        self._count_lock = threading.Lock()
        self._links = {p: _Link(self, p, w, r) for p, (w, r) in links.items()}

    @property
    def peers(self) -> list[str]:
        """The other parties of this session."""
        return sorted(self._links)

    def _link(self, peer: str) -> _Link:
        try:
            return self._links[peer]
        except KeyError:
            raise ParameterError(f"{self.name}: no peer named {peer!r} in session {self.session!r}") from None

    def send(self, peer: str, data: BytesLike) -> None:
        link = self._link(peer)
        payload = bytes(data)
        if len(payload) > self.max_message:
            raise ParameterError(f"a message is at most {self.max_message} bytes")
        if self.closed:
            raise ProtocolError(f"{self.name}: the channel is closed")
        if link.error is not None:
            raise ProtocolError(f"{self.name}: {link.error}")
        with self._count_lock:
            self._sent += len(payload)
        link.out.put(payload)

    def recv(self, peer: str, timeout: float | None = None) -> bytes:
        link = self._link(peer)
        deadline = None if timeout is None else time.monotonic() + timeout
        with link.cond:
            while not link.inbox:
                if link.error is not None:
                    raise ProtocolError(f"{self.name}: {link.error}")
                if link.eof:
                    raise ProtocolError(f"{self.name}: {peer} closed the channel")
                if self.closed:
                    raise ProtocolError(f"{self.name}: the channel is closed")
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise ProtocolError(f"{self.name}: no message from {peer} within {timeout} s")
                link.cond.wait(remaining)
            payload = link.inbox.popleft()
        with self._count_lock:
            self._received += len(payload)
        return payload

    def poll(self, peer: str) -> bool:
        link = self._link(peer)
        with link.cond:
            return bool(link.inbox)

    @property
    def bytes_sent(self) -> int:
        return self._sent

    @property
    def bytes_received(self) -> int:
        return self._received

    def close(self) -> None:
        """Send what is queued, then close every link (idempotent)."""
        if self.closed:
            return
        self.closed = True
        for link in self._links.values():
            link.close()
            with link.cond:
                link.cond.notify_all()

    def __enter__(self) -> FramedChannel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, session={self.session!r}, peers={self.peers})"
