"""Drop-in replacements for other libraries' APIs, backed by dtxfast's kernels.

* :mod:`dtxfast.compat.phe`: python-paillier 1.5 (``phe``). Change
  ``from phe import paillier`` to ``from dtxfast.compat.phe import paillier`` and the program
  runs on dtxfast's compiled Paillier kernel.
"""

from __future__ import annotations

__all__: list[str] = []
