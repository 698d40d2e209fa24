"""The mutual-TLS channel under attack, and its binding to the keys registered on the ledger.

The target is a real second process on loopback (``PeerProcess``) holding node B; the attackers
run in this process. Each attack must end in a typed error (no hang) and, where the listening
node is the one refusing, in a refusal line on that node.
"""

from __future__ import annotations

import itertools
import socket
import ssl

import pytest
from transport_helpers import Relay, ident, keys, seed

from dtxfast.errors import DtxError, ParameterError, ProtocolError, Unauthorized
from dtxfast.ledger import MemoryLedger, RegisterNode
from dtxfast.transport._peer import PeerProcess
from dtxfast.transport.tls import (
    LedgerDirectory,
    Peer,
    StaticDirectory,
    TlsNode,
    _cert_key,
    _Identity,
    _read_prelude,
    _send_prelude,
    node_certificate,
)

A, B, C, X = ident(1), ident(2), ident(3), ident(9)  # X is never registered anywhere
_sessions = itertools.count()


@pytest.fixture(scope="module")
def peer():
    """Node B in its own process; it knows A and C (registered), not X."""
    p = PeerProcess(seed(2), keys(A, B, C))
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture
def node_a():
    n = TlsNode(A, StaticDirectory(keys(A, B, C)))
    try:
        yield n
    finally:
        n.close()


def _echo_session(peer: PeerProcess, *, wait: float = 30.0) -> tuple[str, dict[str, Peer]]:
    session = f"tls-{next(_sessions)}"
    peers = {"A": Peer(A.node_id), "B": Peer(B.node_id, peer.address)}
    peer.command("echo", session, "B", peers, wait)
    return session, peers


def test_certificate_carries_the_node_key():
    cert = node_certificate(A)
    assert _cert_key(cert) == A.public_key_bytes
    assert node_certificate(A) == cert  # deterministic


def test_round_trip_with_a_real_peer_and_clean_close(peer, node_a):
    session, peers = _echo_session(peer)
    ch = node_a.open_channel(session, "A", peers)
    ch.send("B", b"hello")
    assert ch.recv("B", timeout=30) == b"hello"
    ch.send("B", b"!stop")  # the peer closes its side: recv raises at once, not after the timeout
    with pytest.raises(ProtocolError, match="closed the channel"):
        ch.recv("B", timeout=600)
    ch.close()


def test_unregistered_key_is_refused(peer):
    intruder = TlsNode(X, StaticDirectory(keys(A, B, X)))
    try:
        session, peers = _echo_session(peer, wait=2)
        with pytest.raises(DtxError):
            intruder.open_channel(session, "A", {"A": Peer(X.node_id), "B": peers["B"]}, timeout=10)
    finally:
        intruder.close()
    assert any(X.node_id in line and "not known" in line for line in peer.refusals())


def test_registered_node_cannot_play_another_nodes_party(peer, node_a):
    session, peers = _echo_session(peer)
    impostor = TlsNode(C, StaticDirectory(keys(A, B, C)))
    try:  # C is registered, but party A of this session is node A
        ch = impostor.open_channel(session, "A", {"A": Peer(C.node_id), "B": peers["B"]}, timeout=10)
        with pytest.raises(ProtocolError, match="broken"):  # B closed the impostor's connections
            ch.send("B", b"let me in")  # (the send fails too if B was quicker)
            ch.recv("B", timeout=30)  # never echoed
        ch.close()
    finally:
        impostor.close()
    real = node_a.open_channel(session, "A", peers)  # the real A still gets through
    real.send("B", b"hi")
    assert real.recv("B", timeout=30) == b"hi"
    real.send("B", b"!stop")
    real.close()
    assert any(C.node_id in line and "claims party 'A'" in line for line in peer.refusals())


def test_dialler_refuses_a_listener_with_another_nodes_key(peer, node_a):
    # the address is B's, but the session says party B is node C: B's key is not C's
    with pytest.raises(Unauthorized, match="is not"):
        node_a.open_channel(f"tls-{next(_sessions)}", "A",
                            {"A": Peer(A.node_id), "B": Peer(C.node_id, peer.address)}, timeout=10)


def test_man_in_the_middle_without_the_key_is_refused(peer, node_a):
    """A proxy relays B's genuine prelude certificate but must do TLS with a key it holds."""
    srv = socket.create_server(("127.0.0.1", 0))
    address = f"127.0.0.1:{srv.getsockname()[1]}"
    import threading

    def mitm() -> None:
        c, _ = srv.accept()
        try:
            client_cert = _read_prelude(c)
            up = socket.create_connection(("127.0.0.1", int(peer.address.rsplit(":", 1)[1])))
            _send_prelude(up, node_certificate(C))  # any registered node's public certificate
            _send_prelude(c, _read_prelude(up))  # B's real certificate: passes the key check
            up.close()
            ctx = _Identity(X).context(True, client_cert)  # but the handshake needs B's private key
            ctx.wrap_socket(c, server_side=True)
        except (OSError, ssl.SSLError, DtxError):
            pass
        finally:
            c.close()

    t = threading.Thread(target=mitm, daemon=True)
    t.start()
    try:
        with pytest.raises(Unauthorized, match="TLS handshake"):
            node_a.open_channel(f"tls-{next(_sessions)}", "A",
                                {"A": Peer(A.node_id), "B": Peer(B.node_id, address)}, timeout=10)
    finally:
        t.join(10)
        srv.close()


