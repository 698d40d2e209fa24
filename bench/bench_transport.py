"""Transport benchmarks: the networked channel between two processes beside bare TLS and raw TCP.

Every row sends the same messages from this process to a second process on loopback, which reads
them and answers with one short acknowledgement after the last; a timed call is one batch
(messages sent, all read by the other process, ack received). Connections are set up outside the
timed part.

Groups
------
``transport.small``  64-byte messages: ``msgs/s``.
``transport.1mib``   1 MiB messages: ``MiB/s``.

Rows (impl)
-----------
``dtxfast``     :class:`dtxfast.transport.tls.TlsChannel`: mutual TLS 1.3 bound to the node keys,
                length-framed messages, a writer thread and a reader thread per direction.
``floor-tls``   a bare TLS 1.3 stream through Python's :mod:`ssl` (same certificates, same cipher):
                the sender ``sendall`` s each message's bytes, no framing, no queue; the receiver
                reads into one reused buffer. The encryption the channel cannot avoid.
``raw-tcp``     the same stream without TLS (for scale: what encryption costs on this machine).
``asyncio``     the candidate stack not chosen: asyncio streams over the same TLS, the same framing
                (``write`` + ``drain`` per message, ``readexactly`` on the other side).

Both processes use their own threads; the rows carry ``threads=2`` (one process each side) so
they compare at equal thread counts. Run: ``dtx bench transport`` (``--quick``: fewer messages).
"""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest

from dtxfast.ledger.identity import NodeIdentity
from dtxfast.transport._peer import PeerProcess
from dtxfast.transport.tls import (
    Peer,
    StaticDirectory,
    TlsNode,
    _read_prelude,
    _send_prelude,
    parse_address,
)

from ._util import QUICK, measure

SMALL, SMALL_COUNT = 64, (2_000 if QUICK else 50_000)
BIG, BIG_COUNT = 1 << 20, (16 if QUICK else 256)
CASES = {"transport.small": (SMALL, SMALL_COUNT), "transport.1mib": (BIG, BIG_COUNT)}
IMPLS = ["dtxfast", "floor-tls", "raw-tcp", "asyncio"]

_SEEDS = (b"\x01" * 32, b"\x02" * 32)


@pytest.fixture(scope="module")
def pair():
    """This process's node and a peer process's node, each knowing the other's key."""
    me, other = (NodeIdentity.from_seed(s) for s in _SEEDS)
    keys = {i.node_id: i.public_key_bytes for i in (me, other)}
    node = TlsNode(me, StaticDirectory(keys))
    peer = PeerProcess(_SEEDS[1], keys)
    try:
        yield node, peer
    finally:
        node.close()
        peer.stop()


def _record(benchmark, impl: str, group: str, size: int, count: int, fn) -> None:
    mib = size * count / (1 << 20)
    if group == "transport.small":
        measure(benchmark, fn, impl=impl, size=size, unit="msgs/s", per=count, rounds=5, threads=2)
    else:
        measure(benchmark, fn, impl=impl, size=size, unit="MiB/s", per=count, rounds=5, mib=mib, threads=2)


def _stream(node: TlsNode, peer: PeerProcess, kind: str):
    peer.command(kind)
    _, address = peer.reply()
    sock = socket.create_connection(parse_address(address))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if kind == "tls":
        _send_prelude(sock, node._tls.cert)
        cert = _read_prelude(sock)
        sock = node._tls.context(False, cert).wrap_socket(sock, server_side=False)
    return sock


@pytest.mark.benchmark(group="transport")
@pytest.mark.parametrize("group", list(CASES))
@pytest.mark.parametrize("impl", IMPLS)
def test_transport(benchmark, pair, impl, group):
    node, peer = pair
    size, count = CASES[group]
    benchmark.group = group
    payload = bytes(range(256)) * (size // 256) if size >= 256 else b"m" * size
    peers = {"A": Peer(node.node_id), "B": Peer(peer.node_id, peer.address)}

    if impl == "dtxfast":
        session = f"bench-{group}"
        peer.command("sink", session, "B", peers, 30.0)
        ch = node.open_channel(session, "A", peers)
        head = struct.pack(">Q", count)

        def run():
            ch.send("B", head)
            for _ in range(count):
                ch.send("B", payload)
            if ch.recv("B", timeout=120) != b"ok":
                raise AssertionError("bad ack")

        try:
            _record(benchmark, impl, group, size, count, run)
        finally:
            ch.send("B", b"!stop")
            ch.close()
        return

    if impl in ("floor-tls", "raw-tcp"):
        sock = _stream(node, peer, "tls" if impl == "floor-tls" else "tcp")
        total = struct.pack(">Q", size * count)

        def run():
            sock.sendall(total)
            for _ in range(count):
                sock.sendall(payload)
            if sock.recv(1) != b"k":
                raise AssertionError("bad ack")

        try:
            _record(benchmark, impl, group, size, count, run)
        finally:
            sock.close()
        return

    # asyncio streams over the same TLS
    peer.command("asyncio", node._tls.cert)
    _, address = peer.reply()
    host, port = parse_address(address)
    loop = asyncio.new_event_loop()
    cert = _peer_cert(node, peer)
    ctx = node._tls.context(False, cert)
    reader, writer = loop.run_until_complete(asyncio.open_connection(host, port, ssl=ctx))

    async def batch():
        writer.write(struct.pack(">Q", count))
        for _ in range(count):
            writer.write(struct.pack(">I", size))
            writer.write(payload)
            await writer.drain()
        if await reader.readexactly(1) != b"k":
            raise AssertionError("bad ack")

    try:
        _record(benchmark, impl, group, size, count, lambda: loop.run_until_complete(batch()))
    finally:
        writer.close()
        loop.close()


def _peer_cert(node: TlsNode, peer: PeerProcess) -> bytes:
    """The peer's certificate (it is a function of its key: rebuild it from the seed)."""
    from dtxfast.transport.tls import node_certificate

    return node_certificate(NodeIdentity.from_seed(_SEEDS[1]))
