"""Number-theory helpers of python-paillier's ``phe.util``, with the same names and behaviour.

``HAVE_GMP`` and ``HAVE_CRYPTO`` say whether gmpy2 / pycryptodome are used; setting them to
``False`` switches every helper to its pure-Python path (python-paillier's tests do this), and the
results are the same.

Examples
--------
>>> from dtxfast.compat.phe import util
>>> util.powmod(2, 10, 1000), util.invert(3, 7), util.isqrt(99)
(24, 5, 9)
>>> util.base64_to_int(util.int_to_base64(123456789))
123456789
>>> util.is_prime(17881), util.is_prime(17883)
(True, False)
"""

from __future__ import annotations

import base64
import math
import secrets

import gmpy2

from ...errors import DtxError, ParameterError

__all__ = [
    "HAVE_CRYPTO",
    "HAVE_GMP",
    "base64_to_int",
    "base64url_decode",
    "base64url_encode",
    "extended_euclidean_algorithm",
    "first_primes",
    "getprimeover",
    "improved_i_sqrt",
    "int_to_base64",
    "invert",
    "is_prime",
    "isqrt",
    "miller_rabin",
    "mulmod",
    "powmod",
]

try:  # pycryptodome is a dtxfast dependency; the flag exists for python-paillier's tests
    from Crypto.Util import number as _crypto_number

    HAVE_CRYPTO = True
except ImportError:  # pragma: no cover
    HAVE_CRYPTO = False

#: use gmpy2 (True) or pure Python (False)
HAVE_GMP = True


class ZeroNotEncodable(DtxError, AssertionError):
    """``int_to_base64(0)``: python-paillier refuses zero with an AssertionError."""


def _small_primes(limit: int) -> list[int]:
    sieve = bytearray([1]) * limit
    sieve[0:2] = b"\x00\x00"
    for i in range(2, math.isqrt(limit - 1) + 1):
        if sieve[i]:
            sieve[i * i :: i] = bytearray(len(range(i * i, limit, i)))
    return [i for i in range(limit) if sieve[i]]


#: the primes below 17881 (python-paillier's trial-division list; 17881 is the next prime)
first_primes: list[int] = _small_primes(17881)


def powmod(a: int, b: int, c: int) -> int:
    """``a ** b % c`` as an int (gmpy2 when ``HAVE_GMP``)."""
    if a == 1:
        return 1
    if HAVE_GMP:
        return int(gmpy2.powmod(a, b, c))
    return pow(a, b, c)


def mulmod(a: int, b: int, c: int) -> int:
    """``a * b % c`` as an int (gmpy2 when ``HAVE_GMP``)."""
    if HAVE_GMP:
        return int(gmpy2.mpz(a) * b % c)
    return a * b % c


def extended_euclidean_algorithm(a: int, b: int) -> tuple[int, int, int]:
    """``(r, s, t)`` with ``r = gcd(a, b) = s*a + t*b`` (the iterative extended Euclid)."""
    old_r, r = a, b
    old_s, s = 1, 0
    old_t, t = 0, 1
    while r:
        quotient = old_r // r
        old_r, r = r, old_r - quotient * r
        old_s, s = s, old_s - quotient * s
        old_t, t = t, old_t - quotient * t
    return old_r, old_s, old_t


def invert(a: int, b: int) -> int:
    """The inverse of ``a`` modulo ``b``; ``ZeroDivisionError`` when there is none."""
    if HAVE_GMP:
        try:
            inv = int(gmpy2.invert(a, b))
        except ZeroDivisionError:
            raise ZeroDivisionError("invert() no inverse exists") from None
        if inv == 0:
            raise ZeroDivisionError("invert() no inverse exists")
        return inv
    r, s, _ = extended_euclidean_algorithm(a, b)
    if r != 1:
        raise ZeroDivisionError("invert() no inverse exists")
    return s % b


def getprimeover(N: int) -> int:  # noqa: N803 - python-paillier's parameter name
    """A random prime of at least ``N`` bits (the next prime after a random ``N``-bit number)."""
    if N < 2:
        raise ParameterError("N must be at least 2")
    start = secrets.randbits(N) | (1 << (N - 1))
    if HAVE_GMP:
        return int(gmpy2.next_prime(start))
    if HAVE_CRYPTO:
        return int(_crypto_number.getPrime(N))
    candidate = start | 1
    while not is_prime(candidate):
        candidate += 2
    return candidate


def improved_i_sqrt(n: int) -> int:
    """``floor(sqrt(n))`` by Newton's iteration on integers (pure Python)."""
    if n < 0:
        raise ParameterError("square root of a negative number")
    if n < 2:
        return n
    x = 1 << ((n.bit_length() + 1) // 2)  # >= sqrt(n)
    while True:
        y = (x + n // x) // 2
        if y >= x:
            return x
        x = y


def isqrt(N: int) -> int:  # noqa: N803
    """``floor(sqrt(N))``."""
    if HAVE_GMP:
        return int(gmpy2.isqrt(N))
    return improved_i_sqrt(N)


def base64url_encode(payload: bytes | str) -> str:
    """URL-safe base64 without padding (str in, UTF-8 encoded first)."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    return base64.urlsafe_b64encode(payload).decode("ascii").rstrip("=")


def base64url_decode(payload: str) -> bytes:
    """Inverse of :func:`base64url_encode` (restores the padding)."""
    rem = len(payload) % 4
    if rem == 1:
        raise ParameterError("Invalid base64 string")
    return base64.urlsafe_b64decode((payload + "=" * (-len(payload) % 4)).encode("ascii"))


def base64_to_int(source: str) -> int:
    """A big-endian integer from its :func:`int_to_base64` text."""
    return int.from_bytes(base64url_decode(source), "big")


def int_to_base64(source: int) -> str:
    """A positive integer as URL-safe base64 of its big-endian bytes (zero is refused)."""
    if source == 0:
        raise ZeroNotEncodable("cannot encode 0")
    return base64url_encode(source.to_bytes((source.bit_length() + 7) // 8, "big"))


def miller_rabin(n: int, k: int) -> bool:
    """Miller-Rabin with ``k`` random witnesses: False means composite; True is wrong with
    probability below ``4**-k``."""
    if n <= 3:
        raise ParameterError("miller_rabin needs n > 3")
    d, r = n - 1, 0
    while d % 2 == 0:
        d //= 2
        r += 1
    for _ in range(k):
        a = 2 + secrets.randbelow(n - 3)  # in [2, n - 2]
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


def is_prime(n: int, mr_rounds: int = 25) -> bool:
    """Whether ``n`` is (probably) prime: trial division by :data:`first_primes`, then
    Miller-Rabin with ``mr_rounds`` witnesses."""
    if n <= first_primes[-1]:
        return n >= 2 and n in _FIRST_PRIMES_SET
    for p in first_primes:
        if n % p == 0:
            return False
    return miller_rabin(n, mr_rounds)


_FIRST_PRIMES_SET = frozenset(first_primes)
