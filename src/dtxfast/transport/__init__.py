"""Transports: implementations of :class:`dtxfast.protocols.channel.Channel` (L3).

* :mod:`dtxfast.transport.channel`: :class:`InMemoryNetwork` / :class:`InMemoryChannel`, every
  party in one process.
"""

from __future__ import annotations

from ..protocols.channel import BytesLike, Channel
from .channel import InMemoryChannel, InMemoryNetwork

__all__ = ["BytesLike", "Channel", "InMemoryChannel", "InMemoryNetwork"]
