"""Which kernel backends the tests run on, and the one rule for a missing compiled kernel.

A test that needs a compiled kernel asks :func:`compiled_or_skip`: it skips when the kernel was
not built, unless ``DTX_REQUIRE_EXTENSIONS`` is set (CI sets it), where a missing kernel fails the
test instead of hiding behind a skip. Switching backends goes through
:func:`dtxfast._backend.use_backend`, the one switch the tests and the benchmarks share.
"""

from __future__ import annotations

import os
from types import ModuleType

import pytest

from dtxfast._backend import compiled_kernel
from dtxfast.errors import BackendUnavailable

#: set in CI: a kernel that should have been built is a failure, not a skip
REQUIRE_EXTENSIONS = os.environ.get("DTX_REQUIRE_EXTENSIONS", "") not in ("", "0")
#: the compiled (Cython/C) kernels, switched together by the ``backend`` fixture
C_KERNELS = ("_paillier", "_merkle", "_psi", "_ot")


def compiled_or_none(name: str) -> ModuleType | None:
    """The compiled module of kernel ``name``, or None where it was not built (for module-level
    ``skipif`` marks); under DTX_REQUIRE_EXTENSIONS a missing kernel raises instead."""
    try:
        return compiled_kernel(name)
    except BackendUnavailable:
        if REQUIRE_EXTENSIONS:
            raise
        return None


def compiled_or_skip(name: str) -> ModuleType:
    """The compiled module of kernel ``name``; skip (or fail, under DTX_REQUIRE_EXTENSIONS) if missing."""
    try:
        return compiled_kernel(name)
    except BackendUnavailable as exc:
        if REQUIRE_EXTENSIONS:
            pytest.fail(f"DTX_REQUIRE_EXTENSIONS is set but {exc}")
        pytest.skip(str(exc))


def paillier_contexts(mod: ModuleType, n: int, p: int, q: int, simd: bool) -> tuple:
    """``(PublicContext, PrivateContext)`` of Paillier kernel module ``mod`` for the key ``n = p q``;
    ``simd=False`` builds them with ``DTXFAST_SIMD=0`` (the GMP paths; read when a context is
    created), the environment restored afterwards."""
    saved = os.environ.get("DTXFAST_SIMD")
    if not simd:
        os.environ["DTXFAST_SIMD"] = "0"
    try:
        pub = mod.PublicContext(n)
        return pub, mod.PrivateContext(pub, p, q)
    finally:
        if saved is None:
            os.environ.pop("DTXFAST_SIMD", None)
        else:
            os.environ["DTXFAST_SIMD"] = saved
