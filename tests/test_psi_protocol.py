"""PSI state machines: results equal the plain set intersection; bad messages are refused."""

from __future__ import annotations

import os
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from dtxfast.crypto.blind_rsa import BlindRSAPublicKey, BlindRSASigner, IdBatch
from dtxfast.crypto.ecdh import ECDHMaskKey
from dtxfast.errors import (
    InvalidSignature,
    KeyMismatch,
    MalformedInput,
    ParameterError,
    ProtocolError,
    StateError,
)
from dtxfast.protocols.psi import (
    HEADER_SIZE,
    MAX_COUNT,
    Mode,
    MsgType,
    PSIMessage,
    PSIRequester,
    PSISigner,
    SignerTagCache,
    match_tags,
    run_three_party,
    run_two_party,
)

from psi_helpers import id_lists, rsa_key

# the whole protocol suite (tampering, malformed input, three parties, ...) runs on the compiled
# kernel and on the pure-Python twin
pytestmark = pytest.mark.usefixtures("backend")



def _key(mode: str):
    return rsa_key() if mode == "rsa" else ECDHMaskKey.generate()


def _run(req_ids, sig_ids, mode="rsa", chunk=7, verify="batch", cache=None):
    r = PSIRequester(req_ids, chunk_size=chunk, verify=verify)
    s = PSISigner(sig_ids, _key(mode), chunk_size=chunk, cache=cache or SignerTagCache())
    return [x.decode() for x in run_two_party(r, s)], r, s


def _expected(req_ids, sig_ids):
    common = set(req_ids) & set(sig_ids)
    out, seen = [], set()
    for x in req_ids:  # requester's order, first occurrence
        if x in common and x not in seen:
            out.append(x)
            seen.add(x)
    return out


@pytest.mark.parametrize("mode", ["rsa", "ecdh"])
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # the fixture holds no state
@given(a=id_lists, b=id_lists)
def test_equals_plain_intersection(backend, mode, a, b):
    got, _, _ = _run(a, b, mode)
    assert got == _expected(a, b)


