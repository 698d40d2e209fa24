"""Interop with python-paillier (phe), both directions, and the backend fallback."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dtxfast.crypto.paillier import generate_keypair
from dtxfast.errors import EncodingOverflowError, KeyMismatch

phe = pytest.importorskip("phe")
from dtxfast.interop import phe as interop  # noqa: E402


@pytest.fixture(scope="module")
def pair():
    return generate_keypair(1024)


@given(xs=st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=6))
def test_dtxfast_to_phe_floats(pair, xs):
    pk, sk = pair
    phe_sk = interop.to_phe_private_key(sk)
    numbers = interop.to_phe(pk.encrypt(xs))
    got = [phe_sk.decrypt(x) for x in numbers]
    assert np.allclose(got, xs, rtol=2.0**-40, atol=2.0**-60)


def test_dtxfast_to_phe_ints_and_odd_exponents(pair):
    pk, sk = pair
    phe_sk = interop.to_phe_private_key(sk)
    assert [phe_sk.decrypt(x) for x in interop.to_phe(pk.encrypt([3, -7]))] == [3, -7]
    odd = pk.encrypt([1.5]) * 0.75  # exponent 64 + 53 - 0: not a multiple of 4
    assert odd.exponent % 4 != 0
    assert phe_sk.decrypt(interop.to_phe(odd)[0]) == pytest.approx(1.125, rel=1e-12)


normal_floats = st.floats(-1e6, 1e6).filter(lambda x: x == 0 or abs(x) > 1e-30)


@given(xs=st.lists(st.one_of(st.integers(-(2**60), 2**60), normal_floats), min_size=1, max_size=6))
def test_phe_to_dtxfast(pair, xs):
    pk, sk = pair
    phe_pk = interop.to_phe_public_key(pk)
    ev = interop.from_phe([phe_pk.encrypt(x) for x in xs], pk)
    got = sk.decrypt(ev)
    assert np.allclose(np.asarray(got, dtype=float), np.asarray(xs, dtype=float), rtol=1e-12, atol=1e-12)


def test_exponents_too_far_apart_raise_instead_of_wrapping(pair):
    pk, _ = pair
    phe_pk = interop.to_phe_public_key(pk)
    with pytest.raises(EncodingOverflowError):
        interop.from_phe([phe_pk.encrypt(1.0), phe_pk.encrypt(2.2e-309)], pk)


def test_keys_convert_both_ways(pair):
    pk, sk = pair
    phe_pk, phe_sk = interop.to_phe_public_key(pk), interop.to_phe_private_key(sk)
    assert interop.from_phe_public_key(phe_pk) == pk
    back = interop.from_phe_private_key(phe_sk)
    assert back.decrypt(pk.encrypt([5])).tolist() == [5]
    # phe-generated keys work in dtxfast
    ppk, psk = phe.generate_paillier_keypair(n_length=1024)
    dsk = interop.from_phe_private_key(psk)
    assert dsk.decrypt(dsk.public_key.encrypt([1.25])).tolist() == [1.25]
    assert psk.decrypt(interop.to_phe(dsk.public_key.encrypt([2.5]))[0]) == 2.5


def test_homomorphic_ops_cross_libraries(pair):
    pk, sk = pair
    phe_pk = interop.to_phe_public_key(pk)
    a = interop.from_phe([phe_pk.encrypt(1.5), phe_pk.encrypt(2)], pk)
    b = pk.encrypt([0.25, 0.5])
    assert sk.decrypt(a + b).tolist() == [1.75, 2.5]


def test_mixed_keys_refused(pair):
    pk, _ = pair
    other, _ = phe.generate_paillier_keypair(n_length=1024)
    with pytest.raises(KeyMismatch):
        interop.from_phe([other.encrypt(1)], pk)


def test_fallback_when_the_extension_is_missing():
    code = (
        "import sys; sys.modules['dtxfast._kernels._paillier'] = None\n"
        "import json, dtxfast\n"
        "from dtxfast.crypto.paillier import generate_keypair\n"
        "pk, sk = generate_keypair(1024)\n"
        "info = dtxfast.backend_info()['_paillier']\n"
        "print(json.dumps([info.backend, info.reason, sk.decrypt(pk.encrypt([1.5]) * 2).tolist()]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    backend, reason, value = json.loads(out.stdout)
    assert backend == "python"
    assert "not available" in reason and "libgmp-dev" in reason
    assert value == [3.0]


def test_forcing_compiled_without_extension_is_a_clear_error():
    code = (
        "import sys; sys.modules['dtxfast._kernels._paillier'] = None\n"
        "import dtxfast.crypto.paillier\n"
    )
    env = dict(os.environ, DTXFAST_BACKEND="compiled")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode != 0
    assert "BackendUnavailable" in out.stderr and "libgmp-dev" in out.stderr


def test_compiled_backend_is_in_use_when_built():
    if not os.environ.get("DTX_REQUIRE_EXTENSIONS"):
        pytest.skip("only meaningful where the build must produce the kernels (CI)")
    import dtxfast

    assert dtxfast.backend_info()["_paillier"].backend == "compiled"
