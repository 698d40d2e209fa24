"""A two-party :class:`~dtxfast.protocols.channel.Channel` over one plain TCP connection.

:class:`StreamChannel` frames messages the same way as the mutual-TLS channel
(:mod:`dtxfast.transport._framed`) over a single full-duplex TCP connection that one side made
with :func:`listen_once` and the other with :func:`connect`. It is **neither authenticated nor
encrypted**: it serves protocols whose messages are safe to show to the network and a peer that
is trusted by where it is (``dtx psi --role signer/--role requester`` on one host, as before).
Everything between nodes of a deployment uses :class:`~dtxfast.transport.tls.TlsChannel`.

Examples
--------
>>> import threading
>>> box = {}
>>> def signer():
...     sock = listen_once("127.0.0.1:0", on_listening=lambda a: box.update(address=a))
...     with StreamChannel(sock, "signer", "requester") as ch:
...         ch.send("requester", ch.recv("requester", timeout=10).upper())
>>> t = threading.Thread(target=signer)
>>> t.start()
>>> while "address" not in box:
...     pass
>>> with StreamChannel(connect(box["address"]), "requester", "signer") as ch:
...     ch.send("signer", b"ids")
...     ch.recv("signer", timeout=10)
b'IDS'
>>> t.join()
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

from ..errors import ProtocolError
from ._framed import MAX_FRAME, FramedChannel
from .tls import parse_address

__all__ = ["StreamChannel", "connect", "listen_once"]


def listen_once(address: str, *, on_listening: Callable[[str], None] | None = None,
                timeout: float | None = None) -> socket.socket:
    """Listen on ``HOST:PORT`` (port 0: any free port), accept one connection and stop listening.

    Parameters
    ----------
    address : str
        Where to listen.
    on_listening : callable, optional
        Called with the bound ``HOST:PORT`` once the socket listens (e.g. to print a readiness line).
    timeout : float, optional
        Seconds to wait for the connection (default: forever); ProtocolError after that.
    """
    host, port = parse_address(address)
    with socket.create_server((host, port)) as srv:
        h, p = srv.getsockname()[:2]
        if on_listening is not None:
            on_listening(f"{h}:{p}")
        srv.settimeout(timeout)
        try:
            sock, _ = srv.accept()
        except TimeoutError:
            raise ProtocolError(f"nobody connected to {h}:{p} within {timeout} s") from None
    sock.settimeout(None)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def connect(address: str, *, timeout: float = 10.0) -> socket.socket:
    """Connect to ``HOST:PORT``, retrying while nobody listens there yet (up to ``timeout`` s)."""
    host, port = parse_address(address)
    deadline = time.monotonic() + timeout
    while True:
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
            break
        except ConnectionRefusedError:
            if time.monotonic() >= deadline:
                raise ProtocolError(f"nobody listens at {address}") from None
            time.sleep(0.05)
        except OSError as exc:
            raise ProtocolError(f"cannot connect to {address}: {exc}") from None
    sock.settimeout(None)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class StreamChannel(FramedChannel):
    """Party ``name``'s endpoint of a two-party channel to ``peer`` over a connected TCP socket.

    Parameters
    ----------
    sock : socket.socket
        A connected stream socket (from :func:`listen_once` or :func:`connect`); the channel owns
        it and closes it in :meth:`close`.
    name, peer : str
        This party's name and the other party's.
    max_message : int
        Largest message accepted from the peer.
    """

    def __init__(self, sock: socket.socket, name: str, peer: str, *, max_message: int = MAX_FRAME) -> None:
        super().__init__(name, f"{name}-{peer}", {peer: (sock, sock)}, max_message)
