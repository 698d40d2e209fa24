"""Scale benchmarks: the batch kernels on the local backend and as Ray tasks, same cores, same run.

Groups ``scale.encrypt`` (Paillier-encrypt 10^6 floats), ``scale.dot`` (``X @ E(v)`` for a float
X of 1000 x 10,000) and ``scale.psi_sign`` (blind-RSA signatures of 10^6 blinded values), at
2048-bit keys. Impls: ``dtxfast`` (the local kernels, OpenMP on all cores of this machine) and
``dtxfast-ray`` (a Ray cluster of as many 1-CPU workers as cores, started on 127.0.0.1 by this
suite; the private key is sent to the workers for signing). Both rows run on the same cores
(``threads``); the ray row's note gives Ray's overhead: its time over the local row's, minus 1.
Values are throughput (elements, or entries of X, per second; higher is better). Each full-size
call takes about a minute on 2 cores, so full sizes run one round each after a warm-up of both
backends (the DJN table is built on every worker before timing).

Run: ``dtx bench scale`` (``--quick``: 2000 values, 64 x 512, 2000 signatures).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import dtxfast
from dtxfast.compute import LocalCompute
from dtxfast.compute.ray_backend import RayCompute
from dtxfast.crypto.blind_rsa import BlindRSASigner
from dtxfast.crypto.paillier import generate_keypair

from ._util import QUICK, measure

BITS = 2048
CORES = dtxfast.num_threads()
N_ENC = 2_000 if QUICK else 1_000_000
DOT_M, DOT_K = (64, 512) if QUICK else (1000, 10_000)
N_SIGN = 2_000 if QUICK else 1_000_000
ROUNDS = 2 if QUICK else 1

ray = pytest.importorskip("ray", reason="dtx bench scale needs the ray extra: pip install 'dtxfast[ray]'")

_local_median: dict[str, float] = {}


@pytest.fixture(scope="module")
def backends():
    rc = RayCompute("local", num_cpus=CORES, object_store_memory=3 * 2**30, private_keys="send")
    try:
        yield LocalCompute(), rc
    finally:
        rc.close()


@pytest.fixture(scope="module")
def paillier_keys(backends):
    pk, sk = generate_keypair(BITS)
    # every worker builds the key's DJN table before timing (a second handle on the same cluster)
    RayCompute(chunk_size=32).encrypt(pk, np.zeros(32 * 4 * CORES))
    pk.encrypt([0.0])
    return pk, sk


@pytest.fixture(scope="module")
def signer():
    return BlindRSASigner.generate(BITS)


def _blinded(signer: BlindRSASigner, n: int) -> np.ndarray:
    """n values uniform below the modulus (what blinded hashes are), without blinding n ids."""
    k = signer.public_key().k
    top = signer.public_key().n >> (8 * (k - 1))
    rows = np.frombuffer(os.urandom(n * k), dtype=np.uint8).reshape(n, k).copy()
    rows[:, 0] %= np.uint8(top)  # below n's top byte: below n
    rows[:, -1] |= 1  # never 0
    return rows


def _record(benchmark, group: str, impl: str) -> None:
    median = benchmark.stats.stats.median
    if impl == "dtxfast":
        _local_median[group] = median
    elif group in _local_median:
        benchmark.extra_info["note"] = f"Ray overhead {100 * (median / _local_median[group] - 1):+.1f} %"


def _backend(backends, impl: str):
    return backends[0] if impl == "dtxfast" else backends[1]


IMPLS = ["dtxfast", "dtxfast-ray"]


@pytest.mark.benchmark(group="scale.encrypt")
@pytest.mark.parametrize("impl", IMPLS)
def test_encrypt(benchmark, backends, paillier_keys, impl):
    pk, sk = paillier_keys
    cb = _backend(backends, impl)
    x = np.random.default_rng(0).normal(scale=1e3, size=N_ENC)
    ev = measure(benchmark, lambda: cb.encrypt(pk, x), impl=impl, size=N_ENC, unit="ops/s",
                 rounds=ROUNDS, threads=CORES, bits=BITS)
    _record(benchmark, "scale.encrypt", impl)
    idx = np.random.default_rng(1).integers(0, N_ENC, size=64)  # spot check, outside the timing
    np.testing.assert_array_equal(sk.decrypt(ev[idx]), sk.decrypt(pk.encrypt(x[idx])))


@pytest.mark.benchmark(group="scale.dot")
@pytest.mark.parametrize("impl", IMPLS)
def test_dot(benchmark, backends, paillier_keys, impl):
    pk, sk = paillier_keys
    cb = _backend(backends, impl)
    rng = np.random.default_rng(2)
    v = rng.normal(size=DOT_K)
    ev = pk.encrypt(v)
    X = rng.normal(size=(DOT_M, DOT_K))
    out = measure(benchmark, lambda: cb.matmul(X, ev), impl=impl, size=DOT_M * DOT_K, unit="entries/s",
                  rounds=ROUNDS, threads=CORES, bits=BITS)
    _record(benchmark, "scale.dot", impl)
    np.testing.assert_allclose(sk.decrypt(out[:4]), X[:4] @ v, rtol=1e-9, atol=1e-9)


@pytest.mark.benchmark(group="scale.psi_sign")
@pytest.mark.parametrize("impl", IMPLS)
def test_psi_sign(benchmark, backends, signer, impl):
    cb = _backend(backends, impl)
    blinded = _blinded(signer, N_SIGN)
    out = measure(benchmark, lambda: cb.sign_blinded(signer, blinded), impl=impl, size=N_SIGN, unit="ids/s",
                  rounds=ROUNDS, threads=CORES, bits=BITS)
    _record(benchmark, "scale.psi_sign", impl)
    assert np.array_equal(out[:16], signer.sign_blinded(blinded[:16]))

