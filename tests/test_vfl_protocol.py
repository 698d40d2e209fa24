"""VFL protocol: federated == centralized reference, transcript inspection, protocol errors, channels."""

from __future__ import annotations

import struct
import threading

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes
from vfl_helpers import keypairs

from dtxfast.crypto.paillier import EncryptedVector
from dtxfast.errors import KeyMismatch, MalformedInput, ParameterError, ProtocolError, StateError
from dtxfast.protocols.vfl import (
    FeatureParty,
    LabelParty,
    ModelPart,
    MsgType,
    TrainingConfig,
    plain_train_glm,
)
from dtxfast.protocols.vfl._messages import unpack
from dtxfast.transport.channel import InMemoryNetwork
from dtxfast.vfl.runner import FEATURE, LABEL, run_party, train_in_process


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-3 * np.max(np.abs(b)))))


def _parties(XA, XB, y, cfg, **kw):
    (ka, kb) = keypairs()
    return FeatureParty(XA, cfg, keypair=ka), LabelParty(XB, y, cfg, keypair=kb, **kw)


@pytest.mark.parametrize(
    "cfg",
    [
        TrainingConfig(mode="fast", model="linear", alpha=0.2, max_epochs=12, batch_size=0, reg_mode="l2", reg_param=0.05,
                       amplitude=1e-12),
        TrainingConfig(mode="fast", model="linear", alpha=0.05, max_epochs=3, batch_size=100, reg_mode="l1", reg_param=0.01,
                       amplitude=1e-12, seed=5),
    ],
    ids=["full-batch-l2", "minibatch-l1"],
)
def test_linear_matches_central_reference(cfg):
    X, y = load_diabetes(return_X_y=True)
    XA, XB = X[:, :4], X[:, 4:]
    fa, lb = _parties(XA, XB, y, cfg)
    run = train_in_process(fa, lb)
    wa, wb, hist = plain_train_glm(XA, XB, y, cfg, initial=(fa.initial_weights, lb.initial_weights))
    assert run.epochs == len(hist) == cfg.max_epochs
    assert _rel(fa.weights, wa) < 1e-4
    assert _rel(lb.weights, wb) < 1e-4
    np.testing.assert_allclose(run.history, hist, rtol=1e-6)
    assert fa.history == lb.history  # both parties saw the same losses
    assert np.all(np.abs(wa) > 0)


def test_logistic_matches_central_reference_and_stops_on_amplitude():
    X, y = load_breast_cancer(return_X_y=True)
    X, y = X[:300], y[:300]
    cfg = TrainingConfig(mode="fast", model="logistic", alpha=0.3, max_epochs=60, batch_size=128, amplitude=2e-3, seed=3)
    fa, lb = _parties(X[:, :12], X[:, 12:], y, cfg)
    run = train_in_process(fa, lb)
    wa, wb, hist = plain_train_glm(X[:, :12], X[:, 12:], y, cfg, initial=(fa.initial_weights, lb.initial_weights))
    assert 2 <= run.epochs == len(hist) < cfg.max_epochs  # stopped on the loss change
    assert abs(hist[-1] - hist[-2]) < cfg.amplitude
    assert _rel(fa.weights, wa) < 1e-4 and _rel(lb.weights, wb) < 1e-4
    assert np.all(fa.initial_weights != 0)  # random initial weights


