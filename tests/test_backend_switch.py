"""``use_backend``: the one switch between compiled kernels and pure-Python twins."""

from __future__ import annotations

import pytest
from backends import compiled_or_skip

from dtxfast._backend import use_backend
from dtxfast.crypto import _merkle_py, _paillier_py, _psi_py, blind_rsa, ecdh, merkle, paillier
from dtxfast.errors import ParameterError
from dtxfast.protocols.mpc import _kernels_ref
from dtxfast.protocols.mpc._select import kernels as mpc_kernels


def _now() -> tuple:
    return paillier._kernel, merkle._kernel, blind_rsa._kernel, ecdh._kernel, mpc_kernels()


def test_python_switches_every_kernel_and_restores_them_even_after_an_error() -> None:
    before = _now()
    with pytest.raises(RuntimeError), use_backend("python"):
        assert _now() == (_paillier_py, _merkle_py, _psi_py, _psi_py, _kernels_ref)
        raise RuntimeError("boom")
    assert _now() == before


def test_compiled_switches_to_the_built_kernels() -> None:
    expect = tuple(compiled_or_skip(n) for n in ("_paillier", "_merkle", "_psi"))
    with use_backend("python"), use_backend("compiled", ["_paillier", "_merkle", "_psi"]):
        assert (paillier._kernel, merkle._kernel, blind_rsa._kernel) == expect
        assert ecdh._kernel is expect[2]


def test_only_the_named_kernels_switch_and_names_are_checked() -> None:
    before = _now()
    with use_backend("python", ["_merkle"]):
        assert merkle._kernel is _merkle_py and paillier._kernel is before[0]
    with pytest.raises(ParameterError), use_backend("python", ["_nope"]):
        pass
    with pytest.raises(ParameterError), use_backend("gpu"):  # type: ignore[arg-type]
        pass
    assert _now() == before
