"""Shared fixtures and the Hypothesis profiles of the test suite.

Profiles: ``ci`` (chosen when ``CI`` is set: no deadline, modest example counts so the whole suite
stays far inside CI's time) and ``dev`` (the default, a little more thorough).
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", deadline=None, max_examples=30, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.register_profile("dev", deadline=None, max_examples=50, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


# -- kernel backends ---------------------------------------------------------------------------
@pytest.fixture(params=["compiled", "python"])
def backend(request: pytest.FixtureRequest):
    """Run the test with the compiled C kernels and with their pure-Python twins (``use_backend``)."""
    from backends import C_KERNELS, compiled_or_skip

    from dtxfast._backend import use_backend

    if request.param == "compiled":
        for name in C_KERNELS:
            compiled_or_skip(name)
    with use_backend(request.param, C_KERNELS):
        yield request.param


# -- Paillier keys (1024-bit primes made once; each backend builds its own key objects) --------
@pytest.fixture(scope="session")
def primes_1024() -> tuple[int, int]:
    from dtxfast.crypto.paillier import generate_keypair

    _, sk = generate_keypair(1024)
    return sk.p, sk.q


@pytest.fixture(scope="session", params=["compiled", "compiled-gmp", "python"])
def keys(request: pytest.FixtureRequest, primes_1024: tuple[int, int]):
    """Paillier keys on each backend ("compiled-gmp": the compiled kernel off its IFMA path)."""
    from paillier_helpers import build_keys

    return build_keys(request.param, *primes_1024)


@pytest.fixture(scope="session", params=["compiled", "compiled-gmp"])
def both_keys(request: pytest.FixtureRequest, primes_1024: tuple[int, int]):
    """A compiled path and the pure-Python reference on the same modulus."""
    from paillier_helpers import build_keys

    return build_keys(request.param, *primes_1024), build_keys("python", *primes_1024)


@pytest.fixture(scope="session")
def etcd_cluster():
    """A 3-member etcd cluster on loopback for the whole session (the ledger contract suite gives
    each test a chain of its own on it); skipped where no ``etcd`` binary is installed."""
    from dtxfast.ledger.etcd_local import LocalEtcdCluster, etcd_binary

    if etcd_binary() is None:
        pytest.skip("etcd is not installed (apt-get install etcd-server)")
    cluster = LocalEtcdCluster(3)
    try:
        yield cluster
    finally:
        cluster.stop()


# real node processes on loopback (dtx storage start, ...): see node_procs.py
from node_procs import node_launcher, session_node_launcher  # noqa: E402, F401