def test_bytes_are_the_ciphertexts_the_protocol_needs():
    rng = np.random.default_rng(0)
    n = 64
    XA, XB = rng.normal(size=(n, 3)), rng.normal(size=(n, 2))
    y = XA @ [1, 2, 3] + XB @ [1, -1]
    cfg = TrainingConfig(mode="fast", alpha=0.1, max_epochs=2, batch_size=0, amplitude=0)
    fa, lb = _parties(XA, XB, y, cfg)
    run = train_in_process(fa, lb)
    ct = 2 * 1024 // 8  # one ciphertext mod n^2, minimal form
    per_epoch = run.bytes_per_epoch
    need = 2 * n * ct
    # per batch, besides the 2 n residual ciphertexts: (3 + 1) + (2 + 1) gradient/loss ciphertexts,
    # 3 + 3 decrypted residues mod n, message headers; the hello messages amortized over 2 epochs
    extra = 7 * ct + 6 * (ct // 2) + 1000
    assert need <= per_epoch < need + extra
    assert per_epoch / n < 2 * ct * 1.1


def _f64_patterns(values: np.ndarray) -> set[bytes]:
    out = set()
    for v in np.asarray(values, dtype=np.float64).ravel():
        if v != 0.0:
            out.add(struct.pack(">d", v))
            out.add(struct.pack("<d", v))
    return out


def test_transcript_reveals_no_plaintext_of_the_other_party():
    rng = np.random.default_rng(1)
    n = 48
    XA = rng.normal(size=(n, 3)) * [1, 10, 100] + 5
    XB = rng.normal(size=(n, 2))
    y = XA @ [0.3, -0.1, 0.01] + XB @ [1.0, 2.0] + rng.normal(size=n) * 0.1
    cfg = TrainingConfig(mode="fast", alpha=0.2, max_epochs=2, batch_size=0, amplitude=0)
    (ka, kb) = keypairs()
    fa, lb = FeatureParty(XA, cfg, keypair=ka), LabelParty(XB, y, cfg, keypair=kb)
    # weights of both parties at the start of epoch 2 (non-zero), recorded by the reference
    w_start = {}
    plain_train_glm(XA, XB, y, TrainingConfig(mode="fast", alpha=0.2, max_epochs=1, batch_size=0, amplitude=0),
                    initial=(fa.initial_weights, lb.initial_weights),
                on_epoch=lambda e, loss, wa, wb: w_start.update(a=wa.copy(), b=wb.copy()))
    run = train_in_process(fa, lb, record=True)
    msgs = [(s, r, unpack(p)) for s, r, p in run.network.transcript]
    epoch2 = [(s, r, m) for s, r, m in msgs if m.type != MsgType.HELLO and m.epoch == 1]
    kinds = [(s, m.type) for s, _, m in epoch2]
    assert kinds == [(FEATURE, MsgType.PARTIAL), (LABEL, MsgType.PARTIAL), (FEATURE, MsgType.MASKED),
                     (LABEL, MsgType.MASKED), (FEATURE, MsgType.UNMASKED), (LABEL, MsgType.UNMASKED)]
    secret_a = _f64_patterns(XA) | _f64_patterns(fa.standardizer.transform(XA)) | _f64_patterns(w_start["a"])
    secret_a |= _f64_patterns(fa.weights)
    secret_b = (_f64_patterns(XB) | _f64_patterns(lb.standardizer.transform(XB)) | _f64_patterns(y)
                | _f64_patterns(lb.labels.target) | _f64_patterns(w_start["b"]) | _f64_patterns(lb.weights))
    to_b = b"".join(b"".join(m.sections) for s, _, m in epoch2 if s == FEATURE)
    to_a = b"".join(b"".join(m.sections) for s, _, m in epoch2 if s == LABEL)
    assert not any(p in to_b for p in secret_a)
    assert not any(p in to_a for p in secret_b)
    # PARTIAL and MASKED carry ciphertexts only: under the sender's key (PARTIAL) or the receiver's
    for s, _, m in epoch2:
        if m.type in (MsgType.PARTIAL, MsgType.MASKED):
            own, peer = (ka[0], kb[0]) if s == FEATURE else (kb[0], ka[0])
            key = own if m.type == MsgType.PARTIAL else peer
            ev = EncryptedVector.from_bytes(m.sections[0], key)
            assert len(ev) == (n if m.type == MsgType.PARTIAL else len(ev))
            with pytest.raises(KeyMismatch):
                EncryptedVector.from_bytes(m.sections[0], own if key is peer else peer)
    # UNMASKED residues are one-time padded: uniform in Z_n, nowhere near a small fixed-point value
    for s, _, m in epoch2:
        if m.type == MsgType.UNMASKED:
            n_dec = (ka if s == FEATURE else kb)[0].n
            width = (n_dec.bit_length() + 7) // 8
            vals = [int.from_bytes(m.sections[0][i:i + width], "big") for i in range(0, len(m.sections[0]), width)]
            assert len(vals) == (lb.weights.size if s == FEATURE else fa.weights.size)
            assert all(48 < v.bit_length() and n_dec - v > 1 << 48 for v in vals) or len(vals) == 0
            assert all(v.bit_length() > n_dec.bit_length() - 40 for v in vals)
    # no loss is computed (amplitude 0): UNMASKED carries the residues only
    assert all(len(m.sections) == 1 for _, _, m in epoch2 if m.type == MsgType.UNMASKED)


def test_hello_checks():
    rng = np.random.default_rng(2)
    X, y = rng.normal(size=(10, 2)), rng.normal(size=10)
    cfg = TrainingConfig(mode="fast", alpha=0.1, max_epochs=1)
    (ka, kb) = keypairs()
    fa = FeatureParty(X, cfg, keypair=ka)
    other = LabelParty(X, y, TrainingConfig(mode="fast", alpha=0.2, max_epochs=1), keypair=kb)
    h = fa.hello()
    other.hello()
    with pytest.raises(ProtocolError, match="configuration"):
        other.receive(h)
    fb = FeatureParty(X, cfg, keypair=kb)
    fb.hello()
    with pytest.raises(ProtocolError, match="role"):
        fb.receive(h)
    short = LabelParty(X[:5], y[:5], cfg, keypair=kb)
    short.hello()
    with pytest.raises(ProtocolError, match="rows"):
        short.receive(h)
    with pytest.raises(StateError):
        fa.hello()
    lb = LabelParty(X, y, cfg, keypair=kb)
    with pytest.raises(StateError):
        lb.receive(h)  # hello() not sent yet


def test_out_of_order_and_malformed_messages():
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(20, 2)), rng.normal(size=20)
    cfg = TrainingConfig(mode="fast", alpha=0.1, max_epochs=3, batch_size=10, amplitude=0)
    (ka, kb) = keypairs()
    fa, lb = FeatureParty(X, cfg, keypair=ka), LabelParty(X, y, cfg, keypair=kb)
    ha, hb = fa.hello(), lb.hello()
    pa, pb = fa.receive(hb), lb.receive(ha)
    with pytest.raises(MalformedInput):
        fa.receive(pb[:-7])
    with pytest.raises(MalformedInput):
        fa.receive(b"XXXX" + pb[4:])
    with pytest.raises(ProtocolError, match="expected a PARTIAL"):
        fa.receive(hb)
    ma, mb = fa.receive(pb), lb.receive(pa)
    ub = lb.receive(ma)
    fa.receive(mb)
    na = fa.receive(ub)  # the feature party moves on to batch 1
    assert unpack(na).batch == 1
    with pytest.raises(ProtocolError, match="batch"):
        fa.receive(pb)  # replay of batch 0's PARTIAL


