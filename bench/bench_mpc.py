"""Three-party MPC benchmarks: Numba kernels, their numpy twin, plaintext numpy and SPU in one run.

Groups
------
``mpc.matmul``  secure product of two secret-shared n x n fixed-point matrices (n = 1000): all three
                parties' local products, the reshare and the truncation, run in one process (so
                the three parties' work adds up on the same cores). ``naive-numpy`` is the
                plaintext product in the same ring (``uint64`` matmul: numpy has no BLAS for
                integers, so it runs one naive loop on one thread); ``floor-blas-f64`` is one
                float64 BLAS product of that shape (1 thread and all cores). The secure product
                costs five ring products between the parties; on AVX-512 IFMA each is three
                IFMA instructions per 8 multiply-adds (``ext/_ring_ifma.h``), elsewhere five
                float64 limb products (``dtxfast.protocols.mpc._ring_ref``; the ``dtxfast-blas`` rows
                force that path with ``DTXFAST_SIMD=0``). ``spu`` is
                SecretFlow SPU's ABY3 (FM64, its three-party simulator) on the same sizes.
``mpc.relu``    secure ReLU (exact comparison by bit decomposition, plus its derivative) on 10^6
                shared values, all three parties; ``numpy`` is ``np.maximum(x, 0)`` in plaintext,
                ``spu`` SPU's ABY3 ``maximum(x, 0)``.
``mpc.epoch``   one training epoch (mini-batch 256) of a 64-32-1 network (64 input features split
                22/21/21 between the parties, one ReLU layer of 32, one linear output) on 100k
                samples, secret-shared; the three parties interleave in one thread
                (``run_local``); on the 2-thread row a second thread gathers the next
                mini-batches' rows ahead (``mlp._batch_rows``), the 1-thread row gathers them
                in place. ``numpy`` trains the same network in plaintext (BLAS pinned to the
                row's threads).
``mpc.epoch.bytes``  MiB each party sends during that epoch (``value`` recorded directly; the
                row's ``note`` lists every party).
``mpc.prf``     the parties' PRF stream: 64 MiB of AES-128-CTR keystream as ``uint64`` words, drawn
                as 1024 draws of 64 KiB (``size`` 64: the epoch's typical draw, one thread
                whatever ``threads`` says) or as one draw (``size`` 65536, on ``threads``
                threads), each into a fresh array; ``dtxfast`` is ``PRFStream`` on the compiled
                VAES kernel (``ext/_prf_aes.h``), ``cryptography`` OpenSSL's AES-CTR
                (``update_into``, what ``PRFStream`` used before; 1 thread). MiB/s.

Every row carries ``threads``: dtxfast on all cores and on 1; the numpy twin
(``dtxfast-python``) and plaintext ``numpy`` integer code on 1; SPU on all cores (its simulator
runs the three parties as threads). The ``spu`` rows need SPU in a venv of its own (it pins
``numpy < 2``): set ``DTX_BENCH_SPU_PYTHON`` to that venv's ``python``; ``bench/_spu_mpc.py`` runs
there. Without it the rows are omitted and ``dtx bench`` says so under the table.

Run: ``dtx bench mpc`` (``--quick`` for small sizes, ``--json`` for the JSON rows).
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from dtxfast.protocols.mpc import MPCParty, PRFStream, _kernels_ref, encode, run_local
from dtxfast.protocols.mpc.mlp import MLPSchedule, init_params, plain_train_mlp, train_program
from dtxfast.transport.channel import InMemoryNetwork
from dtxfast.vfl.dnn import PARTY_NAMES

from ._util import CORES, QUICK, SPU_PYTHON, blas_threads, measure, peer_row, sizes, thread_variants

try:
    from dtxfast.protocols.mpc import _kernels as _numba_kernels
except ImportError:  # pragma: no cover - numba missing
    _numba_kernels = None

MAT_N = sizes([1000], [200])[0]
RELU_N = sizes([1_000_000], [10_000])[0]
EPOCH_N = sizes([100_000], [2_000])[0]
EPOCH_LAYERS = (64, 32, 1)
EPOCH_BATCH = 256

#: (impl, threads) of the secure rows
IMPLS = [("dtxfast", t) for t in thread_variants()] + [("dtxfast-python", 1)]


def _module(impl: str):
    if impl == "dtxfast":
        if _numba_kernels is None:
            pytest.skip("numba not available")
        return _numba_kernels
    return _kernels_ref


def _parties(impl: str, net: InMemoryNetwork) -> list[MPCParty]:
    mod = _module(impl)
    parties = [MPCParty(i, net.channel(n), PARTY_NAMES, kernel_module=mod) for i, n in enumerate(PARTY_NAMES)]
    if impl == "dtxfast-python":  # the pure twin everywhere
        for p in parties:
            p.small_work = p.small_matmul = 1 << 62
    return parties


def _seed(i: int) -> bytes:
    return hashlib.sha256(f"bench/{i}".encode()).digest()[:16]


def _shared_inputs(impl: str, values: list[np.ndarray]):
    """Set up three parties and secret-share ``values`` (value k owned by party k % 3)."""
    net = InMemoryNetwork(PARTY_NAMES)
    parties = _parties(impl, net)

    def prog(p: MPCParty):
        yield from p.setup(_seed(p.index))
        out = []
        for k, v in enumerate(values):
            owner = k % 3
            out.append((yield from p.share_input(owner, encode(v) if p.index == owner else None, v.shape)))
        return out

    shares = run_local([prog(p) for p in parties], [p.channel for p in parties])
    return net, parties, shares


@pytest.mark.benchmark(group="mpc.matmul")
@pytest.mark.parametrize("impl,threads", IMPLS + [("dtxfast-blas", t) for t in thread_variants()] + [("naive-numpy", 1)]
                         + [("floor-blas-f64", t) for t in thread_variants()])
def test_matmul(benchmark, impl, threads, monkeypatch):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(MAT_N, MAT_N)), rng.normal(size=(MAT_N, MAT_N))
    rounds = 1 if impl == "dtxfast-python" and not QUICK else 3
    if impl == "naive-numpy":
        xu, yu = encode(x), encode(y)
        measure(benchmark, lambda: xu @ yu, impl=impl, size=MAT_N, unit="s", per=1, rounds=rounds, threads=1,
                note="uint64 matmul: numpy's plain integer loop, no BLAS")
        return
    if impl == "floor-blas-f64":
        with blas_threads(threads):
            measure(benchmark, lambda: x @ y, impl=impl, size=MAT_N, unit="s", per=1, rounds=rounds,
                    threads=threads)
        return
    note = None
    if impl == "dtxfast-blas":  # the float64 BLAS limb products, what runs without AVX-512 IFMA
        monkeypatch.setenv("DTXFAST_SIMD", "0")
        impl, note = "dtxfast", "DTXFAST_SIMD=0: float64 BLAS limb products instead of AVX-512 IFMA"
    _, parties, shares = _shared_inputs(impl, [x, y])

    def run():
        progs = [p.matmul(s[0], s[1]) for p, s in zip(parties, shares)]
        return run_local(progs, [p.channel for p in parties])

    measure(benchmark, run, impl="dtxfast-blas" if note else impl, size=MAT_N, unit="s", per=1, rounds=rounds,
            threads=threads, **({"note": note} if note else {}))


@pytest.mark.benchmark(group="mpc.matmul")
def test_matmul_spu(benchmark):
    out = peer_row(benchmark, SPU_PYTHON, "_spu_mpc.py", {"op": "matmul", "size": MAT_N, "rounds": 3},
                   impl="spu", size=MAT_N, threads=CORES)
    benchmark.extra_info["note"] = f"SPU {out['spu']} ABY3 FM64, simulator"


@pytest.mark.benchmark(group="mpc.relu")
@pytest.mark.parametrize("impl,threads", IMPLS + [("numpy", 1)])
def test_relu(benchmark, impl, threads):
    x = np.random.default_rng(1).normal(size=RELU_N)
    if impl == "numpy":
        measure(benchmark, lambda: np.maximum(x, 0.0), impl=impl, size=RELU_N, unit="s", per=1, threads=1)
        return
    _, parties, shares = _shared_inputs(impl, [x])

    def run():
        progs = [p.relu(s[0]) for p, s in zip(parties, shares)]
        return run_local(progs, [p.channel for p in parties])

    measure(benchmark, run, impl=impl, size=RELU_N, unit="s", per=1, threads=threads)


@pytest.mark.benchmark(group="mpc.relu")
def test_relu_spu(benchmark):
    out = peer_row(benchmark, SPU_PYTHON, "_spu_mpc.py", {"op": "relu", "size": RELU_N, "rounds": 3},
                   impl="spu", size=RELU_N, threads=CORES)
    benchmark.extra_info["note"] = f"SPU {out['spu']} ABY3 FM64, simulator"


def _epoch_data():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(EPOCH_N, EPOCH_LAYERS[0])) / 2
    w = rng.normal(size=EPOCH_LAYERS[0])
    y = np.tanh(X @ w / 4).reshape(-1, 1)
    sched = MLPSchedule(EPOCH_LAYERS, "regression", 0.05, EPOCH_BATCH, 1, 1e-3, 0.0, 0,
                        init_params(EPOCH_LAYERS, 0))
    cuts = np.array_split(np.arange(EPOCH_LAYERS[0]), 3)
    return X, y, sched, [X[:, c] for c in cuts]


_EPOCH_BYTES: dict[str, float] = {}


@pytest.mark.benchmark(group="mpc.epoch")
@pytest.mark.parametrize("impl,threads", IMPLS + [("numpy", t) for t in thread_variants()])
def test_epoch(benchmark, impl, threads):
    X, y, sched, parts = _epoch_data()
    if impl == "numpy":
        with blas_threads(threads):
            measure(benchmark, lambda: plain_train_mlp(X, y, sched), impl=impl, size=EPOCH_N, unit="s", per=1,
                    threads=threads)
        return
    cols = [p.shape[1] for p in parts]

    def run():
        net = InMemoryNetwork(PARTY_NAMES)
        parties = _parties(impl, net)
        progs = [train_program(p, parts[p.index], cols, EPOCH_N, 2, y if p.index == 2 else None, sched,
                               _seed(p.index)) for p in parties]
        run_local(progs, [p.channel for p in parties])
        _EPOCH_BYTES.update({n: net.bytes_sent(n) for n in PARTY_NAMES})

    measure(benchmark, run, impl=impl, size=EPOCH_N, unit="s", per=1, rounds=2, threads=threads)


@pytest.mark.benchmark(group="mpc.epoch.bytes")
def test_epoch_bytes(benchmark):
    if not _EPOCH_BYTES:  # run alone (-k): measure one epoch here
        _, y, sched, parts = _epoch_data()
        net = InMemoryNetwork(PARTY_NAMES)
        parties = _parties("dtxfast-python", net)
        cols = [p.shape[1] for p in parts]
        progs = [train_program(p, parts[p.index], cols, EPOCH_N, 2, y if p.index == 2 else None, sched)
                 for p in parties]
        run_local(progs, [p.channel for p in parties])
        _EPOCH_BYTES.update({n: net.bytes_sent(n) for n in PARTY_NAMES})
    mib = {n: round(b / 2**20, 2) for n, b in _EPOCH_BYTES.items()}
    note = "MiB sent per party per epoch (incl. sharing the inputs): " + ", ".join(f"{k} {v}" for k, v in mib.items())
    measure(benchmark, lambda: None, impl="dtxfast", size=EPOCH_N, unit="MiB/party", rounds=1,
            value=max(mib.values()), note=note)


PRF_MIB = 1 if QUICK else 64


@pytest.mark.benchmark(group="mpc.prf")
@pytest.mark.parametrize("kib", [64, 65536])
@pytest.mark.parametrize("impl,threads", [("dtxfast", t) for t in thread_variants()] + [("cryptography", 1)])
def test_prf(benchmark, impl, threads, kib):
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    kib = min(kib, PRF_MIB * 1024)
    words, draws = kib * 128, PRF_MIB * 1024 // kib
    if impl == "dtxfast":
        stream = PRFStream(_seed(0))

        def run():
            for _ in range(draws):
                stream.draw(words)
    else:
        enc = Cipher(algorithms.AES(_seed(0)), modes.CTR(bytes(16))).encryptor()
        zeros = memoryview(bytes(8 * words))

        def run():
            for _ in range(draws):
                out = np.empty(words + 2, dtype=np.uint64)  # update_into wants 15 spare bytes
                enc.update_into(zeros, out.data.cast("B"))

    measure(benchmark, run, impl=impl, size=kib, unit="MiB/s", per=1, mib=PRF_MIB, rounds=5, threads=threads)
