"""Drive party programs (generators of :class:`~dtxfast.protocols.mpc.MPCParty` operations).

A program yields the channel name of the peer whose next message it needs and is resumed with
that message. :func:`run_local` interleaves several programs in one thread (the in-process run of
tests and benchmarks); :func:`run_blocking` drives one program against any channel (one party per
process, e.g. over the node network).
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any

from ...errors import ProtocolError
from ..channel import Channel

__all__ = ["run_blocking", "run_local"]


def run_local(programs: Sequence[Generator[str, bytes, Any]], channels: Sequence[Channel]) -> list[Any]:
    """Run the programs of all parties in this thread until each returns; return their results.

    ``channels[k]`` is the endpoint of ``programs[k]``. Raises
    :class:`~dtxfast.errors.ProtocolError` if every unfinished program waits for a message that
    nobody sent (a protocol bug).
    """
    if len(programs) != len(channels):
        raise ProtocolError("one channel per program is needed")
    results: list[Any] = [None] * len(programs)
    waiting: list[str | None] = [None] * len(programs)
    done = [False] * len(programs)

    def advance(k: int, message: bytes | None) -> None:
        try:
            waiting[k] = programs[k].send(message)  # type: ignore[arg-type]
        except StopIteration as stop:
            done[k] = True
            results[k] = stop.value

    for k in range(len(programs)):
        advance(k, None)
    take = [ch.try_recv for ch in channels]
    while not all(done):
        progressed = False
        for k in range(len(programs)):
            while not done[k]:
                message = take[k](waiting[k])  # type: ignore[arg-type]
                if message is None:
                    break
                advance(k, message)
                progressed = True
        if not progressed:
            stuck = {channels[k].name: waiting[k] for k in range(len(programs)) if not done[k]}
            raise ProtocolError(f"deadlock: parties wait for messages nobody sent: {stuck}")
    return results


def run_blocking(program: Generator[str, bytes, Any], channel: Channel, timeout: float | None = None) -> Any:
    """Run one party's program, blocking on ``channel.recv`` for each message it waits for."""
    try:
        peer = program.send(None)  # type: ignore[arg-type]
        while True:
            peer = program.send(channel.recv(peer, timeout))
    except StopIteration as stop:
        return stop.value
