"""Helpers shared by the tests of the three-party MPC area (tests/test_mpc_*.py)."""

from __future__ import annotations

import hashlib
from typing import Any, Callable

import numpy as np
import pytest

from dtxfast.protocols.mpc import MPCParty, run_local
from dtxfast.protocols.mpc import _kernels_ref
from dtxfast.transport.channel import InMemoryNetwork

NAMES = ["P0", "P1", "P2"]


def _numba_kernels() -> Any:
    try:
        from dtxfast.protocols.mpc import _kernels
    except ImportError:  # pragma: no cover - numba missing
        pytest.skip("numba not available")
    return _kernels


#: the two kernel backends every protocol test runs against
BACKENDS = ["numba", "numpy"]


def kernel_module(name: str) -> Any:
    return _numba_kernels() if name == "numba" else _kernels_ref


def run3(
    fn: Callable[[MPCParty], Any],
    *,
    backend: str = "numba",
    frac_bits: int = 16,
    record: bool = False,
    seed: int = 0,
) -> tuple[list[Any], InMemoryNetwork]:
    """Run generator function ``fn(party)`` as all three parties in one process."""
    net = InMemoryNetwork(NAMES, record=record)
    mod = kernel_module(backend)
    parties = [MPCParty(i, net.channel(n), NAMES, frac_bits=frac_bits, kernel_module=mod)
               for i, n in enumerate(NAMES)]
    for p in parties:
        p.small_work = p.small_matmul = 0  # exercise the selected kernels even on tiny inputs

    def program(p: MPCParty) -> Any:
        key = hashlib.sha256(f"{seed}/{p.index}".encode()).digest()[:16]
        yield from p.setup(key)
        return (yield from fn(p))

    out = run_local([program(p) for p in parties], [p.channel for p in parties])
    assert net.pending() == 0
    return out, net


def u64(rng: np.random.Generator, shape: Any) -> np.ndarray:
    return rng.integers(0, 2**64, size=shape, dtype=np.uint64, endpoint=False)


DATA = __import__("pathlib").Path(__file__).parent / "data" / "dnn_paddlefl"


def load_paddledtx_boston() -> tuple[list[np.ndarray], np.ndarray, list[np.ndarray], np.ndarray]:
    """PaddleDTX's three-party Boston files: train parts, train y, predict parts, predict y."""

    def read(name: str) -> tuple[list[str], np.ndarray]:
        with open(DATA / name) as fh:
            header = fh.readline().strip().split(",")
        arr = np.loadtxt(DATA / name, delimiter=",", skiprows=1)
        return header, arr[np.argsort(arr[:, header.index("id")])]

    train = [read(f"train_data{c}.csv") for c in "ABC"]
    pred = [read(f"predict_data{c}.csv") for c in "ABC"]
    for group in (train, pred):
        ids = group[0][1][:, 0]
        assert all(np.array_equal(g[1][:, 0], ids) for g in group)
    hdr_c = train[2][0]
    y = train[2][1][:, hdr_c.index("MEDV")]
    xtr = [h_a[1][:, 1:] for h_a in train[:2]] + [np.delete(train[2][1], [0, hdr_c.index("MEDV")], axis=1)]
    xpr = [g[1][:, 1:] for g in pred]
    # targetValues.csv: match on originId (its `id` column has one typo, row originId 25 says 5)
    with open(DATA / "targetValues.csv") as fh:
        thdr = fh.readline().strip().split(",")
    tv = np.loadtxt(DATA / "targetValues.csv", delimiter=",", skiprows=1)
    tv = tv[np.argsort(tv[:, thdr.index("originId")])]
    assert np.array_equal(tv[:, thdr.index("originId")], pred[0][1][:, 0])
    return xtr, y, xpr, tv[:, thdr.index("MEDV")]
