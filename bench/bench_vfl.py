"""VFL benchmarks: one training epoch of two-party vertical linear and logistic regression under Paillier.

* ``vfl.epoch`` (us/elem = microseconds per sample per epoch, both parties on this machine, 2048-bit
  keys, 20 + 20 features, mini-batches of 1024 rows):
  ``dtxfast`` fast mode (``mode="fast"``) of :mod:`dtxfast.protocols.vfl` (batch encryption,
  Pippenger ``X.T @ [[d]]``, masked decryption, messages serialized and counted);
  ``dtxfast-ss`` the secret-shared-model mode (``mode="ss"``, the default;
  :mod:`dtxfast.protocols.vfl.shared`): the same epoch with weights, residuals and gradients kept
  as additive shares (ref: ``dtxfast``, so its ratio is the price of the secret-shared model);
  ``phe`` the same protocol written with python-paillier objects the way FATE-era code does it
  (one ``EncryptedNumber`` per value, gradients as sums of scalar products), one thread, on a
  sample of the rows (``sample`` in the row: its per-sample cost is compared with dtxfast's on the
  full size); ``numpy`` the same algorithm in plaintext (what the arithmetic costs unencrypted),
  BLAS pinned to the row's threads; ``spu-cheetah`` SecretFlow SPU's two-party protocol without a
  dealer or third party (CHEETAH, FM64, its in-process simulator, both parties as threads of one
  process: all cores) on the same epoch of the same model (every value, weights included, kept
  secret-shared; SPU's own fixed point and sigmoid), on ``SPU_BATCHES`` whole batches of the rows
  (``sample`` in the row), timed by ``_spu_vfl.py`` under the interpreter named by
  ``DTX_BENCH_SPU_PYTHON`` (SPU needs ``numpy < 2``; without it the row is omitted and ``dtx bench``
  says why). dtxfast runs on all cores and on one (``threads``), so the one-thread ``phe`` row has
  a same-thread dtxfast row. On all cores the two parties run at the same time, each in its own
  thread on half of the cores (as on two machines, and as SPU's simulator runs its two parties
  as threads); on one thread they take turns.
* ``vfl.epoch.logistic`` (us/elem, the same shape and run): the same epoch of *logistic* regression
  (labels ``y > median(y)``, the data of ``vfl.epoch``): ``dtxfast`` (fast mode, the Taylor sigmoid
  ``1/2 + z/4``), ``dtxfast-ss`` (secret-shared mode with its default sigmoid
  ``clip(1/2 + z/4, 0, 1)``: two secure comparisons per row over OT, the base OTs included in the
  timed epoch); ``numpy`` the Taylor algorithm in plaintext; ``spu-cheetah`` SPU's CHEETAH with SPU's
  own sigmoid (its default ``jax.nn.sigmoid`` evaluation on shares), on ``SPU_BATCHES`` batches.
  All rows on all cores (no one-thread peer here, so no one-thread dtxfast rows).
* ``vfl.epoch.bytes`` (bytes/sample): payload bytes both parties sent in one epoch, per sample
  (``value`` recorded directly). ``floor-ciphertexts`` is the minimum the protocol needs: two
  2048-bit ciphertexts (512 bytes each in minimal form) per sample.
"""

from __future__ import annotations

import functools
import secrets
import threading
from typing import Any

import numpy as np
import pytest

import dtxfast
from dtxfast.crypto.paillier import generate_keypair
from dtxfast.protocols.vfl import (
    FeatureParty,
    LabelParty,
    SharedFeatureParty,
    SharedLabelParty,
    TrainingConfig,
    batch_schedule,
    plain_train_glm,
)
from dtxfast.transport.channel import InMemoryNetwork

from ._util import CORES, QUICK, SPU_PYTHON, blas_threads, measure, peer_row, sizes, thread_variants

BITS = 2048
D_A = D_B = 20
BATCH = 1024
ROWS = sizes([100_000], [2048])
PHE_SAMPLE = 20 if QUICK else 200  # rows the python-paillier baseline runs
SPU_BATCHES = 10  # whole batches the SPU CHEETAH row runs (about 1 ms per sample: 100k rows would take minutes)
CFG = TrainingConfig(model="linear", mode="fast", alpha=0.05, max_epochs=1, batch_size=BATCH, amplitude=0)
CFG_SS = TrainingConfig(model="linear", mode="ss", alpha=0.05, max_epochs=1, batch_size=BATCH, amplitude=0)
CFG_LOG = TrainingConfig(model="logistic", mode="fast", alpha=0.05, max_epochs=1, batch_size=BATCH, amplitude=0)
CFG_LOG_SS = TrainingConfig(model="logistic", mode="ss", alpha=0.05, max_epochs=1, batch_size=BATCH, amplitude=0)


