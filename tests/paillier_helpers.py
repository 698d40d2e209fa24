"""Helpers of the Paillier tests: key objects per backend (the fixtures are in conftest.py).

Primes are generated once per session; each backend builds its own key objects from them, so
every property runs against both kernels with the same modulus.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass

import numpy as np
from backends import compiled_or_skip

from dtxfast._backend import use_backend
from dtxfast.crypto.paillier import PaillierPrivateKey, PaillierPublicKey

# "compiled" uses the AVX-512 IFMA path where the CPU has it; "compiled-gmp" forces the GMP path.
BACKENDS = ["compiled", "compiled-gmp", "python"]


def kernel_module(backend: str):
    if backend == "python":
        return importlib.import_module("dtxfast.crypto._paillier_py")
    return compiled_or_skip("_paillier")


@dataclass
class Keys:
    backend: str
    pk: PaillierPublicKey
    sk: PaillierPrivateKey
    module: object


def build_keys(backend: str, p: int, q: int, obfuscation: str = "djn") -> Keys:
    module = kernel_module("python" if backend == "python" else "compiled")
    saved_env = os.environ.get("DTXFAST_SIMD")
    if backend == "compiled-gmp":
        os.environ["DTXFAST_SIMD"] = "0"  # read when the kernel contexts are created
    try:
        with use_backend("python" if backend == "python" else "compiled", ["_paillier"]):
            pk = PaillierPublicKey(p * q, obfuscation=obfuscation)  # type: ignore[arg-type]
            sk = PaillierPrivateKey(pk, p, q)
    finally:
        if saved_env is None:
            os.environ.pop("DTXFAST_SIMD", None)
        else:
            os.environ["DTXFAST_SIMD"] = saved_env
    if backend == "compiled-gmp":
        assert not pk._ctx.simd and not sk._ctx.simd
    return Keys(backend, pk, sk, module)


class CountingRand:
    """A deterministic randfunc (SHAKE-256 stream) so both backends draw the same randomness."""

    def __init__(self, seed: bytes) -> None:
        from Crypto.Hash import SHAKE256

        self._shake = SHAKE256.new(seed)

    def __call__(self, k: int) -> bytes:
        return self._shake.read(k)


def rel_close(a: np.ndarray, b: np.ndarray, rel: float = 2.0**-40, abs_: float = 2.0**-60) -> bool:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return bool(np.all(np.abs(a - b) <= np.maximum(rel * np.abs(b), abs_)))