@pytest.mark.parametrize("mode", ["rsa", "ecdh"])
@given(a=id_lists)
def test_special_sets(mode, a):
    assert _run(a, [], mode)[0] == []
    assert _run([], a, mode)[0] == []
    assert _run(a, a, mode)[0] == _expected(a, a)  # equal sets
    assert _run(a, [x + "\x00" for x in a], mode)[0] == []  # disjoint
    sub = a[: len(a) // 2]
    assert _run(sub, a, mode)[0] == _expected(sub, a)  # one inside the other
    assert _run(a + a, sub + sub, mode)[0] == _expected(a, sub)  # duplicates


@settings(max_examples=10)
@given(a=id_lists, b=id_lists, c=id_lists)
def test_three_party_equals_plain_intersection(a, b, c):
    res = run_three_party(a, b, c, rsa_key(), chunk_size=5, cache=SignerTagCache())
    want = set(a) & set(b) & set(c)
    for side, ids in (("a", a), ("b", b), ("c", c)):
        got = [x.decode() for x in getattr(res, side)]
        assert got == [x for x in _expected(ids, list(want))], side
    assert [x.decode() for x in res.a_and_c] == _expected(a, c)


def test_three_party_leakage_shape():
    """B never takes C's tags; what B gets from A is exactly |A ∩ C| tags."""
    key = rsa_key()
    a, b, c = ["1", "2", "3", "4"], ["2", "3", "9"], ["3", "4", "2", "8"]
    signer = PSISigner(c, key, cache=SignerTagCache())
    ra, rb = PSIRequester(a), PSIRequester(b, expect_signer_tags=False)
    hello = signer.hello()
    ra.receive(hello)
    rb.receive(hello)
    signer.receive(ra.hello())
    signer.receive(rb.hello())
    tags = list(signer.signer_messages())
    with pytest.raises(ProtocolError):
        rb.receive(tags[0])
    for m in tags:
        ra.receive(m)
    for party in (ra, rb):
        for req in party.requests():
            party.receive(signer.receive(req))
    relay = PSIMessage.decode(ra.relay())
    assert relay.type == MsgType.RELAY and relay.count == 3  # {2, 3, 4}
    rb.receive(ra.relay())
    assert sorted(rb.intersection().to_list()) == [b"2", b"3"]
    with pytest.raises(ProtocolError):
        ra.receive(ra.relay())  # the leader takes no relay


def test_three_party_refuses_ecdh():
    with pytest.raises(ParameterError):
        run_three_party(["a"], ["a"], ["a"], ECDHMaskKey.generate())  # type: ignore[arg-type]


# -- the signer's view ------------------------------------------------------------------------

def test_same_id_blinded_twice_differs():
    pub = rsa_key().public_key()
    ids = IdBatch.from_strings(["same", "same"])
    b1, b2 = pub.blind(ids), pub.blind(ids)
    assert b1.blinded[0].tobytes() != b1.blinded[1].tobytes()
    assert b1.blinded[0].tobytes() != b2.blinded[0].tobytes()
    # and two runs of the protocol send different requests for the same ids
    reqs = []
    for _ in range(2):
        r = PSIRequester(["same"])
        r.receive(PSISigner(["x"], rsa_key(), cache=SignerTagCache()).hello())
        reqs.append(next(r.requests()))
    assert reqs[0] != reqs[1]


def test_signer_view_has_no_unblinded_hash():
    """Nothing the signer receives equals (or contains) the full-domain hash of an id."""
    key = rsa_key()
    pub = key.public_key()
    ids = [f"user{i}" for i in range(50)]
    r = PSIRequester(ids, chunk_size=16)
    s = PSISigner(["user3", "other"], key, cache=SignerTagCache())
    r.receive(s.hello())
    seen = r.hello() + b"".join(r.requests())
    fdh = pub.hash_ids(IdBatch.from_strings(ids))
    for row in fdh:
        assert row.tobytes()[:32] not in seen
    for x in ids:
        assert x.encode() not in seen


def test_deterministic_with_injected_rng():
    seed = [0]

    def rng(n):
        seed[0] += 1
        return (seed[0].to_bytes(4, "big") * (n // 4 + 1))[:n]

    pub = rsa_key().public_key()
    ids = IdBatch.from_strings(["a"])
    b = pub.blind(ids, rng=rng)
    seed[0] = 0
    b2 = pub.blind(ids, rng=rng)
    np.testing.assert_array_equal(b.blinded, b2.blinded)


# -- refused messages -------------------------------------------------------------------------

def _started(mode="rsa", ids=("a", "b", "c")):
    key = _key(mode)
    s = PSISigner(["b", "c", "z"], key, chunk_size=2, cache=SignerTagCache())
    r = PSIRequester(list(ids), chunk_size=2)
    _greet(r, s)
    return s, r


def _greet(r, s):
    """The handshake: the signer's HELLO to the requester, the requester's HELLO back."""
    r.receive(s.hello())
    s.receive(r.hello())


def test_wrong_key_is_refused():
    s, r = _started()
    other = PSISigner(["b"], rsa_key(1), cache=SignerTagCache())
    req = next(r.requests())
    with pytest.raises(KeyMismatch):
        other.receive(req)
    with pytest.raises(KeyMismatch):
        other.receive(r.hello())  # a HELLO accepting another key
    # a response made with another key, relabelled with the announced key id, fails verification
    msg = PSIMessage.decode(req)
    forged = rsa_key(1).sign_blinded(np.zeros((msg.count, msg.width), np.uint8) + 1)
    forged_msg = PSIMessage(MsgType.RESPONSE, Mode.RSA, s.key_id, msg.seq, msg.count, msg.width,
                            msg.last, forged.tobytes()).encode()
    with pytest.raises(InvalidSignature):
        r.receive(forged_msg)
    # tags under another key
    other.greeted = True
    for m in other.signer_messages():
        with pytest.raises(KeyMismatch):
            r.receive(m)
        break


@pytest.mark.parametrize("verify", ["batch", "each"])
def test_tampered_response_is_refused(verify):
    key = rsa_key()
    s = PSISigner(["b"], key, cache=SignerTagCache())
    r = PSIRequester([f"id{i}" for i in range(10)], verify=verify)
    _greet(r, s)
    reply = bytearray(s.receive(next(r.requests())))
    reply[HEADER_SIZE + 5 * key.public_key().k + 17] ^= 0x40
    with pytest.raises(InvalidSignature):
        r.receive(bytes(reply))


def test_tampered_request_out_of_range_is_refused():
    s, r = _started()
    req = bytearray(next(r.requests()))
    req[HEADER_SIZE : HEADER_SIZE + 4] = b"\xff\xff\xff\xff"  # first value now >= n
    with pytest.raises(MalformedInput):
        s.receive(bytes(req))


@pytest.mark.parametrize("mode", ["rsa", "ecdh"])
def test_malformed_messages(mode):
    s, r = _started(mode)
    req = next(r.requests())
    with pytest.raises(MalformedInput):
        s.receive(req[:-1])  # truncated body
    with pytest.raises(MalformedInput):
        s.receive(req + b"\x00")  # trailing byte
    with pytest.raises(MalformedInput):
        s.receive(req[:10])  # truncated header
    with pytest.raises(MalformedInput):
        s.receive(b"XPSI" + req[4:])  # magic
    with pytest.raises(MalformedInput):
        s.receive(req[:4] + b"\x01" + req[5:])  # version 1 (before the handshake existed)
    with pytest.raises(MalformedInput):
        s.receive(req[:4] + b"\x03" + req[5:])  # unknown version
    with pytest.raises(MalformedInput):
        s.receive(req[:5] + b"\x63" + req[6:])  # unknown type
    with pytest.raises(MalformedInput):
        s.receive(req[:7] + b"\x80" + req[8:])  # reserved flag
    # oversized: a count above MAX_COUNT is refused before the body is looked at
    head = bytearray(req[:HEADER_SIZE])
    struct.pack_into(">I", head, 20, MAX_COUNT + 1)
    with pytest.raises(MalformedInput):
        PSIMessage.decode(bytes(head) + b"\x00" * 64)
    # a width that does not fit the key
    msg = PSIMessage.decode(req)
    bad = PSIMessage(msg.type, msg.mode, msg.key_id, msg.seq, msg.count, msg.width - 1, msg.last,
                     msg.body[: msg.count * (msg.width - 1)]).encode()
    with pytest.raises(MalformedInput):
        s.receive(bad)


def test_out_of_order_and_wrong_kind():
    s, r = _started()
    with pytest.raises(ProtocolError):
        r.receive(s.hello())  # second HELLO
    reqs = r.requests()
    first = next(reqs)
    reply = s.receive(first)
    r.receive(reply)
    with pytest.raises(ProtocolError):
        r.receive(reply)  # answered twice
    with pytest.raises(ProtocolError):
        s.receive(s.hello())  # a signer takes no HELLO
    tags = list(s.signer_messages())
    with pytest.raises(ProtocolError):
        r.receive(tags[-1]) if len(tags) > 1 else r.receive(
            PSIMessage(MsgType.TAGS, Mode.RSA, s.key_id, 5, 0, 16, True, b"").encode())
    fresh = PSIRequester(["a"])
    with pytest.raises(ProtocolError):
        fresh.receive(reply)  # before HELLO
    with pytest.raises(StateError):
        fresh.intersection()
    ecdh_hello = PSISigner(["a"], ECDHMaskKey.generate(), cache=SignerTagCache()).hello()
    with pytest.raises(ProtocolError):
        s.receive(ecdh_hello)


def test_hello_key_tampered():
    s, _ = _started()
    hello = bytearray(s.hello())
    hello[HEADER_SIZE + 12 + 40] ^= 1  # a byte of n
    with pytest.raises((KeyMismatch, MalformedInput)):
        PSIRequester(["a"]).receive(bytes(hello))


def test_max_requests():
    key = rsa_key()
    s = PSISigner(["a"], key, max_requests=3, cache=SignerTagCache())
    r = PSIRequester(["a", "b", "c", "d"], chunk_size=2)
    r.receive(s.hello())
    with pytest.raises(ProtocolError, match="holds 4 ids; this signer signs at most 3"):
        s.receive(r.hello())  # refused at the handshake, before any signature
    assert s.requests_served == 0 and not s.greeted
    s.greeted = True  # a requester that skipped the handshake is still held to the limit
    it = r.requests()
    r.receive(s.receive(next(it)))
    with pytest.raises(ProtocolError):
        s.receive(next(it))


# -- the handshake -----------------------------------------------------------------------------

@pytest.mark.parametrize(("signer_mode", "wanted"), [("rsa", "ecdh"), ("ecdh", "rsa")])
def test_requester_refuses_a_signer_of_another_mode_at_its_hello(signer_mode, wanted):
    s = PSISigner(["a", "b"], _key(signer_mode), cache=SignerTagCache())
    r = PSIRequester(["a"], mode=wanted)
    with pytest.raises(ProtocolError, match=f"the signer runs {signer_mode} PSI, this requester wants {wanted}"):
        r.receive(s.hello())
    assert r.mode is None and r.progress == (0, 1)  # nothing blinded, nothing generated
    with pytest.raises(ProtocolError):
        next(r.requests())
    ok = PSIRequester(["a"], mode=signer_mode)
    ok.receive(s.hello())
    assert ok.mode == Mode[signer_mode.upper()]
    with pytest.raises(ParameterError):
        PSIRequester(["a"], mode="dsa")


def test_signer_checks_the_requesters_hello_before_any_work():
    s = PSISigner(["a", "b"], rsa_key(), cache=SignerTagCache())
    r = PSIRequester(["a"])
    r.receive(s.hello())
    with pytest.raises(StateError):
        next(s.signer_messages())  # no tags before the requester's HELLO
    with pytest.raises(ProtocolError, match="before the requester's HELLO"):
        s.receive(next(r.requests()))  # no signature either
    assert s.requests_served == 0 and s._per_id is None
    # a HELLO naming the other mode, a signer's HELLO, a malformed one
    hello = PSIMessage.decode(r.hello())
    ecdh = PSIMessage(MsgType.HELLO, Mode.ECDH, hello.key_id, 0, 1, hello.width, True, hello.body).encode()
    with pytest.raises(ProtocolError, match="the requester wants ecdh PSI, this signer runs rsa"):
        s.receive(ecdh)
    with pytest.raises(ProtocolError):
        s.receive(s.hello())
    short = PSIMessage(MsgType.HELLO, Mode.RSA, hello.key_id, 0, 1, 4, True, hello.body[:4]).encode()
    with pytest.raises(MalformedInput):
        s.receive(short)
    zero_chunk = PSIMessage(MsgType.HELLO, Mode.RSA, hello.key_id, 0, 1, hello.width, True,
                            hello.body[:8] + bytes(4)).encode()
    with pytest.raises(MalformedInput):
        s.receive(zero_chunk)
    assert not s.greeted
    s.receive(r.hello())
    assert s.greeted and s.requests_announced == 1


def test_refusal_messages_stop_either_side():
    from dtxfast.protocols.psi import is_refusal, refusal

    msg = refusal("ünï " + "x" * 2000)
    assert is_refusal(msg) and not is_refusal(b"junk")
    assert len(PSIMessage.decode(msg).body) == 1000
    s, r = _started()
    with pytest.raises(ProtocolError, match="the signer refused the run: because"):
        r.receive(refusal("because"))
    with pytest.raises(ProtocolError, match="the requester refused the run: because"):
        s.receive(refusal("because"))


def test_max_pending_bounds_memory():
    _, r = _started(ids=[str(i) for i in range(10)])
    r.max_pending = 2
    it = r.requests()
    next(it)
    next(it)
    with pytest.raises(StateError):
        next(it)


# -- cache ------------------------------------------------------------------------------------

def test_signer_cache_hits_and_invalidates(tmp_path):
    cache = SignerTagCache(tmp_path)
    key = rsa_key()
    ids = ["a", "b", "c"]
    s1 = PSISigner(ids, key, cache=cache)
    v1 = s1.own_values()
    assert s1.cache_hit is False
    s2 = PSISigner(ids, key, cache=cache)
    np.testing.assert_array_equal(s2.own_values(), v1)
    assert s2.cache_hit is True
    s3 = PSISigner(ids + ["d"], key, cache=cache)  # ids changed
    s3.own_values()
    assert s3.cache_hit is False
    s4 = PSISigner(ids, rsa_key(1), cache=cache)  # key changed
    s4.own_values()
    assert s4.cache_hit is False
    # a new process would find the entry on disk
    s5 = PSISigner(ids, key, cache=SignerTagCache(tmp_path))
    np.testing.assert_array_equal(s5.own_values(), v1)
    assert s5.cache_hit is True
    assert len(list(tmp_path.glob("*.npy"))) == 3
    # and the cached run still gives the right intersection
    r = PSIRequester(["c", "q", "a"])
    assert run_two_party(r, s5) == [b"c", b"a"]


def test_match_tags():
    t = np.frombuffer(os.urandom(16 * 5), np.uint8).reshape(5, 16)
    mine = np.concatenate([t[:3], t[1:2]])
    assert match_tags(mine, t[1:]).tolist() == [1, 2]
    assert match_tags(mine[:0], t).tolist() == []


def test_key_serialisation_roundtrip():
    key = rsa_key()
    pub = key.public_key()
    assert BlindRSAPublicKey.from_bytes(pub.to_bytes()) == pub
    again = BlindRSASigner.from_pem(key.to_pem())
    assert again.public_key() == pub
    locked = key.to_pem("pw")
    assert BlindRSASigner.from_pem(locked, "pw").public_key() == pub
    with pytest.raises(MalformedInput):
        BlindRSASigner.from_pem(b"not a key")
    with pytest.raises(MalformedInput):
        BlindRSAPublicKey.from_bytes(pub.to_bytes()[:-1])
    with pytest.raises(ParameterError):
        BlindRSASigner.generate(512)
