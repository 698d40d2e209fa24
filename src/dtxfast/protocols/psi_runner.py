"""Run one side of two-party PSI over any :class:`~dtxfast.protocols.channel.Channel`.

:func:`run_signer` and :func:`run_requester` are the two halves of
:func:`~dtxfast.protocols.psi.run_two_party` for parties in different processes: the signer sends
its HELLO and its own tags, then answers each blinded chunk; the requester keeps ``window``
requests in flight (so the signer's CPU never waits for a round trip), and when it knows the
intersection it sends one empty message, which ends the signer's run. Every message is a PSI
message of :mod:`dtxfast.protocols.psi` except that final empty one.

Examples
--------
>>> import threading
>>> from dtxfast.crypto.ecdh import ECDHMaskKey
>>> from dtxfast.protocols.psi import PSIRequester, PSISigner
>>> from dtxfast.transport.channel import InMemoryNetwork
>>> net = InMemoryNetwork(["r", "s"])
>>> signer = PSISigner(["u1", "u2", "u3"], ECDHMaskKey.generate())
>>> t = threading.Thread(target=run_signer, args=(signer, net.channel("s"), "r"))
>>> t.start()
>>> requester = PSIRequester(["u3", "u9", "u1"])
>>> run_requester(requester, net.channel("r"), "s")
[b'u3', b'u1']
>>> t.join()
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import ParameterError, ProtocolError
from .channel import Channel
from .psi import PSIRequester, PSISigner

__all__ = ["DONE", "run_requester", "run_signer", "send_requests", "serve_requests"]

#: the requester's last message: it has every answer it needs
DONE = b""


def run_signer(signer: PSISigner, channel: Channel, peer: str, *, timeout: float | None = None) -> int:
    """Serve one requester until it says it is done; returns the number of blinded ids signed.

    Raises
    ------
    ProtocolError
        The requester went away (or sent nothing for ``timeout`` seconds) before it was done, or
        sent a malformed message.
    """
    channel.send(peer, signer.hello())
    for msg in signer.signer_messages():
        channel.send(peer, msg)
    serve_requests(signer, channel, peer, timeout=timeout)
    return int(signer.requests_served)


def serve_requests(signer: PSISigner, channel: Channel, peer: str, *, timeout: float | None = None) -> None:
    """Answer ``peer``'s blinded chunks until it says it is done (whatever the signer sent before:
    :func:`run_signer` sends its HELLO and own tags first; a signer serving a second requester in
    a three-party alignment has already sent them)."""
    while True:
        frame = channel.recv(peer, timeout=timeout)
        if frame == DONE:
            return
        reply = signer.receive(frame)
        if reply is not None:
            channel.send(peer, reply)


def run_requester(requester: PSIRequester, channel: Channel, peer: str, *, window: int = 2,
                  timeout: float | None = None,
                  on_progress: Callable[[int, int], None] | None = None) -> list[bytes]:
    """Run the requester against a signer on ``peer``; returns the intersection (requester's order).

    Parameters
    ----------
    window : int, default 2
        Blinded chunks in flight at once.
    timeout : float, optional
        Seconds to wait for any one message of the signer.
    on_progress : callable, optional
        ``on_progress(chunks_done, chunks_total)`` after each answered chunk.
    """
    if window < 1:
        raise ParameterError("window must be at least 1")
    requester.receive(channel.recv(peer, timeout=timeout))  # HELLO
    while not requester.signer_values_complete:  # the signer's own tags follow its HELLO
        requester.receive(channel.recv(peer, timeout=timeout))
    send_requests(requester, channel, peer, window=window, timeout=timeout, on_progress=on_progress)
    if not requester.done:
        raise ProtocolError("the run ended before the intersection was known")
    channel.send(peer, DONE)
    return requester.intersection().to_list()


def send_requests(requester: PSIRequester, channel: Channel, peer: str, *, window: int = 2,
                  timeout: float | None = None,
                  on_progress: Callable[[int, int], None] | None = None) -> None:
    """Send every blinded chunk of ``requester`` (``window`` in flight) and take every answer.

    The caller then sends the final empty message (:data:`DONE`) — :func:`run_requester` once it
    knows the intersection; a requester that completes it with another party's relay right after.
    """
    if window < 1:
        raise ParameterError("window must be at least 1")
    total = requester.progress[1]
    it = requester.requests()
    open_, done, more = 0, 0, True
    while more or open_:
        while more and open_ < window:
            try:
                channel.send(peer, next(it))
                open_ += 1
            except StopIteration:
                more = False
        if open_:
            requester.receive(channel.recv(peer, timeout=timeout))
            open_ -= 1
            done += 1
            if on_progress is not None:
                on_progress(done, total)
