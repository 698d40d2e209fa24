"""Helpers of the PSI tests: keys (1024-bit, made once), id strategies; the ``backend`` fixture is in conftest.py."""

from __future__ import annotations

from hypothesis import strategies as st

from dtxfast.crypto.blind_rsa import BlindRSASigner

_KEYS: dict[int, BlindRSASigner] = {}


def rsa_key(i: int = 0) -> BlindRSASigner:
    """A 1024-bit signer key, generated once per test session (i selects one of several)."""
    if i not in _KEYS:
        _KEYS[i] = BlindRSASigner.generate(1024)
    return _KEYS[i]


# ids: short ascii from a small alphabet (so sets overlap), unicode, and very long ones
id_text = st.one_of(
    st.text(alphabet="abcde", max_size=3),
    st.text(max_size=12),
    st.text(alphabet="xy", min_size=500, max_size=2000),
)
id_lists = st.lists(id_text, max_size=40)