def test_masked_of_wrong_length_is_rejected():
    rng = np.random.default_rng(4)
    X, y = rng.normal(size=(12, 3)), rng.normal(size=12)
    cfg = TrainingConfig(mode="fast", alpha=0.1, max_epochs=1, batch_size=0)
    (ka, kb) = keypairs()
    fa, lb = FeatureParty(X, cfg, keypair=ka), LabelParty(X[:, :2], y, cfg, keypair=kb)
    ha, hb = fa.hello(), lb.hello()
    pa, pb = fa.receive(hb), lb.receive(ha)
    ma, mb = fa.receive(pb), lb.receive(pa)
    # the label party's MASKED (3 values: 2 weights + intercept) sent back to the label party itself
    with pytest.raises((ProtocolError, KeyMismatch)):
        lb.receive(mb)
    # the feature party expects exactly weights-of-the-label-party values
    from dtxfast.crypto.paillier import concatenate
    from dtxfast.protocols.vfl._messages import pack

    m = unpack(mb)
    ev = EncryptedVector.from_bytes(m.sections[0], ka[0])
    bad = pack(MsgType.MASKED, m.epoch, m.batch, [concatenate([ev, ev[:1]]).to_bytes()])
    with pytest.raises(ProtocolError, match="MASKED has"):
        fa.receive(bad)


def test_one_party_per_thread_over_channels_matches_in_process():
    rng = np.random.default_rng(5)
    XA, XB = rng.normal(size=(30, 2)), rng.normal(size=(30, 2))
    y = XA @ [1.0, -1.0] + XB @ [0.5, 2.0]
    cfg = TrainingConfig(mode="fast", alpha=0.2, max_epochs=4, batch_size=16, amplitude=0)
    (ka, kb) = keypairs()
    net = InMemoryNetwork(["A", "B"])
    fa, lb = FeatureParty(XA, cfg, keypair=ka), LabelParty(XB, y, cfg, keypair=kb)
    errors = []

    def go(p, ch, peer):
        try:
            run_party(p, ch, peer, timeout=60)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    ts = [threading.Thread(target=go, args=(fa, net.channel("A"), "B")),
          threading.Thread(target=go, args=(lb, net.channel("B"), "A"))]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    assert not errors and fa.done and lb.done and net.pending() == 0
    wa, wb, _ = plain_train_glm(XA, XB, y, cfg, initial=(fa.initial_weights, lb.initial_weights))
    assert _rel(fa.weights, wa) < 1e-4 and _rel(lb.weights, wb) < 1e-4


