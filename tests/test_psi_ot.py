"""OT-mode PSI (KKRT16): equals the plain intersection, refuses bad messages, resists the attacks
its docstring names; two processes over loopback. Runs on the compiled kernels and on the twins."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from dtxfast.crypto.ecdh import ECDHMaskKey
from dtxfast.crypto.ot import OPRFKey
from dtxfast.errors import KeyMismatch, MalformedInput, ProtocolError, StateError
from dtxfast.protocols import _psi_ot
from dtxfast.protocols.psi import (
    Mode,
    MsgType,
    PSIMessage,
    PSIRequester,
    PSISigner,
    run_two_party,
)

from psi_helpers import id_lists

pytestmark = pytest.mark.usefixtures("backend")


def _run(req_ids, sig_ids, chunk=7):
    r = PSIRequester(req_ids, chunk_size=chunk, mode="ot")
    s = PSISigner(sig_ids, OPRFKey.generate(), chunk_size=chunk)
    return [x.decode() for x in run_two_party(r, s)], r, s


def _expected(req_ids, sig_ids):
    common = set(req_ids) & set(sig_ids)
    out, seen = [], set()
    for x in req_ids:
        if x in common and x not in seen:
            out.append(x)
            seen.add(x)
    return out


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=15)
@given(a=id_lists, b=id_lists)
def test_equals_plain_intersection(backend, a, b):
    assert _run(a, b)[0] == _expected(a, b)


@settings(max_examples=3)
@given(a=id_lists)
def test_special_sets(a):
    assert _run(a, [])[0] == []
    assert _run([], a)[0] == []
    assert _run(a, a)[0] == _expected(a, a)
    assert _run(a, [x + "\x00" for x in a])[0] == []
    sub = a[: len(a) // 2]
    assert _run(sub, a)[0] == _expected(sub, a)
    assert _run(a + a, sub + sub)[0] == _expected(a, sub)  # duplicates on both sides


def test_thousands_of_ids_several_chunks():
    rng = np.random.default_rng(5)
    a = [f"u{i}" for i in rng.permutation(3000)[:2000]]
    b = [f"u{i}" for i in rng.permutation(3000)[:2500]]
    got, r, _ = _run(a, b, chunk=333)
    assert got == _expected(a, b)
    assert r.progress[1] > 3  # many REQUEST messages


def test_table_and_width():
    assert _psi_ot.table_rows(0) == 128 and _psi_ot.table_rows(100) == 128 and _psi_ot.table_rows(101) == 256
    assert _psi_ot.table_rows(10**6) >= 1.27 * 10**6
    # 40 bits of statistical security beyond log2 of the number of compared pairs
    assert _psi_ot.value_width(10**5, 10**5) == 10 and _psi_ot.value_width(10**6, 10**6) == 11
    assert _psi_ot.value_width(1, 1) == 8


def test_cuckoo_rehash_on_failure(monkeypatch):
    """An insertion failure draws a fresh seed and retries (forced: no eviction allowed)."""
    monkeypatch.setattr(_psi_ot, "MAX_KICKS", 0)
    calls = []
    real = _psi_ot._ot.cuckoo_insert

    def counting(*args):
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(_psi_ot._ot, "cuckoo_insert", counting)
    a = [f"x{i}" for i in range(200)]  # 200 ids in 384 bins without evictions: collisions certain
    with pytest.raises(ProtocolError, match="cuckoo hashing failed"):
        _run(a, a)
    assert len(calls) == _psi_ot.MAX_REHASH
    monkeypatch.setattr(_psi_ot, "MAX_KICKS", 500)
    assert _run(a, a[::2])[0] == a[::2]


def _started(r_ids=("a", "b", "c"), s_ids=("b", "c", "d"), chunk=64):
    s = PSISigner(list(s_ids), OPRFKey.generate(), chunk_size=chunk)
    r = PSIRequester(list(r_ids), mode="ot", chunk_size=chunk)
    r.receive(s.hello())
    s.receive(r.hello())
    return s, r


def _tamper(msg: bytes, at: int) -> bytes:
    b = bytearray(msg)
    b[at] ^= 1
    return bytes(b)


def test_truncation_and_tampering_are_typed_errors():
    s, r = _started()
    setup = r.setup_message()
    for bad in (setup[:-1], setup + b"\x00", setup[:20]):
        with pytest.raises(MalformedInput):
            s.receive(bad)
    # a base-OT point moved off the curve
    with pytest.raises(MalformedInput, match="not on Ed25519"):
        s.receive(_tamper(setup, len(setup) - 1))
    ext = s.receive(setup)
    for bad in (ext[:-1], ext + b"\x00"):
        with pytest.raises(MalformedInput):
            r.receive(bad)
    m = PSIMessage.decode(ext)
    with pytest.raises(MalformedInput):  # 511 rows
        r.receive(PSIMessage(MsgType.EXT, Mode.OT, m.key_id, 0, 511, 16, True, m.body[:-16]).encode())
    with pytest.raises(KeyMismatch):
        r.receive(PSIMessage(MsgType.EXT, Mode.OT, bytes(8), 0, 512, 16, True, m.body).encode())
    r.receive(ext)
    with pytest.raises(ProtocolError):
        r.receive(ext)  # twice
    reqs = list(r.requests())
    with pytest.raises(MalformedInput):
        s.receive(reqs[0][:-1])
    with pytest.raises(ProtocolError):
        s.receive(reqs[-1])  # out of order
    q = PSIMessage.decode(reqs[0])
    with pytest.raises(MalformedInput):  # rows of 63 bytes
        s.receive(PSIMessage(MsgType.REQUEST, Mode.OT, q.key_id, 0, q.count, 63, q.last,
                             q.body[: q.count * 63]).encode())
    with pytest.raises(StateError):
        list(s.signer_messages())  # not every row yet
    for req in reqs:
        assert s.receive(req) is None
    vals = list(s.signer_messages())
    v = PSIMessage.decode(vals[0])
    with pytest.raises(MalformedInput):  # another width than the run's
        r.receive(PSIMessage(MsgType.TAGS, Mode.OT, v.key_id, 0, 1, v.width + 1, True,
                             bytes(v.width + 1)).encode())
    with pytest.raises(ProtocolError):  # more values than 3 per announced id
        r.receive(PSIMessage(MsgType.TAGS, Mode.OT, v.key_id, 0, 10, v.width, True,
                             bytes(10 * v.width)).encode())


def test_a_signer_of_another_mode_is_refused_at_hello():
    r = PSIRequester(["a"], mode="ot")
    with pytest.raises(ProtocolError, match="the signer runs ecdh PSI, this requester wants ot"):
        r.receive(PSISigner(["a"], ECDHMaskKey.generate()).hello())
    s = PSISigner(["a"], OPRFKey.generate())
    r2 = PSIRequester(["a"], mode="ecdh")
    with pytest.raises(ProtocolError, match="the signer runs ot PSI, this requester wants ecdh"):
        r2.receive(s.hello())


def test_more_ids_than_the_code_covers_are_refused(monkeypatch):
    """A HELLO announcing more ids than KKRT16's 512-bit code covers stops the run before the
    signer allocates its table (a requester could otherwise make it reserve any memory)."""
    monkeypatch.setattr(_psi_ot, "MAX_IDS", 4)
    s = PSISigner(list("abcde"), OPRFKey.generate())
    with pytest.raises(ProtocolError, match="the signer holds 5 ids"):
        PSIRequester(["a"], mode="ot").receive(s.hello())
    monkeypatch.setattr(_psi_ot, "MAX_IDS", 1 << 24)
    s, r = _started(r_ids=list("abcde"), s_ids=["a"])
    setup = r.setup_message()
    monkeypatch.setattr(_psi_ot, "MAX_IDS", 4)
    with pytest.raises(ProtocolError, match="the requester holds 5 ids"):
        s.receive(setup)
    s = PSISigner(["a"], OPRFKey.generate())
    r = PSIRequester(list("abcde"), mode="ot")
    monkeypatch.setattr(_psi_ot, "MAX_IDS", 1 << 24)
    r.receive(s.hello())
    monkeypatch.setattr(_psi_ot, "MAX_IDS", 4)
    with pytest.raises(ProtocolError, match="the requester holds 5 ids"):
        s.receive(r.hello())  # at the handshake, before any work
    assert not s.greeted


def test_one_requester_per_signer_run():
    s, r = _started()
    with pytest.raises(ProtocolError, match="one requester"):
        s.receive(r.hello())


def test_signer_sees_nothing_of_the_requesters_ids_in_u():
    """The attack on the requester's privacy: U is T0 ^ T1 ^ C(x) with T1 unknown to the signer,
    so two runs with different id sets give U rows the signer cannot tell apart from random:
    the signer's own Q rows equal T0 ^ (C(x) & s) - with its key it cannot recover C(x)'s bits
    outside s. We check the observable part: the same ids in two runs give unrelated U rows
    (fresh randomness per run), and each U bit is balanced."""
    rows = []
    for _ in range(2):
        s, r = _started(r_ids=[f"id{i}" for i in range(500)])
        r.receive(s.receive(r.setup_message()))  # base OTs and IKNP
        rows.append(np.concatenate([PSIMessage.decode(m).values() for m in r.requests()]))
    a, b = rows
    assert a.shape == b.shape
    bits = np.unpackbits(a ^ b)
    assert 0.45 < bits.mean() < 0.55


def test_signer_cannot_tell_the_requesters_inputs_from_its_view():
    """The attack on the requester's privacy from the signer's whole view (its key ``s``, its rows
    ``Ts`` = Q ^ (U & s), the public code): for the requester's true input of a bin, the signer's
    natural test U ^ Ts ^ C(x) is T1 on the columns where s is 0 and T0 where s is 1 - bits the
    signer never saw. It is as balanced for the true inputs as for wrong ones."""
    from dtxfast.crypto import _ot_py

    ids = [f"id{i}" for i in range(2000)]
    s, r = _started(r_ids=ids, s_ids=["x"])
    r.receive(s.receive(r.setup_message()))
    msgs = list(r.requests())
    for m in msgs:
        s.receive(m)
    u = np.concatenate([PSIMessage.decode(m).values() for m in msgs])
    q = s._ot._oprf._q
    ts = q ^ (u & s.key.bits[None, :])
    true_inputs = r._ot._inputs
    code_key = r._ot.code_key
    for inputs in (true_inputs, true_inputs[::-1].copy()):
        d = u ^ ts ^ _ot_py._codes(inputs, code_key)
        assert 0.48 < np.unpackbits(d).mean() < 0.52
        assert not (d == 0).all(axis=1).any()


def test_requester_learns_nothing_beyond_the_intersection():
    """The attack on the signer's privacy: the requester holds the signer's OPRF values; values
    of ids outside its own set match none of its values at any bin, and the signer's values
    carry no order (shuffled) and no multiplicity (duplicates dropped)."""
    s_ids = [f"s{i}" for i in range(300)] + ["s1"] * 5
    s, r = _started(r_ids=[f"s{i}" for i in range(0, 300, 3)], s_ids=s_ids)
    ext = s.receive(r.setup_message())
    r.receive(ext)
    for req in r.requests():
        s.receive(req)
    msgs = list(s.signer_messages())
    for m in msgs:
        r.receive(m)
    vals = np.concatenate([PSIMessage.decode(m).values() for m in msgs])
    assert vals.shape[0] == 3 * 300  # duplicates dropped before evaluation
    assert r.done and len(r.intersection()) == 100
    mine = r._ot._mine[r._ot.valid.astype(bool)][:, : vals.shape[1]]
    hits = np.isin(vals.view(f"V{vals.shape[1]}").ravel(), mine.view(f"V{vals.shape[1]}").ravel())
    assert int(hits.sum()) == 100  # exactly one value per common id matches; the other 800 match nothing
    # a second run of the same signer ids under a fresh key gives unrelated values
    s2, r2 = _started(r_ids=[f"s{i}" for i in range(0, 300, 3)], s_ids=s_ids)
    r2.receive(s2.receive(r2.setup_message()))
    for req in r2.requests():
        s2.receive(req)
    vals2 = np.concatenate([PSIMessage.decode(m).values() for m in s2.signer_messages()])
    assert not np.isin(vals.view(f"V{vals.shape[1]}").ravel(), vals2.view(f"V{vals2.shape[1]}").ravel()).any()


def test_values_are_shuffled():
    """Positions leak nothing: the signer's value for its i-th id is not at a fixed place."""
    s_ids = [f"s{i}" for i in range(256)]

    def position() -> int:
        s, r = _started(r_ids=s_ids[:1], s_ids=s_ids)
        r.receive(s.receive(r.setup_message()))
        for req in r.requests():
            s.receive(req)
        vals = np.concatenate([PSIMessage.decode(m).values() for m in s.signer_messages()])
        mine = r._ot._mine[r._ot.valid.astype(bool)][0, : vals.shape[1]]
        return int(np.flatnonzero((vals == mine).all(axis=1))[0])

    # unshuffled, id 0's values would sit at 0, 256 or 512
    positions = {position() for _ in range(4)}
    assert len(positions) > 1 and not positions <= {0, 256, 512}
