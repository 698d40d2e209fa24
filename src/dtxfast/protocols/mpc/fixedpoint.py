"""Fixed-point encoding of reals into Z_2^64 (two's complement, ``frac_bits`` fractional bits)."""

from __future__ import annotations

import numpy as np

from ...errors import EncodingOverflowError, ParameterError

__all__ = ["DEFAULT_FRAC_BITS", "check_frac_bits", "decode", "encode"]

#: fractional bits of the default fixed-point format (resolution 2^-16 ~ 1.5e-5)
DEFAULT_FRAC_BITS = 16


def check_frac_bits(frac_bits: int) -> int:
    """Validate a number of fractional bits (8..30)."""
    if not isinstance(frac_bits, (int, np.integer)) or not 8 <= int(frac_bits) <= 30:
        raise ParameterError(f"frac_bits must be an int in 8..30, not {frac_bits!r}")
    return int(frac_bits)


def encode(x: np.ndarray | float, frac_bits: int = DEFAULT_FRAC_BITS) -> np.ndarray:
    """Round ``x * 2**frac_bits`` to the nearest integer and map it into Z_2^64.

    Raises
    ------
    EncodingOverflowError
        If a value is not finite or ``|x| >= 2**(40 - frac_bits)``: larger values would leave too
        little headroom for products (truncation is exact below ``2^62`` at the doubled scale).

    Examples
    --------
    >>> decode(encode([1.5, -2.25]))
    array([ 1.5 , -2.25])
    """
    arr = np.asarray(x, dtype=np.float64)
    limit = 2.0 ** (40 - frac_bits)
    if not np.all(np.isfinite(arr)) or (arr.size and np.abs(arr).max() >= limit):
        raise EncodingOverflowError(f"fixed-point values must be finite with |x| < 2^{40 - frac_bits}")
    return np.rint(arr * (1 << frac_bits)).astype(np.int64).view(np.uint64)


def decode(u: np.ndarray, frac_bits: int = DEFAULT_FRAC_BITS) -> np.ndarray:
    """Inverse of :func:`encode`: read ``u`` as signed and divide by ``2**frac_bits``."""
    return np.asarray(u, dtype=np.uint64).view(np.int64).astype(np.float64) / (1 << frac_bits)
