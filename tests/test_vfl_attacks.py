"""Attacks on the two-party VFL protocols, tried as the curious party would (both modes).

Secret-shared mode: each attack must fail. Fast mode: the documented leaks must be refused by
parameter checks. The transcript test compares what the feature party obtains in the clear under
two different label vectors of the other party: a two-sample Kolmogorov-Smirnov test must not
tell them apart in secret-shared mode, and must in fast mode (so the test can fail).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import ks_2samp
from vfl_helpers import keypairs

from dtxfast.crypto.paillier import EncryptedVector, unpack_slots
from dtxfast.errors import ParameterError
from dtxfast.protocols.vfl import (
    FeatureParty,
    LabelParty,
    MsgType,
    SharedFeatureParty,
    SharedLabelParty,
    TrainingConfig,
    plain_train_glm,
)
from dtxfast.protocols.vfl.shared import SCORE_SLOT_BITS
from dtxfast.protocols.vfl._messages import unpack
from dtxfast.vfl.runner import FEATURE, LABEL, train_in_process

N, DA, DB = 48, 6, 3


def _data(seed: int = 0):
    rng = np.random.default_rng(seed)
    XA, XB = rng.normal(size=(N, DA)), rng.normal(size=(N, DB))
    return XA, XB


def _ss_run(XA, XB, y, cfg):
    ka, kb = keypairs()
    fa, lb = SharedFeatureParty(XA, cfg, keypair=ka), SharedLabelParty(XB, y, cfg, keypair=kb)
    run = train_in_process(fa, lb, record=True)
    return fa, lb, [(s, unpack(p)) for s, _, p in run.network.transcript]


def _scores(section: bytes, sk, pk, rows: int) -> list[int]:
    """The masked partial scores a SCORE message carries (``pk.slots`` of them per ciphertext)."""
    per = pk.slots(SCORE_SLOT_BITS)
    ev = EncryptedVector.from_bytes(section, pk)
    assert len(ev) == -(-rows // per)  # packed: one ciphertext per `per` rows
    return unpack_slots(sk.raw_decrypt(ev), SCORE_SLOT_BITS, per, rows)


def _feature_party_plaintexts(transcript, sk, pk, rows: int = 16) -> np.ndarray:
    """Everything the feature party decrypts during training, scaled by its mask range (public)."""
    out = []
    for sender, m in transcript:
        if sender != LABEL or m.type not in (MsgType.SCORE, MsgType.GRADIENT):
            continue
        if m.type == MsgType.SCORE:
            out.extend(_scores(m.sections[0], sk, pk, rows))
            continue
        ev = EncryptedVector.from_bytes(m.sections[0], pk)
        vals = [v - pk.n if v > pk.n // 2 else v for v in sk.raw_decrypt(ev)]
        out.extend(vals)
    vals = np.array([float(v) for v in out])
    return vals


def test_fast_mode_refuses_batches_a_party_could_solve_for_the_residuals():
    XA, XB = _data()
    y = XB @ [1.0, -1.0, 0.5]
    ka, kb = keypairs()
    for bs in (1, DA, DB + 1):  # batch no larger than a party's column count (B has an intercept)
        cfg = TrainingConfig(mode="fast", batch_size=bs, max_epochs=1)
        fa, lb = FeatureParty(XA, cfg, keypair=ka), LabelParty(XB, y, cfg, keypair=kb)
        with pytest.raises(ParameterError, match="batch"):
            train_in_process(fa, lb)
    # a last batch of the epoch that is too small is refused too (48 = 2 * 20 + 8 > 6, but 48 % 21 = 6)
    cfg = TrainingConfig(mode="fast", batch_size=21, max_epochs=1)
    fa, lb = FeatureParty(XA, cfg, keypair=ka), LabelParty(XB, y, cfg, keypair=kb)
    with pytest.raises(ParameterError, match="batch"):
        train_in_process(fa, lb)
    # the first residual is not the labels: initial weights are random and private
    cfg = TrainingConfig(mode="fast", batch_size=16, max_epochs=1)
    fa, lb = FeatureParty(XA, cfg, keypair=ka), LabelParty(XB, y, cfg, keypair=kb)
    assert np.all(fa.initial_weights != 0) and np.all(lb.initial_weights != 0)


def test_secret_shared_label_recovery_from_a_small_first_batch_fails():
    """The classic attack (solve X_A^T d = g for d in the first batch, d = -t) on what A obtains."""
    XA, XB = _data(1)
    t = XB @ [1.0, -2.0, 0.5]
    cfg = TrainingConfig(batch_size=2, max_epochs=1, shuffle=False)  # a batch of 2 rows < 6 columns
    fa, lb, tr = _ss_run(XA, XB, t, cfg)
    ka, _ = keypairs()
    # A's view of its own first gradient: the change of its weight share times m / alpha
    # (shares are not exposed: take its decryption of the peer gradient and its own mask)
    first = [m for s, m in tr if s == LABEL and m.type == MsgType.GRADIENT][0]
    g_view = EncryptedVector.from_bytes(first.sections[0], ka[0])
    vals = np.array([float(v) for v in ka[1].raw_decrypt(g_view)])  # B's gradient plus B's mask
    assert vals.shape == (DB + 1,)
    # every value A decrypts is a masked residue: far beyond any gradient's magnitude
    assert np.all(np.abs(vals) > 2.0 ** 60)
    # the attack, solving for the two residuals from what A holds, returns mask noise: the true
    # residuals (-t, standardized, at scale 2^44) are below 2^47, the solution is ~2^150
    Zb = np.hstack([(XB[:2] - XB.mean(0)) / XB.std(0), np.ones((2, 1))])
    d_hat, *_ = np.linalg.lstsq(Zb.T, vals, rcond=None)
    assert np.all(np.abs(d_hat) > 2.0 ** 60)


def test_secret_shared_partial_scores_are_hidden_from_the_label_party():
    """B decrypts A's masked scores: they carry no correlation with A's true partial scores."""
    XA, XB = _data(2)
    y = XA @ np.arange(1.0, DA + 1) + XB @ [1.0, 1.0, 1.0]
    cfg = TrainingConfig(batch_size=0, max_epochs=3)
    fa, lb, tr = _ss_run(XA, XB, y, cfg)
    _, kb = keypairs()
    scores = [m for s, m in tr if s == FEATURE and m.type == MsgType.SCORE]
    got = np.array([float(v) for v in _scores(scores[-1].sections[0], kb[1], kb[0], N)])
    true_u = ((XA - XA.mean(0)) / XA.std(0)) @ fa.weights
    assert abs(np.corrcoef(got, true_u)[0, 1]) < 0.5  # 48 samples: |r| < 0.5 unless related
    # and no loss term crosses the wire without amplitude
    assert not any(m.type == MsgType.EPOCH for _, m in tr)


def test_fast_mode_exponent_is_public_not_data_dependent():
    ka, kb = keypairs()
    exps = set()
    for scale in (1.0, 1e4):
        XA, XB = _data(3)
        XA = XA.copy()
        XA[0, 0] *= scale  # an outlier changes the batch's largest entry
        y = XB @ [1.0, 1.0, 1.0]
        cfg = TrainingConfig(mode="fast", batch_size=16, max_epochs=1)
        fa, lb = FeatureParty(XA, cfg, keypair=ka), LabelParty(XB, y, cfg, keypair=kb)
        run = train_in_process(fa, lb, record=True)
        for s, _, p in run.network.transcript:
            m = unpack(p)
            if m.type in (MsgType.PARTIAL, MsgType.MASKED):
                key = (ka if (s == FEATURE) == (m.type == MsgType.PARTIAL) else kb)[0]
                exps.add(EncryptedVector.from_bytes(m.sections[0], key).exponent)
    assert exps == {64}


def _fast_view(XA, XB, y, seed: int) -> np.ndarray:
    """The gradients the feature party obtains in fast mode (it learns them: weights in the clear)."""
    ka, kb = keypairs()
    cfg = TrainingConfig(mode="fast", batch_size=16, max_epochs=6, seed=seed)
    fa = FeatureParty(XA, cfg, keypair=ka, initial_weights=np.zeros(DA))
    lb = LabelParty(XB, y, cfg, keypair=kb, initial_weights=np.zeros(DB + 1))
    seen = [fa.weights.copy()]
    train_in_process(fa, lb, on_epoch=lambda e, loss, f, b: seen.append(f.weights.copy()))
    return np.diff(np.array(seen), axis=0)[:, 0]  # its own gradient steps on column 0, epoch by epoch


@pytest.mark.parametrize("mode", ["ss", "fast"])
def test_transcript_distribution_does_not_depend_on_the_other_partys_labels(mode, monkeypatch):
    import random

    from dtxfast.protocols.vfl import shared

    monkeypatch.setattr(shared, "_randbits", random.Random(20261130).getrandbits)  # fixed seed
    XA, XB = _data(4)
    rng = np.random.default_rng(99)
    y1 = XB @ [1.0, -1.0, 0.5] + XA[:, 0] * 3.0
    y2 = rng.permutation(y1) * -5.0 + 40.0  # other labels, other scale
    if mode == "fast":
        d1 = [_fast_view(XA, XB, y1, s) for s in range(4)]
        d2 = [_fast_view(XA, XB, y2, s) for s in range(4)]
        a, b = np.concatenate(d1), np.concatenate(d2)
        # fast mode: the feature party's view moves with the labels (its gradient is in the clear)
        assert ks_2samp(a, b).pvalue < 1e-3
        return
    ka, _ = keypairs()
    views = []
    for y in (y1, y2):
        cfg = TrainingConfig(batch_size=16, max_epochs=2)
        _, _, tr = _ss_run(XA, XB, y, cfg)
        v = _feature_party_plaintexts(tr, ka[1], ka[0])
        views.append(np.abs(v) / 2.0 ** np.floor(np.log2(np.abs(v) + 1)))  # mantissa in [1, 2): mask noise
    p = ks_2samp(views[0], views[1]).pvalue
    assert p > 1e-3, p


def _comparison_bytes(transcript, sender: str) -> np.ndarray:
    """Every byte ``sender`` sent in the sigmoid's comparison and multiplexer rounds."""
    out = [np.frombuffer(sec, np.uint8) for s, m in transcript if s == sender
           and m.type in (MsgType.COMPARE, MsgType.SELECT) for sec in m.sections]
    return np.concatenate(out)


