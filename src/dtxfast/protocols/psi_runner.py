"""Run one side of two-party PSI over any :class:`~dtxfast.protocols.channel.Channel`.

:func:`run_signer` and :func:`run_requester` are the two halves of
:func:`~dtxfast.protocols.psi.run_two_party` for parties in different processes. First the
handshake (:func:`greet_requester`, :func:`greet_signer`): the signer sends its HELLO, the
requester checks it and answers with its own HELLO, the signer checks that; a side that refuses
the other's HELLO sends ``REFUSE`` with the reason and raises, before either did any work. Then
the signer sends its own tags and answers each blinded chunk; the requester keeps ``window``
requests in flight (so the signer's CPU never waits for a round trip), and when it knows the
intersection it sends one empty message, which ends the signer's run. Every message is a PSI
message of :mod:`dtxfast.protocols.psi` except that final empty one.

OT mode after the same handshake: the requester sends ``SETUP`` and waits for the signer's
``EXT``; then it streams every row of ``U`` (nothing to wait for: the signer answers none of
them), the signer, once the last row arrived, sends its OPRF values, and the requester matches
them and sends the empty message.

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

A requester that wants another mode than the signer runs stops at the signer's HELLO, and the
signer learns why:

>>> from dtxfast.errors import ProtocolError
>>> seen = []
>>> def serve():
...     try:
...         run_signer(signer, net.channel("s"), "r")
...     except ProtocolError as exc:
...         seen.append(str(exc))
>>> t = threading.Thread(target=serve)
>>> t.start()
>>> run_requester(PSIRequester(["u1"], mode="rsa"), net.channel("r"), "s")
Traceback (most recent call last):
...
dtxfast.errors.ProtocolError: the signer runs ecdh PSI, this requester wants rsa; nothing was computed
>>> t.join()
>>> seen
['the requester refused the run: the signer runs ecdh PSI, this requester wants rsa; nothing was computed']
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import DtxError, ParameterError, ProtocolError
from .channel import Channel
from .psi import Mode, PSIRequester, PSISigner, is_refusal, refusal

__all__ = ["DONE", "accept_requester", "greet_requester", "greet_signer", "run_requester", "run_signer",
           "send_requests", "serve_requests"]

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
    greet_requester(signer, channel, peer, timeout=timeout)
    if signer.mode == Mode.OT:
        _serve_ot(signer, channel, peer, timeout=timeout)
        return int(signer.requests_served)
    for msg in signer.signer_messages():
        channel.send(peer, msg)
    serve_requests(signer, channel, peer, timeout=timeout)
    return int(signer.requests_served)


def _serve_ot(signer: PSISigner, channel: Channel, peer: str, *, timeout: float | None) -> None:
    """OT mode after the handshake: SETUP in, EXT out; the rows of U in; once the last row
    arrived, the signer's OPRF values out; then wait for the requester's DONE."""
    sent = False
    while True:
        frame = channel.recv(peer, timeout=timeout)
        if frame == DONE:
            if not sent:
                raise ProtocolError("the requester stopped before the signer's OPRF values")
            return
        reply = signer.receive(frame)
        if reply is not None:
            channel.send(peer, reply)
        if not sent and signer._ot is not None and signer._ot.complete:
            for msg in signer.signer_messages():
                channel.send(peer, msg)
            sent = True


def _take_or_refuse(channel: Channel, peer: str, frame: bytes, take: Callable[[bytes], object]) -> None:
    """``take(frame)``; if it raises, tell ``peer`` why with a ``REFUSE`` (best effort) and re-raise."""
    try:
        take(frame)
    except DtxError as exc:
        if not is_refusal(frame):
            try:
                channel.send(peer, refusal(str(exc)))
            except (DtxError, OSError):
                pass  # the peer is gone: the error stands on its own
        raise


def greet_requester(signer: PSISigner, channel: Channel, peer: str, *, timeout: float | None = None) -> None:
    """The signer's half of the handshake: its HELLO out, the requester's HELLO in and checked
    (:func:`accept_requester`)."""
    channel.send(peer, signer.hello())
    accept_requester(signer, channel, peer, timeout=timeout)


def accept_requester(signer: PSISigner, channel: Channel, peer: str, *, timeout: float | None = None) -> None:
    """Take and check the requester's HELLO (mode, key, number of ids); on a mismatch send
    ``REFUSE`` and raise.

    Raises
    ------
    ProtocolError
        The requester wants another mode, holds more ids than ``max_requests``, or refused.
    KeyMismatch, MalformedInput
        Its HELLO names another key, or does not parse.
    """
    _take_or_refuse(channel, peer, channel.recv(peer, timeout=timeout), signer.receive)


def greet_signer(requester: PSIRequester, channel: Channel, peer: str, *, timeout: float | None = None) -> None:
    """The requester's half of the handshake: take and check the signer's HELLO (on a mismatch
    send ``REFUSE`` and raise), then answer with the requester's HELLO."""
    _take_or_refuse(channel, peer, channel.recv(peer, timeout=timeout), requester.receive)
    channel.send(peer, requester.hello())


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
    greet_signer(requester, channel, peer, timeout=timeout)
    if requester.mode == Mode.OT:
        return _request_ot(requester, channel, peer, timeout=timeout, on_progress=on_progress)
    while not requester.signer_values_complete:  # the signer's own tags follow its HELLO
        requester.receive(channel.recv(peer, timeout=timeout))
    send_requests(requester, channel, peer, window=window, timeout=timeout, on_progress=on_progress)
    if not requester.done:
        raise ProtocolError("the run ended before the intersection was known")
    channel.send(peer, DONE)
    return requester.intersection().to_list()


def _request_ot(requester: PSIRequester, channel: Channel, peer: str, *, timeout: float | None,
                on_progress: Callable[[int, int], None] | None) -> list[bytes]:
    """OT mode after the handshake: SETUP out, EXT in, every row of U out (no answers to wait
    for), the signer's OPRF values in; then DONE."""
    channel.send(peer, requester.setup_message())
    requester.receive(channel.recv(peer, timeout=timeout))
    total = requester.progress[1]
    for i, msg in enumerate(requester.requests()):
        channel.send(peer, msg)
        if on_progress is not None:
            on_progress(i + 1, total)
    while not requester.done:
        requester.receive(channel.recv(peer, timeout=timeout))
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
