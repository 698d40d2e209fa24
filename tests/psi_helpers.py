"""Helpers of the PSI tests: keys (1024-bit, made once); the ``backend`` fixture is in conftest.py."""

from __future__ import annotations

import importlib

from backends import REQUIRE_EXTENSIONS

from dtxfast.crypto.blind_rsa import BlindRSASigner

_KEYS: dict[int, BlindRSASigner] = {}


def rsa_key(i: int = 0) -> BlindRSASigner:
    """A 1024-bit signer key, generated once per test session (i selects one of several)."""
    if i not in _KEYS:
        _KEYS[i] = BlindRSASigner.generate(1024)
    return _KEYS[i]


def compiled_kernel():  # type: ignore[no-untyped-def]
    """The compiled PSI kernel, or None where it was not built (under DTX_REQUIRE_EXTENSIONS: fails)."""
    try:
        return importlib.import_module("dtxfast._kernels._psi")
    except ImportError:
        if REQUIRE_EXTENSIONS:
            raise
        return None