def test_man_in_the_middle_substituting_the_certificate_is_refused(peer, node_a):
    srv = socket.create_server(("127.0.0.1", 0))
    address = f"127.0.0.1:{srv.getsockname()[1]}"
    import threading

    def mitm() -> None:
        c, _ = srv.accept()
        try:
            _read_prelude(c)
            _send_prelude(c, node_certificate(X))  # its own certificate, claiming nothing else
            c.recv(1)
        except (OSError, DtxError):
            pass
        finally:
            c.close()

    t = threading.Thread(target=mitm, daemon=True)
    t.start()
    try:
        with pytest.raises(Unauthorized, match="is not"):
            node_a.open_channel(f"tls-{next(_sessions)}", "A",
                                {"A": Peer(A.node_id), "B": Peer(B.node_id, address)}, timeout=10)
    finally:
        t.join(10)
        srv.close()


def test_eavesdropper_on_the_wire_sees_no_plaintext(peer, node_a):
    session, peers = _echo_session(peer)
    relay = Relay(peer.address)
    try:
        secret_session = session  # the session name travels inside TLS too
        ch = node_a.open_channel(session, "A", {"A": peers["A"], "B": Peer(B.node_id, relay.address)})
        seed_material = b"MPC-SETUP-SEED:" + bytes(range(48))
        payload = seed_material * 2000
        ch.send("B", payload)
        assert ch.recv("B", timeout=30) == payload  # it went through the relay and back
        ch.send("B", b"!stop")
        ch.close()
        wire = bytes(relay.recorded)
    finally:
        relay.close()
    assert len(wire) > 2 * len(payload)  # both directions crossed the relay
    assert b"MPC-SETUP-SEED" not in wire
    assert bytes(range(16, 48)) not in wire
    assert secret_session.encode() not in wire


def test_tampered_stream_fails_with_a_typed_error_not_a_hang(peer, node_a):
    session, peers = _echo_session(peer)
    relay = Relay(peer.address, flip_s2c_after=100_000)  # inside the echoed application data
    try:
        ch = node_a.open_channel(session, "A", {"A": peers["A"], "B": Peer(B.node_id, relay.address)})
        ch.send("B", bytes(1 << 20))
        with pytest.raises(ProtocolError, match="broken"):
            ch.recv("B", timeout=600)  # the bad record is detected; the timeout is never reached
        with pytest.raises(ProtocolError, match="broken"):
            ch.recv("B", timeout=0)  # and stays reported
        ch.close()
    finally:
        relay.close()


def test_ledger_directory_accepts_registered_nodes_only():
    led = MemoryLedger()
    led.submit(A, RegisterNode(role="executor", address="127.0.0.1:1"))
    led.submit(C, RegisterNode(role="storage", address="127.0.0.1:2"))
    d = LedgerDirectory(led, roles={"executor"})
    assert d.public_key(A.node_id) == A.public_key_bytes
    assert d.address(A.node_id) == "127.0.0.1:1"
    assert d.identify(A.public_key_bytes) == A.node_id
    with pytest.raises(Unauthorized, match="not registered"):
        d.public_key(X.node_id)
    with pytest.raises(Unauthorized, match="storage"):
        d.public_key(C.node_id)


def test_ledger_bound_nodes_talk_and_refuse_the_unregistered():
    led = MemoryLedger()
    na = TlsNode(A, LedgerDirectory(led))
    nb = TlsNode(B, LedgerDirectory(led))
    nx = TlsNode(X, StaticDirectory(keys(A, B, X)))
    try:
        led.submit(A, RegisterNode(role="executor", address=na.address))
        led.submit(B, RegisterNode(role="executor", address=nb.address))
        import threading

        peers = {"A": Peer(A.node_id), "B": Peer(B.node_id)}  # B's address comes from the ledger
        box = {}
        t = threading.Thread(target=lambda: box.update(b=nb.open_channel("s", "B", peers, timeout=30)))
        t.start()
        ca = na.open_channel("s", "A", peers)
        t.join(30)
        ca.send("B", b"over the ledger")
        assert box["b"].recv("A", timeout=30) == b"over the ledger"
        with pytest.raises(DtxError):
            nx.open_channel("s2", "A", {"A": Peer(X.node_id), "B": Peer(B.node_id, nb.address)}, timeout=5)
        assert any("not registered on the ledger" in line for line in nb.refusals)
        ca.close()
        box["b"].close()
    finally:
        for n in (na, nb, nx):
            n.close()


def test_bad_arguments():
    with TlsNode(A, StaticDirectory(keys(A))) as n:
        with pytest.raises(ParameterError):
            n.open_channel("s", "A", {"A": Peer(A.node_id)})
        with pytest.raises(ParameterError):
            n.open_channel("", "A", {"B": Peer(B.node_id, "127.0.0.1:1")})
    with pytest.raises(ParameterError):
        TlsNode(A, StaticDirectory(keys(A)), max_message=0)


def _leave_an_openssl_error() -> int:
    """Make libcrypto fail in this thread and leave its error queued (as a failed kernel call would)."""
    import ctypes

    with open("/proc/self/maps") as fh:
        path = sorted({line.split()[-1] for line in fh if "libcrypto" in line and "/" in line})[0]
    lib = ctypes.CDLL(path)
    lib.EVP_PKEY_new_raw_public_key.restype = ctypes.c_void_p
    assert lib.EVP_PKEY_new_raw_public_key(1034, None, b"\0" * 5, ctypes.c_size_t(5)) is None  # X25519, bad length
    return int(lib.ERR_peek_error())


def test_a_stale_openssl_error_in_the_dialling_thread_does_not_break_the_handshake(peer, node_a):
    assert _leave_an_openssl_error() != 0
    session, peers = _echo_session(peer)
    ch = node_a.open_channel(session, "A", peers)
    ch.send("B", b"still fine")
    assert ch.recv("B", timeout=30) == b"still fine"
    ch.send("B", b"!stop")
    ch.close()
