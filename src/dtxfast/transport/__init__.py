"""Transports: implementations of :class:`dtxfast.protocols.channel.Channel` (L3).

* :mod:`dtxfast.transport.channel`: :class:`InMemoryNetwork` / :class:`InMemoryChannel`, every
  party in one process.
* :mod:`dtxfast.transport.tls`: :class:`TlsNode` / :class:`TlsChannel`, parties in different
  processes or machines over mutual TLS 1.3 bound to the Ed25519 node keys registered on the
  ledger (:class:`LedgerDirectory`).
"""

from __future__ import annotations

from ..protocols.channel import BytesLike, Channel
from .channel import InMemoryChannel, InMemoryNetwork
from .tls import LedgerDirectory, Peer, PeerDirectory, StaticDirectory, TlsChannel, TlsNode

__all__ = [
    "BytesLike",
    "Channel",
    "InMemoryChannel",
    "InMemoryNetwork",
    "LedgerDirectory",
    "Peer",
    "PeerDirectory",
    "StaticDirectory",
    "TlsChannel",
    "TlsNode",
]
