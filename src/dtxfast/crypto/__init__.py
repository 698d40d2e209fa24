"""Primitives (L1): typed, validated, documented cryptographic building blocks.

Submodules: :mod:`dtxfast.crypto.paillier` (additively homomorphic encryption, batch-first).
"""

from __future__ import annotations

__all__: list[str] = []