def test_config_validation():
    with pytest.raises(ParameterError):
        TrainingConfig(mode="fast", model="tree")
    with pytest.raises(ParameterError):
        TrainingConfig(mode="fast", reg_mode="l3")
    with pytest.raises(ParameterError):
        TrainingConfig(mode="fast", alpha=0)
    with pytest.raises(ParameterError):
        TrainingConfig(mode="fast", batch_size=-1)
    with pytest.raises(ParameterError):
        TrainingConfig(mode="fast", accuracy=40)
    assert TrainingConfig(mode="fast", reg_mode=None).reg_mode == "none"
    assert TrainingConfig(mode="fast", accuracy=8).plaintext_bits == 28
    assert TrainingConfig(mode="fast", seed=1).digest() != TrainingConfig(mode="fast", seed=2).digest()


def test_model_part_round_trip_and_checksum():
    part = ModelPart("label", "logistic", np.array([0.5, -1.25, 0.1]), np.array([1.0, 2.0]),
                     np.array([3.0, 4.0]), positive_class="Iris-setosa", negative_class=None, threshold=0.4)
    back = ModelPart.from_bytes(part.to_bytes())
    np.testing.assert_array_equal(back.weights, part.weights)
    assert back.positive_class == "Iris-setosa" and back.threshold == 0.4 and back.role == "label"
    data = part.to_bytes().replace(b"-1.25", b"-1.35")
    with pytest.raises(MalformedInput, match="checksum"):
        ModelPart.from_bytes(data)
    with pytest.raises(MalformedInput):
        ModelPart.from_bytes(b"{}")
    with pytest.raises(MalformedInput, match="version"):
        ModelPart.from_bytes(part.to_bytes().replace(b'"version": 1', b'"version": 9'))
    with pytest.raises(ParameterError):
        ModelPart("feature", "linear", np.zeros(3), np.zeros(2), np.ones(2))


# -- an oracle that shares nothing with the trainer: finite differences of the documented loss ---
@pytest.mark.parametrize("model", ["linear", "logistic"])
def test_plain_reference_is_gradient_descent_on_the_documented_loss(model: str) -> None:
    """Two full-batch epochs of the plaintext reference equal gradient descent on the loss as the
    docs define it (per-block standardization, intercept in the label party's block, L2 without
    the intercept; logistic: the second-order Taylor loss), with gradients by finite differences."""
    rng = np.random.default_rng(5)
    XA, XB = rng.normal(size=(30, 3)) * [1.0, 3.0, 0.5] + 2, rng.normal(size=(30, 2)) - 1
    y = XA @ [1.0, -2.0, 0.5] + XB @ [0.3, 1.0] + rng.normal(size=30)
    if model == "logistic":
        y = (y > np.median(y)).astype(int)
    cfg = TrainingConfig(model=model, alpha=0.2, max_epochs=2, batch_size=0, amplitude=0, reg_mode="l2",
                         reg_param=0.1)
    wa, wb, hist = plain_train_glm(XA, XB, y, cfg, positive_class=1 if model == "logistic" else None)

    A = (XA - XA.mean(0)) / XA.std(0)
    B = np.hstack([(XB - XB.mean(0)) / XB.std(0), np.ones((30, 1))])
    t = (y - y.mean()) / y.std() if model == "linear" else (y == 1).astype(float)
    M = np.hstack([A, B])

    def loss(w: np.ndarray) -> float:
        z = M @ w
        data = 0.5 * np.sum((z - t) ** 2) / 30 if model == "linear" else \
            np.log(2) - (t - 0.5) @ z / 30 + z @ z / (8 * 30)
        return float(data + 0.5 * 0.1 * (w[:-1] @ w[:-1]))  # the intercept (last) is not regularized

    w, losses = np.zeros(M.shape[1]), []
    for _ in range(2):
        losses.append(loss(w))
        grad = np.array([(loss(w + e) - loss(w - e)) / 2e-6 for e in np.eye(w.size) * 1e-6])
        w = w - 0.2 * grad
    np.testing.assert_allclose(np.r_[wa, wb], w, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(hist, losses, rtol=1e-9)
