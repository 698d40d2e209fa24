"""Shared fixtures and the Hypothesis profiles of the test suite.

Profiles: ``ci`` (chosen when ``CI`` is set: no deadline, modest example counts so the whole suite
stays far inside CI's time) and ``dev`` (the default, a little more thorough).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", deadline=None, max_examples=30, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.register_profile("dev", deadline=None, max_examples=50, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))
