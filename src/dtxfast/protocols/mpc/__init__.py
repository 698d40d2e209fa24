"""Three-party secure computation on replicated 2-out-of-3 secret sharing over Z_2^64.

ABY3-style (Araki et al. 2016; Mohassel & Rindal 2018) arithmetic and boolean sharing between
three parties with an honest majority, semi-honest security: sharing and reconstruction, local
addition, multiplication and matrix multiplication with correlated randomness from pairwise
AES-CTR seeds, fixed-point numbers with exact truncation (stochastic rounding of the last bit), exact comparison by bit
decomposition, ReLU and a piecewise-linear sigmoid. See :mod:`.party` for the protocol and its
security notes; :mod:`.mlp` holds the per-party programs that train a neural network with it (the estimators are
in :mod:`dtxfast.vfl.dnn`).

The local work runs in Numba kernels (``_kernels``) or their pure-numpy twin (``_kernels_ref``,
chosen by ``DTXFAST_BACKEND=python`` or when Numba is missing).
"""

from __future__ import annotations

from ._select import kernels as _load_kernels
from .fixedpoint import DEFAULT_FRAC_BITS, decode, encode
from .party import SIGMOID_KNOTS, ArithShare, BoolShare, MPCParty, Proto
from .prf import PRFStream
from .runner import run_blocking, run_local

_load_kernels()  # choose (and register) the backend at import, as every primitive module does

__all__ = [
    "DEFAULT_FRAC_BITS",
    "SIGMOID_KNOTS",
    "ArithShare",
    "BoolShare",
    "MPCParty",
    "PRFStream",
    "Proto",
    "decode",
    "encode",
    "run_blocking",
    "run_local",
]
