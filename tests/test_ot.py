"""OT layers of dtxfast.crypto.ot: base OT, IKNP, KKRT16 give each party what it should get."""

from __future__ import annotations

import os

import numpy as np
import pytest

from dtxfast.crypto.ot import (
    CODE_BITS,
    KAPPA,
    BaseOTReceiver,
    BaseOTSender,
    IKNPReceiver,
    IKNPSender,
    KKRTReceiver,
    KKRTSender,
    OPRFKey,
    bits_of,
)
from dtxfast.errors import MalformedInput, ParameterError, StateError

pytestmark = pytest.mark.usefixtures("backend")


def _bits(n: int) -> np.ndarray:
    return bits_of(np.frombuffer(os.urandom((n + 7) // 8), np.uint8), n)


def test_base_ot_receiver_gets_its_choice_only():
    choices = _bits(64)
    snd = BaseOTSender(64)
    rcv = BaseOTReceiver(choices, snd.message())
    k0, k1 = snd.keys(rcv.message())
    got = rcv.keys()
    for j, c in enumerate(choices):
        assert (got[j] == (k1[j] if c else k0[j])).all()
        assert not (got[j] == (k0[j] if c else k1[j])).all()
    assert len({bytes(r) for r in np.concatenate([k0, k1])}) == 128  # all keys distinct


def test_base_ot_refuses_points_off_the_curve():
    snd = BaseOTSender(2)
    bad = bytearray(snd.message())
    bad[-1] ^= 1
    with pytest.raises(MalformedInput):
        BaseOTReceiver(_bits(2), bytes(bad))
    rcv = BaseOTReceiver(_bits(2), snd.message())
    msg = bytearray(rcv.message())
    msg[10] ^= 1
    with pytest.raises(MalformedInput):
        snd.keys(bytes(msg))
    with pytest.raises(MalformedInput):
        snd.keys(rcv.message()[:-1])
    with pytest.raises(ParameterError):
        BaseOTReceiver(np.array([0, 2]), snd.message())


def test_iknp_random_ots():
    delta = np.frombuffer(os.urandom(KAPPA // 8), np.uint8)
    snd = BaseOTSender(KAPPA)
    rcv = BaseOTReceiver(bits_of(delta, KAPPA), snd.message())
    k0, k1 = snd.keys(rcv.message())
    r = _bits(256)
    ext_r = IKNPReceiver(np.stack([k0, k1], axis=1), r)
    m0, m1 = IKNPSender(delta, rcv.keys()).receive(ext_r.message())
    out = ext_r.outputs()
    assert ((out == np.where(r[:, None] == 1, m1, m0)).all(axis=1)).all()
    assert not ((out == np.where(r[:, None] == 1, m0, m1)).all(axis=1)).any()
    with pytest.raises(MalformedInput):
        IKNPSender(delta, rcv.keys()).receive(ext_r.message()[:-16])


@pytest.mark.parametrize("how", ["sha256", "tccr"])
def test_iknp_later_extensions_take_fresh_rows(how):
    """Extensions at ``lo`` = 0, 256 from the same base OTs: both correct, no row shared (a repeated
    row would show the XOR of two choice vectors in U0 ^ U1), outputs distinct."""
    delta = np.frombuffer(os.urandom(KAPPA // 8), np.uint8)
    snd = BaseOTSender(KAPPA)
    rcv = BaseOTReceiver(bits_of(delta, KAPPA), snd.message())
    pairs = np.stack(snd.keys(rcv.message()), axis=1)
    ext_s = IKNPSender(delta, rcv.keys())
    r = _bits(256)
    seen = []
    for lo in (0, 256):
        ext_r = IKNPReceiver(pairs, r, lo=lo, hash=how)
        m0, m1 = ext_s.receive(ext_r.message(), lo=lo, hash=how)
        assert ((ext_r.outputs() == np.where(r[:, None] == 1, m1, m0)).all(axis=1)).all()
        seen.append((np.frombuffer(ext_r.message(), np.uint8).reshape(-1, 16), ext_r.outputs()))
    u0, u1 = seen[0][0], seen[1][0]
    assert ((u0 ^ u1) != 0).any(axis=1).all()  # same rows, same choices: U0 ^ U1 would be all zero
    assert not (seen[0][1] == seen[1][1]).all(axis=1).any()
    with pytest.raises(ParameterError):
        IKNPReceiver(pairs, r, lo=5)
    with pytest.raises(ParameterError):
        IKNPReceiver(pairs, r, hash="md5")


def test_tccr_rows_is_the_fixed_key_aes_construction():
    """H(i, x) = pi(pi(x) ^ i) ^ pi(x) with pi = AES-128 under the public key, recomputed here with
    pycryptodome (another AES implementation than the one under test)."""
    from Crypto.Cipher import AES

    from dtxfast.crypto.ot import _TCCR_KEY, tccr_rows

    x = np.frombuffer(os.urandom(5 * 16), np.uint8).reshape(5, 16)
    pi = AES.new(_TCCR_KEY, AES.MODE_ECB)
    want = []
    for i in range(5):
        p = pi.encrypt(x[i].tobytes())
        tw = (1000 + i).to_bytes(8, "little") + bytes(8)
        q = pi.encrypt(bytes(a ^ b for a, b in zip(p, tw)))
        want.append(bytes(a ^ b for a, b in zip(q, p)))
    assert [bytes(r) for r in tccr_rows(x, lo=1000)] == want


def test_kkrt_oprf_matches_only_equal_inputs_at_the_same_row():
    s = OPRFKey.generate()
    m0 = np.frombuffer(os.urandom(CODE_BITS * 16), np.uint8).reshape(CODE_BITS, 16)
    m1 = np.frombuffer(os.urandom(CODE_BITS * 16), np.uint8).reshape(CODE_BITS, 16)
    chosen = np.where(bits_of(s.bits, CODE_BITS)[:, None] == 1, m1, m0)
    x = np.frombuffer(os.urandom(256 * 16), np.uint8).reshape(256, 16)
    rcv = KKRTReceiver(m0, m1, code_key=b"k" * 16)
    snd = KKRTSender(s, chosen, code_key=b"k" * 16, rows=256)
    with pytest.raises(StateError):
        snd.evaluate(np.arange(4), x[:4], 16)
    u0, v0 = rcv.encode(x[:128], 0)
    u1, v1 = rcv.encode(x[128:], 128)
    with pytest.raises(StateError):
        snd.receive(u1, 128)  # out of order
    snd.receive(u0, 0)
    snd.receive(u1, 128)
    mine = np.concatenate([v0, v1])
    rows = np.arange(256)
    assert (snd.evaluate(rows, x, 16) == mine).all()
    assert not (snd.evaluate(rows, x[::-1].copy(), 16) == mine).all(axis=1).any()  # other inputs
    assert not (snd.evaluate((rows + 1) % 256, x, 16) == mine).all(axis=1).any()  # other rows
    # the values depend on the secret bits s: evaluated under another key, nothing matches
    other = KKRTSender(OPRFKey.generate(), chosen, code_key=b"k" * 16, rows=256)
    other.receive(u0, 0)
    other.receive(u1, 128)
    assert not (other.evaluate(rows, x, 16) == mine).all(axis=1).any()