@functools.cache
def _data(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    X = rng.normal(size=(n, D_A + D_B)) * rng.uniform(0.5, 3.0, size=D_A + D_B)
    y = X @ rng.normal(size=D_A + D_B) + rng.normal(size=n)
    return X[:, :D_A], X[:, D_A:], y


@functools.cache
def _keys() -> tuple:
    ka, kb = generate_keypair(BITS), generate_keypair(BITS)
    for pk, _ in (ka, kb):
        pk.obfuscators(1)  # build the fixed-base tables outside the timed part
        pk.statistical_obfuscators(1)
    return ka, kb


def _labels(y: np.ndarray) -> np.ndarray:
    """The logistic groups' classes: ``y > median(y)`` (as ``_spu_vfl.py`` draws them)."""
    return (y > np.median(y)).astype(np.int64)


def _ready_parties(n: int, ss: bool = False, model: str = "linear") -> tuple[Any, Any, InMemoryNetwork, bytes, bytes]:
    XA, XB, y = _data(n)
    ka, kb = _keys()
    if model == "logistic":
        y = _labels(y)
        cfg = CFG_LOG_SS if ss else CFG_LOG
    else:
        cfg = CFG_SS if ss else CFG
    if ss:
        fa, lb = SharedFeatureParty(XA, cfg, keypair=ka), SharedLabelParty(XB, y, cfg, keypair=kb)
    else:
        fa, lb = FeatureParty(XA, cfg, keypair=ka), LabelParty(XB, y, cfg, keypair=kb)
    net = InMemoryNetwork(["A", "B"])
    return fa, lb, net, fa.hello(), lb.hello()  # the hello messages are made outside the timed epoch


def _epoch_concurrent(fa: Any, lb: Any, net: InMemoryNetwork, ha: bytes, hb: bytes) -> None:
    """One epoch with the two parties running at the same time, each in its own thread on half of
    the row's threads (as they would on two machines, and as SPU's simulator runs its parties)."""
    threads = dtxfast.num_threads()
    errors: list[BaseException] = []

    def run(party: Any, me: str, peer: str, hello: bytes) -> None:
        ch = net.channel(me)
        try:
            ch.send(peer, hello)
            while (out := party.receive(ch.recv(peer, timeout=600))) is not None:
                ch.send(peer, out)
        except BaseException as exc:  # pragma: no cover - re-raised below
            errors.append(exc)

    dtxfast.set_num_threads(max(1, threads // 2))
    try:
        workers = [threading.Thread(target=run, args=(fa, "A", "B", ha)),
                   threading.Thread(target=run, args=(lb, "B", "A", hb))]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    finally:
        dtxfast.set_num_threads(threads)
    if errors:
        raise errors[0]
    assert fa.done and lb.done


def _timed_epoch(fa: Any, lb: Any, net: InMemoryNetwork, ha: bytes, hb: bytes) -> None:
    """The timed epoch of the dtxfast rows: the parties side by side on 2+ threads, else in turn."""
    if dtxfast.num_threads() > 1:
        _epoch_concurrent(fa, lb, net, ha, hb)
    else:
        _epoch(fa, lb, net, ha, hb)


def _epoch(fa: Any, lb: Any, net: InMemoryNetwork, ha: bytes, hb: bytes) -> None:
    ca, cb = net.channel("A"), net.channel("B")
    ca.send("B", ha)
    cb.send("A", hb)
    while True:
        oa = fa.receive(ca.recv("B", timeout=0))
        ob = lb.receive(cb.recv("A", timeout=0))
        if oa is None or ob is None:
            break
        ca.send("B", oa)
        cb.send("A", ob)
    assert fa.done and lb.done


@pytest.mark.benchmark(group="vfl.epoch")
@pytest.mark.parametrize("threads", thread_variants())
@pytest.mark.parametrize("n", ROWS)
def test_epoch_dtxfast(benchmark, n, threads):
    measure(benchmark, _timed_epoch, impl="dtxfast", size=n, per=n, rounds=1 if not QUICK else 2, bits=BITS,
            threads=threads, setup=lambda: (_ready_parties(n), {}))


@pytest.mark.benchmark(group="vfl.epoch")
@pytest.mark.parametrize("threads", thread_variants())
@pytest.mark.parametrize("n", ROWS)
def test_epoch_dtxfast_ss(benchmark, n, threads):
    measure(benchmark, _timed_epoch, impl="dtxfast-ss", size=n, per=n, rounds=1 if not QUICK else 2, bits=BITS,
            threads=threads, setup=lambda: (_ready_parties(n, ss=True), {}))


@pytest.mark.benchmark(group="vfl.epoch")
@pytest.mark.parametrize("threads", thread_variants())
@pytest.mark.parametrize("n", ROWS)
def test_epoch_numpy(benchmark, n, threads):
    XA, XB, y = _data(n)
    with blas_threads(threads):
        measure(benchmark, lambda: plain_train_glm(XA, XB, y, CFG), impl="numpy", size=n, per=n, rounds=5,
                bits=BITS, threads=threads)


# -- the same protocol with python-paillier objects -----------------------------------------------
def _phe_keys():
    from phe import paillier

    return paillier.generate_paillier_keypair(n_length=BITS), paillier.generate_paillier_keypair(n_length=BITS)


_phe_keys = functools.lru_cache(maxsize=None)(_phe_keys)


def _phe_epoch(XA: np.ndarray, XB: np.ndarray, t: np.ndarray, wa: np.ndarray, wb: np.ndarray) -> None:
    """One epoch of the dtxfast protocol, both parties, with per-value python-paillier objects."""
    from phe import EncryptedNumber

    (pka, ska), (pkb, skb) = _phe_keys()
    n = len(t)
    XB1 = np.hstack([XB, np.ones((n, 1))])
    for idx in batch_schedule(n, CFG, 0):
        xa, xb = XA[idx], XB1[idx]
        ua, ub = xa @ wa, xb @ wb
        own_a, own_b = ua, ub - t[idx]
        enc_a = [pka.encrypt(float(v)) for v in own_a]  # PARTIAL A -> B
        enc_b = [pkb.encrypt(float(v)) for v in own_b]  # PARTIAL B -> A

        def masked_gradient(rows: np.ndarray, enc_peer: list, own: np.ndarray, pk_peer) -> tuple[list, list]:
            d = [c + float(o) for c, o in zip(enc_peer, own)]
            out, masks = [], []
            for row in rows:
                acc = d[0] * float(row[0])
                for c, x in zip(d[1:], row[1:]):
                    acc = acc + c * float(x)
                r = secrets.randbelow(pk_peer.n)
                out.append(EncryptedNumber(pk_peer, acc.ciphertext(be_secure=False) * pk_peer.raw_encrypt(r)
                                           % pk_peer.nsquare, acc.exponent))
                masks.append(r)
            return out, masks

        ga, ma = masked_gradient(np.vstack([xa.T, ua[None, :]]), enc_b, own_a, pkb)  # MASKED A -> B
        gb, mb = masked_gradient(xb.T, enc_a, own_b, pka)  # MASKED B -> A
        ra = [skb.raw_decrypt(c.ciphertext()) for c in ga[:-1]]  # UNMASKED B -> A (masked residues)
        rb = [ska.raw_decrypt(c.ciphertext()) for c in gb]  # UNMASKED A -> B
        skb.raw_decrypt(ga[-1].ciphertext())  # B's loss term (the mask there is A's correction term)
        # unmask (the asking party) and update
        for res, masks, pk, enc, w in ((ra, ma, pkb, ga, wa), (rb, mb, pka, gb, wb)):
            for j, (v, r) in enumerate(zip(res, masks)):
                s = (v - r) % pk.n
                s = s - pk.n if s > pk.n // 2 else s
                w[j] -= CFG.alpha * float(s) * 16.0 ** enc[j].exponent / len(idx)


@pytest.mark.benchmark(group="vfl.epoch")
@pytest.mark.parametrize("n", ROWS)
def test_epoch_phe(benchmark, n):
    pytest.importorskip("phe")
    XA, XB, y = (a[:PHE_SAMPLE] for a in _data(n))
    XA = (XA - XA.mean(0)) / XA.std(0)
    XB = (XB - XB.mean(0)) / XB.std(0)
    t = (y - y.mean()) / y.std()
    rng = np.random.default_rng(1)
    _phe_keys()
    measure(benchmark, _phe_epoch, impl="phe", size=n, sample=PHE_SAMPLE, rounds=1, bits=BITS, threads=1,
            setup=lambda: ((XA, XB, t, rng.normal(size=D_A) * 0.1, rng.normal(size=D_B + 1) * 0.1), {}))


# -- SecretFlow SPU, two parties without a third (CHEETAH) -------------------------------------------
@pytest.mark.benchmark(group="vfl.epoch")
@pytest.mark.parametrize("n", ROWS)
def test_epoch_spu_cheetah(benchmark, n):
    rows = min(n, SPU_BATCHES * BATCH)
    args = {"model": CFG.model, "rows": rows, "d_a": D_A, "d_b": D_B, "batch": BATCH, "alpha": CFG.alpha,
            "rounds": 1}
    out = peer_row(benchmark, SPU_PYTHON, "_spu_vfl.py", args, impl="spu-cheetah", size=n, threads=CORES,
                   unit="us/elem", per=rows, sample=rows, bits=BITS)
    benchmark.extra_info["note"] = f"SPU {out['spu']} CHEETAH FM64, simulator, {CFG.model}"


# -- logistic regression: dtxfast fast and secret-shared mode, numpy, SPU CHEETAH ------------------
@pytest.mark.benchmark(group="vfl.epoch.logistic")
@pytest.mark.parametrize("n", ROWS)
def test_logistic_epoch_dtxfast(benchmark, n):
    measure(benchmark, _timed_epoch, impl="dtxfast", size=n, per=n, rounds=1 if not QUICK else 2, bits=BITS,
            threads=CORES, setup=lambda: (_ready_parties(n, model="logistic"), {}))


@pytest.mark.benchmark(group="vfl.epoch.logistic")
@pytest.mark.parametrize("n", ROWS)
def test_logistic_epoch_dtxfast_ss(benchmark, n):
    measure(benchmark, _timed_epoch, impl="dtxfast-ss", size=n, per=n, rounds=1 if not QUICK else 2, bits=BITS,
            threads=CORES, setup=lambda: (_ready_parties(n, ss=True, model="logistic"), {}))


@pytest.mark.benchmark(group="vfl.epoch.logistic")
@pytest.mark.parametrize("n", ROWS)
def test_logistic_epoch_numpy(benchmark, n):
    XA, XB, y = _data(n)
    t = _labels(y)
    with blas_threads(CORES):
        measure(benchmark, lambda: plain_train_glm(XA, XB, t, CFG_LOG), impl="numpy", size=n, per=n, rounds=5,
                bits=BITS, threads=CORES)


@pytest.mark.benchmark(group="vfl.epoch.logistic")
@pytest.mark.parametrize("n", ROWS)
def test_logistic_epoch_spu_cheetah(benchmark, n):
    rows = min(n, SPU_BATCHES * BATCH)
    args = {"model": "logistic", "rows": rows, "d_a": D_A, "d_b": D_B, "batch": BATCH, "alpha": CFG_LOG.alpha,
            "rounds": 1}
    out = peer_row(benchmark, SPU_PYTHON, "_spu_vfl.py", args, impl="spu-cheetah", size=n, threads=CORES,
                   unit="us/elem", per=rows, sample=rows, bits=BITS)
    benchmark.extra_info["note"] = f"SPU {out['spu']} CHEETAH FM64, simulator, logistic ({out['sigmoid']} sigmoid)"


# -- bytes on the wire ----------------------------------------------------------------------------
@pytest.mark.benchmark(group="vfl.epoch.bytes")
def test_bytes_dtxfast(benchmark):
    n = 2 * BATCH
    fa, lb, net, ha, hb = _ready_parties(n)
    _epoch(fa, lb, net, ha, hb)
    value = (net.bytes_sent("A") + net.bytes_sent("B")) / n  # includes the two hello messages
    measure(benchmark, lambda: None, impl="dtxfast", size=n, unit="bytes/sample", value=value, bits=BITS)


@pytest.mark.benchmark(group="vfl.epoch.bytes")
def test_bytes_dtxfast_ss(benchmark):
    n = 2 * BATCH
    fa, lb, net, ha, hb = _ready_parties(n, ss=True)
    _epoch(fa, lb, net, ha, hb)
    value = (net.bytes_sent("A") + net.bytes_sent("B")) / n
    measure(benchmark, lambda: None, impl="dtxfast-ss", size=n, unit="bytes/sample", value=value, bits=BITS)


@pytest.mark.benchmark(group="vfl.epoch.bytes")
def test_bytes_floor(benchmark):
    ct = 2 * BITS // 8
    measure(benchmark, lambda: None, impl="floor-ciphertexts", size=2 * BATCH, unit="bytes/sample",
            value=float(2 * ct), bits=BITS)
