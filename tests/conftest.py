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
