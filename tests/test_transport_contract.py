"""The Channel contract, one suite run against the in-memory network and the mutual-TLS channel.

For ``tls`` the other party is a real second process on loopback (``PeerProcess``) that echoes
every message back; for ``memory`` it is a thread doing the same over an ``InMemoryNetwork``, for
``stream`` a thread at the other end of a plain TCP connection (``StreamChannel``).
Each backend's processes and threads are stopped by the fixture's finalizer.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from transport_helpers import ident, keys, seed

from dtxfast.errors import ParameterError, ProtocolError
from dtxfast.transport._peer import PeerProcess
from dtxfast.protocols.channel import Channel
from dtxfast.transport.channel import InMemoryNetwork
from dtxfast.transport.stream import StreamChannel, connect, listen_once
from dtxfast.transport.tls import Peer, StaticDirectory, TlsNode

_sessions = itertools.count()


def _memory_echo() -> tuple[Channel, Callable[[], None]]:
    net = InMemoryNetwork(["A", "B"])
    b = net.channel("B")

    def loop() -> None:
        while True:
            msg = b.recv("A")
            if msg == b"!stop":
                return
            b.send("A", msg)

    t = threading.Thread(target=loop, daemon=True)
    t.start()

    def stop() -> None:
        net.channel("A").send("B", b"!stop")
        t.join(10)

    return net.channel("A"), stop


def _stream_echo() -> tuple[Channel, Callable[[], None]]:
    """The echo party on a thread of this process, over one plain TCP connection."""
    box: dict = {}
    ready = threading.Event()

    def loop() -> None:
        sock = listen_once("127.0.0.1:0", on_listening=lambda a: (box.update(address=a), ready.set()))
        with StreamChannel(sock, "B", "A") as b:
            while True:
                try:
                    msg = b.recv("A")
                except ProtocolError:
                    return
                if msg == b"!stop":
                    return
                b.send("A", msg)

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    assert ready.wait(30)
    a = StreamChannel(connect(box["address"]), "A", "B")

    def stop() -> None:
        if not a.closed:
            a.send("B", b"!stop")
        a.close()
        t.join(10)

    return a, stop


@pytest.fixture(scope="module", params=["memory", "stream", "tls"])
def open_echo(request) -> Iterator[Callable[[], tuple[Channel, Callable[[], None]]]]:
    """A factory of fresh channels whose one peer, "B", echoes every message back."""
    if request.param in ("memory", "stream"):
        stops: list[Callable[[], None]] = []

        def make() -> tuple[Channel, Callable[[], None]]:
            ch, stop = (_memory_echo if request.param == "memory" else _stream_echo)()
            stops.append(stop)
            return ch, stop

        yield make
        for s in stops:
            s()
        return
    a, b = ident(1), ident(2)
    directory = keys(a, b)
    peer = PeerProcess(seed(2), directory)
    node = TlsNode(a, StaticDirectory(directory))
    channels: list = []

    def make_tls() -> tuple[Channel, Callable[[], None]]:
        session = f"contract-{next(_sessions)}"
        peers = {"A": Peer(a.node_id), "B": Peer(b.node_id, peer.address)}
        peer.command("echo", session, "B", peers, 30.0)
        ch = node.open_channel(session, "A", peers, timeout=30)
        channels.append(ch)

        def stop() -> None:
            ch.send("B", b"!stop")
            ch.close()

        return ch, stop

    try:
        yield make_tls
    finally:
        for ch in channels:
            ch.close()
        node.close()
        peer.stop()


@pytest.fixture(scope="module")
def echo(open_echo) -> Channel:
    """One channel per backend shared by the tests that leave nothing unread."""
    ch, _ = open_echo()
    return ch


SIZES = [0, 1, 7, 4095, 65535, 65536, 70_000, 300_000, (1 << 20) + 3]


def test_messages_from_one_peer_arrive_in_order(echo):
    rng = np.random.default_rng(0)
    msgs = [rng.integers(0, 256, size=n, dtype=np.uint8).tobytes() for n in SIZES * 3]
    for m in msgs:
        echo.send("B", m)
    got = [echo.recv("B", timeout=60) for _ in msgs]
    assert got == msgs
    assert all(type(g) is bytes for g in got)


def test_send_returns_before_the_peer_reads(echo):
    block = bytes(1 << 20)
    for _ in range(24):  # 24 MiB queued without reading anything back
        echo.send("B", block)
    assert all(echo.recv("B", timeout=60) == block for _ in range(24))


def test_recv_times_out_with_protocol_error(echo):
    with pytest.raises(ProtocolError, match="no message"):
        echo.recv("B", timeout=0.2)
    assert not echo.poll("B")


def test_poll_tells_without_waiting(echo):
    assert not echo.poll("B")
    echo.send("B", b"ping")
    assert echo.recv("B", timeout=30) == b"ping"
    assert not echo.poll("B")
    echo.send("B", b"x")
    echo.send("B", b"!")  # the echo of "!" arrives after the echo of "x"
    assert echo.recv("B", timeout=30) == b"x"
    for _ in range(3000):  # until the echo is there (at most ~30 s)
        if echo.poll("B"):
            break
        time.sleep(0.01)
    else:
        pytest.fail("poll never became true")
    assert echo.recv("B", timeout=0) == b"!"


def test_try_recv_returns_a_waiting_message_or_none_at_once(echo):
    assert echo.try_recv("B") is None
    echo.send("B", b"one")
    echo.send("B", b"two")
    got: list[bytes] = []
    for _ in range(3000):  # until both echoes are there (at most ~30 s)
        m = echo.try_recv("B")
        if m is not None:
            got.append(m)
            if len(got) == 2:
                break
        else:
            time.sleep(0.01)
    assert got == [b"one", b"two"] and all(type(g) is bytes for g in got)
    assert echo.try_recv("B") is None and not echo.poll("B")
    with pytest.raises(ParameterError):
        echo.try_recv("Z")


def test_in_memory_network_under_threads_loses_and_reorders_nothing():
    """Four parties on four threads: each sends numbered messages to every other party while
    blocking in recv for theirs (so sends race with waiting receivers); every message arrives
    once, in order per sender, and the counters add up. A lost wake-up fails on the timeout."""
    names = ["A", "B", "C", "D"]
    net = InMemoryNetwork(names, record=True)
    count = 300
    errors: list[BaseException] = []

    def party(me: str) -> None:
        ch = net.channel(me)
        peers = [n for n in names if n != me]
        try:
            for i in range(count):
                for peer in peers:
                    ch.send(peer, f"{me}>{peer}:{i}".encode())
                for peer in peers:  # alternate blocking recv and try_recv
                    m = ch.recv(peer, timeout=30) if i % 2 else None
                    while m is None:
                        m = ch.try_recv(peer)
                        if m is None:
                            m = ch.recv(peer, timeout=30)
                    assert m == f"{peer}>{me}:{i}".encode()
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=party, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and not any(t.is_alive() for t in threads)
    assert net.pending() == 0
    assert net.transcript is not None and len(net.transcript) == 4 * 3 * count
    for n in names:
        size = sum(len(f"{n}>{p}:{i}") for p in names if p != n for i in range(count))
        assert net.bytes_sent(n) == size
        assert net.bytes_received(n) == sum(len(f"{p}>{n}:{i}") for p in names if p != n for i in range(count))


def test_byte_counters_count_payload_only(open_echo):
    ch, stop = open_echo()
    msgs = [b"", b"abc", bytes(100_000)]
    for m in msgs:
        ch.send("B", m)
    for m in msgs:
        assert ch.recv("B", timeout=30) == m
    total = sum(map(len, msgs))
    assert (ch.bytes_sent, ch.bytes_received) == (total, total)
    stop()


def test_send_copies_the_callers_buffer(echo):
    buf = bytearray(b"original")
    echo.send("B", buf)
    buf[:] = b"changed!"
    arr = np.arange(10, dtype=np.uint64)
    echo.send("B", memoryview(arr))
    arr[:] = 0
    assert echo.recv("B", timeout=30) == b"original"
    assert np.array_equal(np.frombuffer(echo.recv("B", timeout=30), dtype=np.uint64), np.arange(10))


def test_send_owned_delivers_the_buffer(echo):
    arr = np.arange(70_000, dtype=np.uint64)
    echo.send_owned("B", memoryview(arr))
    assert np.array_equal(np.frombuffer(echo.recv("B", timeout=30), dtype=np.uint64), np.arange(70_000))


def test_in_memory_send_owned_queues_a_read_only_view_not_a_copy():
    net = InMemoryNetwork(["A", "B"], record=True)
    arr = np.arange(1000, dtype=np.uint64)
    arr.flags.writeable = False
    net.channel("A").send_owned("B", memoryview(arr))
    got = net.channel("B").recv("A")
    assert isinstance(got, memoryview) and got.readonly and got.nbytes == arr.nbytes
    view = np.frombuffer(got, dtype=np.uint64)
    assert np.shares_memory(view, arr) and np.array_equal(view, arr)
    with pytest.raises(ValueError):
        view[0] = 1
    # the counters count bytes; a recorded transcript keeps its own copy as bytes
    assert net.bytes_sent("A") == net.bytes_received("B") == 8000
    assert net.transcript == [("A", "B", arr.tobytes())]


def test_unknown_peer_is_a_parameter_error(echo):
    with pytest.raises(ParameterError):
        echo.send("Z", b"x")
    with pytest.raises(ParameterError):
        echo.recv("Z", timeout=0)
    with pytest.raises(ParameterError):
        echo.poll("Z")


@given(st.lists(st.binary(max_size=3000).filter(lambda m: m != b"!stop"), max_size=12))  # "!stop" ends the echo
def test_any_sequence_round_trips(echo, msgs):
    for m in msgs:
        echo.send("B", m)
    assert [echo.recv("B", timeout=30) for _ in msgs] == msgs
