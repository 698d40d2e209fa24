"""python-paillier's fixed-point encoding (``phe.encoding``): :class:`EncodedNumber`.

A number is ``mantissa * BASE ** exponent`` (``BASE = 16``) with the mantissa kept mod ``n``:
values up to ``max_int = n // 3 - 1`` in magnitude are positive (``m <= max_int``) or negative
(``m >= n - max_int``), and the band between them means overflow. ``encode`` picks the exponent as
python-paillier does -- ``0`` for ints, the exponent of the float's least significant bit
(rounded down to a power of ``BASE``) for floats, ``floor(log_BASE(precision))`` when a precision
is given, never above ``max_exponent`` -- and rounds half to even, exactly, so the encodings (and
hence the ciphertexts' meaning) are the same as python-paillier's. Subclasses may change ``BASE``
and ``LOG2_BASE``.

Examples
--------
>>> from dtxfast.compat.phe import paillier
>>> from dtxfast.compat.phe.encoding import EncodedNumber
>>> pk = paillier.PaillierPublicKey(126869)
>>> e = EncodedNumber.encode(pk, 1.5, precision=0.1)
>>> e.exponent, e.encoding, e.decode()
(-1, 24, 1.5)
>>> EncodedNumber.encode(pk, -15).encoding == pk.n - 15
True
"""

from __future__ import annotations

import math
import sys
from fractions import Fraction
from typing import Any

from ...errors import EncodingOverflowError, ParameterError, WrongType

__all__ = ["EncodedNumber"]


def _round_half_even(num: int, den: int) -> int:
    """``round(num / den)`` exactly, ties to even (``den > 0``)."""
    q, r = divmod(num, den)
    twice = 2 * r
    if twice > den or (twice == den and q & 1):
        q += 1
    return q


def _scaled(scalar: Any, base: int, exponent: int) -> int:
    """``round(scalar * base ** -exponent)`` exactly, ties to even (as python-paillier rounds)."""
    if type(scalar) is float or isinstance(scalar, float):
        num, den = float(scalar).as_integer_ratio()  # OverflowError for inf, ValueError for nan
    elif isinstance(scalar, int):
        num, den = int(scalar), 1
    else:
        f = Fraction(scalar)
        num, den = f.numerator, f.denominator
    if exponent <= 0:
        num *= base ** -exponent
    else:
        den *= base**exponent
    if den == 1:
        return num
    return _round_half_even(num, den)


def _decode(public_key: Any, encoding: int, exponent: int, base: int) -> int | float:
    n = public_key.n
    max_int = public_key.max_int
    if encoding >= n:
        raise ParameterError("Attempted to decode corrupted number")
    if encoding <= max_int:
        mantissa = encoding
    elif encoding >= n - max_int:
        mantissa = encoding - n
    else:
        raise EncodingOverflowError("Overflow detected in decrypted number")
    if exponent >= 0:
        return mantissa * base**exponent
    try:
        return mantissa / base**-exponent
    except OverflowError as exc:
        raise EncodingOverflowError("decoded result too large for a float") from exc


class EncodedNumber:
    """A float or int encoded for Paillier encryption: ``encoding`` (mod ``n``) and ``exponent``.

    Parameters
    ----------
    public_key : PaillierPublicKey
        The key whose ``n`` and ``max_int`` define the encoding.
    encoding : int
        The mantissa, reduced mod ``n`` (negative values wrapped).
    exponent : int
        The value is ``mantissa * BASE ** exponent``.

    Examples
    --------
    >>> from dtxfast.compat.phe import paillier
    >>> pk = paillier.PaillierPublicKey(126869)
    >>> EncodedNumber(pk, 7, -1).decode()
    0.4375
    >>> EncodedNumber.encode(pk, 3.14, precision=1e-2).exponent
    -2
    """

    BASE = 16
    #: ``log2(BASE)``, used to pick a float's exponent
    LOG2_BASE = math.log(BASE, 2)
    FLOAT_MANTISSA_BITS = sys.float_info.mant_dig

    def __init__(self, public_key: Any, encoding: int, exponent: int) -> None:
        self.public_key = public_key
        self.encoding = encoding
        self.exponent = exponent

    def __repr__(self) -> str:
        return f"<EncodedNumber encoding={self.encoding} exponent={self.exponent}>"

    @classmethod
    def encode(
        cls,
        public_key: Any,
        scalar: Any,
        precision: float | None = None,
        max_exponent: int | None = None,
    ) -> EncodedNumber:
        """Encode an int or float.

        Parameters
        ----------
        public_key : PaillierPublicKey
        scalar : int or float
            Ints must satisfy ``abs(scalar) <= max_int``; floats are encoded exactly (to their
            least significant bit) unless ``precision`` is given.
        precision : float, optional
            Largest absolute error allowed: the exponent becomes ``floor(log_BASE(precision))``.
        max_exponent : int, optional
            The exponent is at most this (more precision than needed is allowed).

        Returns
        -------
        EncodedNumber

        Raises
        ------
        TypeError
            If ``scalar`` is neither int nor float and no precision is given.
        ValueError
            If the encoded mantissa exceeds ``max_int`` in magnitude.
        """
        if precision is None:
            if isinstance(scalar, int):
                prec_exponent = 0
            elif isinstance(scalar, float):
                lsb = math.frexp(scalar)[1] - cls.FLOAT_MANTISSA_BITS
                prec_exponent = math.floor(lsb / cls.LOG2_BASE)
            else:
                raise WrongType(f"Don't know the precision of type {type(scalar)}.")
        else:
            prec_exponent = math.floor(math.log(precision, cls.BASE))
        if max_exponent is None or max_exponent > prec_exponent:
            exponent = prec_exponent
        else:
            exponent = max_exponent
        int_rep = _scaled(scalar, cls.BASE, exponent)
        max_int = public_key.max_int
        if int_rep > max_int or -int_rep > max_int:
            raise ParameterError(f"Integer needs to be within +/- {max_int} but got {int_rep}")
        return cls(public_key, int_rep % public_key.n, exponent)

    def decode(self) -> int | float:
        """The number: an int when ``exponent >= 0``, else a float (correctly rounded).

        Raises
        ------
        ValueError
            If the encoding is not reduced mod ``n`` (corrupted).
        OverflowError
            If the mantissa lies in the overflow band, or the float would be infinite.
        """
        return _decode(self.public_key, self.encoding, self.exponent, self.BASE)

    def decrease_exponent_to(self, new_exp: int) -> EncodedNumber:
        """The same value with the smaller exponent ``new_exp`` (mantissa times a power of BASE).

        Raises
        ------
        ValueError
            If ``new_exp`` is larger than the current exponent.
        """
        if new_exp > self.exponent:
            raise ParameterError(
                f"New exponent {new_exp} should be more negative than old exponent {self.exponent}"
            )
        factor = self.BASE ** (self.exponent - new_exp)
        return self.__class__(self.public_key, self.encoding * factor % self.public_key.n, new_exp)
