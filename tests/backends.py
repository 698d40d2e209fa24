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


def compiled_or_skip(name: str) -> ModuleType:
    """The compiled module of kernel ``name``; skip (or fail, under DTX_REQUIRE_EXTENSIONS) if missing."""
    try:
        return compiled_kernel(name)
    except BackendUnavailable as exc:
        if REQUIRE_EXTENSIONS:
            pytest.fail(f"DTX_REQUIRE_EXTENSIONS is set but {exc}")
        pytest.skip(str(exc))
