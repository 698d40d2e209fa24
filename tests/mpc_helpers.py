"""Helpers shared by the tests of the three-party MPC area (tests/test_mpc_*.py)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from dtxfast.protocols.mpc import MPCParty, _kernels_ref, run_local
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
    from dtxfast.vfl.dnn import read_paddledtx_dnn

    d = read_paddledtx_dnn(DATA)
    assert d.predict_y is not None
    return d.train_parts, d.train_y, d.predict_parts, d.predict_y