def test_secret_shared_logistic_comparisons_reveal_nothing_of_either_partys_data():
    """Logistic, sigmoid clip: the comparison bits ([z > 2], [z < -2] per row, strongly skewed and
    label-dependent) never cross the wire. Everything either party receives in the COMPARE and
    SELECT rounds is balanced bytes whose distribution does not move when the other party's labels
    and features change; the clipping was exercised (the run differs from the Taylor one)."""
    XA, XB = _data(5)
    ka, kb = keypairs()
    views: dict[str, list[np.ndarray]] = {FEATURE: [], LABEL: []}
    for k, y in enumerate((XA[:, 0] + XB[:, 0] > 0, XA[:, 1] - XB[:, 1] > 1.0)):
        XBk = XB if k == 0 else XB * 3.0 + 1.0
        cfg = TrainingConfig(model="logistic", batch_size=16, max_epochs=2, alpha=3.0)
        fa, lb, tr = _ss_run(XA, XBk, y, cfg)
        taylor = TrainingConfig(**{**cfg.to_dict(), "sigmoid": "taylor"})
        wa, _, _ = plain_train_glm(XA, XBk, y, taylor)
        assert np.abs(fa.weights - wa).max() > 1e-2  # rows crossed +-2: the comparisons mattered
        for sender in (FEATURE, LABEL):
            v = _comparison_bytes(tr, sender)
            bits = np.unpackbits(v)
            assert abs(bits.mean() - 0.5) < 5 * 0.5 / np.sqrt(bits.size)
            views[sender].append(v)
    for sender in (FEATURE, LABEL):
        n = min(len(views[sender][0]), len(views[sender][1]), 20000)
        assert ks_2samp(views[sender][0][:n], views[sender][1][:n]).pvalue > 1e-3
