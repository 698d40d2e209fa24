"""Shared fixtures of the PSI tests: keys (1024-bit, made once) and both kernel backends."""

from __future__ import annotations

import importlib
from typing import Iterator

import pytest

import dtxfast.crypto.blind_rsa as blind_rsa
import dtxfast.crypto.ecdh as ecdh
from dtxfast.crypto import _psi_py
from dtxfast.crypto.blind_rsa import BlindRSASigner

_KEYS: dict[int, BlindRSASigner] = {}


def rsa_key(i: int = 0) -> BlindRSASigner:
    """A 1024-bit signer key, generated once per test session (i selects one of several)."""
    if i not in _KEYS:
        _KEYS[i] = BlindRSASigner.generate(1024)
    return _KEYS[i]


def compiled_kernel():  # type: ignore[no-untyped-def]
    try:
        return importlib.import_module("dtxfast._kernels._psi")
    except ImportError:
        return None


BACKENDS = ["compiled", "python"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run the test with the compiled kernel and with the pure-Python twin."""
    if request.param == "compiled":
        kernel = compiled_kernel()
        if kernel is None:
            pytest.skip("compiled PSI kernel not built")
    else:
        kernel = _psi_py
    saved = (blind_rsa._kernel, ecdh._kernel)
    blind_rsa._kernel = kernel
    ecdh._kernel = kernel
    try:
        yield request.param
    finally:
        blind_rsa._kernel, ecdh._kernel = saved
