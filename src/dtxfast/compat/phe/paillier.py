"""python-paillier's ``phe.paillier`` API on dtxfast's Paillier kernel.

Keys, :class:`EncryptedNumber` and :class:`PaillierPrivateKeyring` behave as python-paillier 1.5
documents them (same names, arguments, attributes, encodings and exceptions), and a ciphertext is
the same number in both libraries (``g = n + 1``), so ``EncryptedNumber`` values move between
them as ``(ciphertext(), exponent)`` pairs either way.

What is faster, and how
-----------------------
* Obfuscators (``r^n mod n^2``) are drawn from a per-key pool that the compiled kernel refills in
  batches (eight or more residues per call, in AVX-512 IFMA lanes where the CPU has them), so one
  ``encrypt`` or ``obfuscate`` costs one multiplication plus a share of a batch.
* By default the obfuscator is Damgård-Jurik-Nielsen's ``h_s^a`` (``h_s = h^n``, ``a`` of
  ``n_bits / 2`` random bits; see :mod:`dtxfast.crypto.paillier`); once a key has drawn
  :data:`TABLE_AFTER` obfuscators the kernel builds its fixed-base table (about 1 s and 67 MB at
  2048 bits), after which an obfuscator costs about ``n_bits / 20`` multiplications.
  ``obfuscation="standard"`` (or :data:`DEFAULT_OBFUSCATION` ``= "standard"``) draws
  python-paillier's ``r^n`` for a uniform ``r`` in ``[1, n)`` instead (the kernel's batch
  exponentiation; the exponent is the public ``n``), and ``encrypt(x, r_value=r)`` gives exactly
  python-paillier's ciphertext for that ``r``.
* A single decryption (CRT, constants precomputed) and a single exponentiation by a plaintext
  are one call each into the kernel's single-number path, on Python ints: with AVX-512 IFMA one
  number is spread across the vector lanes (radix 2^52), and a decryption's p and q halves run
  interleaved on one core; without IFMA, GMP. Sums are gmpy2 multiplications; the fixed-point
  encoding is exact integer arithmetic instead of :class:`fractions.Fraction`.
* Batch helpers python-paillier lacks: :meth:`PaillierPublicKey.encrypt_many`,
  :meth:`PaillierPrivateKey.decrypt_many`, and :func:`to_vector` / :func:`from_vector` between
  ``EncryptedNumber`` lists and :class:`dtxfast.crypto.paillier.EncryptedVector` (sharing the
  ciphertext buffer, without copies, where the layout allows).

Keys under 1024 bits (python-paillier's tests use toy moduli) run on gmpy2 alone, with
python-paillier's ``r^n`` obfuscation.

Examples
--------
>>> from dtxfast.compat.phe import paillier
>>> public_key, private_key = paillier.generate_paillier_keypair(n_length=1024)
>>> x = public_key.encrypt(3.5)
>>> y = public_key.encrypt(-1)
>>> private_key.decrypt((x + y) * 2 - 0.25)
4.75
>>> xs = public_key.encrypt_many([1, 2.5, -3])
>>> private_key.decrypt_many([v * 2 for v in xs])
[2, 5.0, -6]
"""

from __future__ import annotations

import hashlib
import math
import secrets
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal

import gmpy2
import numpy as np

from ..._backend import num_threads
from ...crypto import paillier as _dtx
from ...errors import EncodingOverflowError, KeyMismatch, MalformedInput, NotFound, ParameterError, WrongType
from . import util
from .encoding import EncodedNumber, _decode, _scaled

__all__ = [
    "DEFAULT_KEYSIZE",
    "DEFAULT_OBFUSCATION",
    "TABLE_AFTER",
    "EncryptedNumber",
    "PaillierPrivateKey",
    "PaillierPrivateKeyring",
    "PaillierPublicKey",
    "from_vector",
    "generate_paillier_keypair",
    "to_vector",
]

#: python-paillier's default modulus size (bits)
DEFAULT_KEYSIZE = 3072
#: obfuscation of keys made without an explicit ``obfuscation``: ``"djn"`` or ``"standard"``
DEFAULT_OBFUSCATION: Literal["djn", "standard"] = "djn"
#: a key builds its DJN fixed-base table once it has drawn this many obfuscators
TABLE_AFTER = 256
#: the smallest modulus that runs on the compiled kernel (smaller ones use gmpy2 alone)
KERNEL_MIN_BITS = _dtx.MIN_KEY_BITS

_mpz = gmpy2.mpz
_powmod = gmpy2.powmod
_new = object.__new__
_floor = math.floor
_frexp = math.frexp


def _threads() -> int:
    return num_threads()


def _is_int(x: Any) -> bool:
    return isinstance(x, int) or type(x) is type(_mpz(0))


def _encode(public_key: PaillierPublicKey, scalar: Any, max_exponent: int | None) -> tuple[int, int]:
    """(encoding, exponent) of a scalar with python-paillier's default rules (BASE 16).

    The same arithmetic as :meth:`EncodedNumber.encode`, without building the object.
    """
    cls = EncodedNumber
    if isinstance(scalar, int):
        exponent = 0
    elif isinstance(scalar, float):
        exponent = _floor((_frexp(scalar)[1] - cls.FLOAT_MANTISSA_BITS) / cls.LOG2_BASE)
    else:
        raise WrongType(f"Don't know the precision of type {type(scalar)}.")
    if max_exponent is not None and max_exponent < exponent:
        exponent = max_exponent
    int_rep = _scaled(scalar, cls.BASE, exponent)
    max_int = public_key.max_int
    if int_rep > max_int or -int_rep > max_int:
        raise ParameterError(f"Integer needs to be within +/- {max_int} but got {int_rep}")
    return int_rep % public_key.n, exponent


# ------------------------------------------------------------------------------- keys


def generate_paillier_keypair(
    private_keyring: PaillierPrivateKeyring | None = None,
    n_length: int = DEFAULT_KEYSIZE,
    *,
    obfuscation: Literal["djn", "standard"] | None = None,
) -> tuple[PaillierPublicKey, PaillierPrivateKey]:
    """A new key pair whose modulus has exactly ``n_length`` bits.

    Parameters
    ----------
    private_keyring : PaillierPrivateKeyring, optional
        The private key is added to it.
    n_length : int, default 3072
        Bits of ``n = p q`` (``p`` and ``q`` are random primes of at least ``n_length // 2``
        bits, redrawn until the product has exactly ``n_length`` bits).
    obfuscation : {"djn", "standard"}, optional
        Default :data:`DEFAULT_OBFUSCATION`. dtxfast's addition to the signature.

    Returns
    -------
    (PaillierPublicKey, PaillierPrivateKey)

    Examples
    --------
    >>> pk, sk = generate_paillier_keypair(n_length=1024)
    >>> pk.n.bit_length(), sk.p * sk.q == pk.n
    (1024, True)
    """
    if isinstance(n_length, bool) or not isinstance(n_length, int) or n_length < 4:
        raise ParameterError(f"n_length must be an int of at least 4, not {n_length!r}")
    while True:
        p = util.getprimeover(n_length // 2)
        q = p
        while q == p:
            q = util.getprimeover(n_length // 2)
        n = p * q
        if n.bit_length() == n_length:
            break
    public_key = PaillierPublicKey(n, obfuscation=obfuscation)
    private_key = PaillierPrivateKey(public_key, p, q)
    if private_keyring is not None:
        private_keyring.add(private_key)
    return public_key, private_key


class PaillierPublicKey:
    """A public key: the modulus ``n`` (``g = n + 1``), with python-paillier's attributes.

    Parameters
    ----------
    n : int
        The modulus.
    obfuscation : {"djn", "standard"}, optional
        How random obfuscators are drawn (default :data:`DEFAULT_OBFUSCATION`); see the module
        documentation. Keys under 1024 bits always use ``"standard"``.

    Attributes
    ----------
    n, g, nsquare : int
        ``n``, ``n + 1`` and ``n ** 2``.
    max_int : int
        ``n // 3 - 1``: the largest magnitude an encoding may hold.

    Examples
    --------
    >>> pk = PaillierPublicKey(126869)
    >>> pk.raw_encrypt(10100, r_value=74384)
    935906717
    >>> pk == PaillierPublicKey(126869), pk.max_int
    (True, 42288)
    """

    def __init__(self, n: int, *, obfuscation: Literal["djn", "standard"] | None = None) -> None:
        if not _is_int(n) or isinstance(n, bool) or n < 3:
            raise ParameterError("n must be an int greater than 2")
        n = int(n)
        obfuscation = DEFAULT_OBFUSCATION if obfuscation is None else obfuscation
        if obfuscation not in ("djn", "standard"):
            raise ParameterError(f"obfuscation must be 'djn' or 'standard', not {obfuscation!r}")
        self.g = n + 1
        self.n = n
        self.nsquare = n * n
        self.max_int = n // 3 - 1
        self._n = _mpz(n)
        self._nsq = _mpz(self.nsquare)
        self._kernel = n.bit_length() >= KERNEL_MIN_BITS and n % 2 == 1
        self.obfuscation: Literal["djn", "standard"] = obfuscation if self._kernel else "standard"
        self._dk: _dtx.PaillierPublicKey | None = None
        self._pool: list[Any] = []
        self._drawn = 0
        self._hs_row: np.ndarray | None = None
        self._n_row: np.ndarray | None = None
        self._lock = threading.RLock()

    @classmethod
    def from_dtxfast(cls, key: _dtx.PaillierPublicKey) -> PaillierPublicKey:
        """The same key over a :class:`dtxfast.crypto.paillier.PaillierPublicKey` (sharing its
        kernel context and DJN table)."""
        if not isinstance(key, _dtx.PaillierPublicKey):
            raise WrongType(f"expected a dtxfast PaillierPublicKey, not {type(key).__name__}")
        out = cls(key.n, obfuscation=key.obfuscation)
        out._dk = key
        return out

    @property
    def dtxfast_key(self) -> _dtx.PaillierPublicKey:
        """This key as a :class:`dtxfast.crypto.paillier.PaillierPublicKey` (keys of 1024 bits
        and more)."""
        dk = self._dk
        if dk is None:
            if not self._kernel:
                raise ParameterError(
                    f"a {self.n.bit_length()}-bit key is below dtxfast's minimum of {KERNEL_MIN_BITS} bits"
                )
            with self._lock:
                if self._dk is None:
                    self._dk = _dtx.PaillierPublicKey(self.n, obfuscation=self.obfuscation)
                dk = self._dk
        return dk

    def __repr__(self) -> str:
        digest = hashlib.sha256(self.n.to_bytes((self.n.bit_length() + 7) // 8, "big")).hexdigest()
        return f"<PaillierPublicKey {digest[:10]}>"

    def __eq__(self, other: object) -> bool:
        if other is self:
            return True
        if isinstance(other, PaillierPublicKey):
            return self.n == other.n
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        if other is self:
            return False
        if isinstance(other, PaillierPublicKey):
            return self.n != other.n
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.n)

    def __getstate__(self) -> dict[str, Any]:
        return {"n": self.n, "obfuscation": self.obfuscation}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["n"], obfuscation=state["obfuscation"])  # type: ignore[misc]

    # -- randomness ---------------------------------------------------------------------

    def get_random_lt_n(self) -> int:
        """A uniformly random integer in ``[1, n)`` from the operating system's CSPRNG."""
        return 1 + secrets.randbelow(self.n - 1)

    def _random_unit(self) -> int:
        """A uniformly random ``r`` in ``Z_n^*`` (``[1, n)`` and coprime to ``n``): an ``r`` sharing
        a factor with ``n`` gives an obfuscator that does not decrypt back (a few percent of draws
        for the tiny keys of examples; never in practice for real ones)."""
        while True:
            r = self.get_random_lt_n()
            if math.gcd(r, self.n) == 1:
                return r

    def _obfuscator(self) -> Any:
        """One fresh obfuscator (an mpz), from the pool."""
        try:
            return self._pool.pop()
        except IndexError:
            return self._refill()

    def _refill(self) -> Any:
        if not self._kernel:
            self._drawn += 1
            return _powmod(self._random_unit(), self._n, self._nsq)
        with self._lock:
            if self._pool:
                return self._pool.pop()
            count = min(128, max(8, self._drawn))
            rows = self._obfuscator_rows(count)
            width = rows.shape[1] * 8
            raw = rows.tobytes()
            fresh = [_mpz(int.from_bytes(raw[i * width : (i + 1) * width], "little")) for i in range(count)]
            out = fresh.pop()
            self._pool.extend(fresh)
            return out

    def _obfuscator_rows(self, count: int) -> np.ndarray:
        """``count`` fresh obfuscators as kernel limb rows (``count >= 1``)."""
        dk = self.dtxfast_key
        self._drawn += count
        if self.obfuscation == "djn" and not dk._ctx.has_table and self._drawn < TABLE_AFTER:
            # DJN without the table: h_s^a by the kernel's batch exponentiation
            if self._hs_row is None:
                self._hs_row = _dtx._pack_ints([dk._djn_base()], dk._ctx.w)
            we = dk._djn_limbs
            exps = np.frombuffer(secrets.token_bytes(count * we * 8), dtype="<u8").astype(np.uint64)
            exps = exps.reshape(count, we).copy()
            extra = we * 64 - dk.n_bits // 2
            if extra:
                exps[:, -1] &= np.uint64((1 << (64 - extra)) - 1)
            rows, _ = dk._ctx.pow(self._hs_row, exps, np.zeros(count, np.uint8), _threads())
            return rows
        if self.obfuscation == "standard":
            # python-paillier's r^n for uniform r in [1, n), by the kernel's batch exponentiation:
            # the exponent is the public n, so which table entries are read does not depend on r
            n = self.n
            rs = _dtx._pack_ints([self._random_unit() for _ in range(count)], dk._ctx.w)
            if self._n_row is None:
                self._n_row = _dtx._pack_ints([n], dk._ctx.wn)
            rows, _ = dk._ctx.pow(rs, self._n_row, _POS, _threads())
            return rows
        return dk._fresh_obfuscators(count, None)  # builds the DJN table on first use

    # -- encryption ---------------------------------------------------------------------

    def raw_encrypt(self, plaintext: int, r_value: int | None = None) -> int:
        """Paillier encryption of an integer (reduced mod ``n``), without encoding.

        Parameters
        ----------
        plaintext : int
        r_value : int, optional
            Use ``r_value ** n`` as the obfuscator (python-paillier's exact ciphertext); by default
            a fresh random obfuscator.

        Raises
        ------
        TypeError
            If ``plaintext`` is not an int.
        """
        if not isinstance(plaintext, int):
            raise WrongType(f"Expected int type plaintext but got: {type(plaintext)}")
        nude = self._n * (plaintext % self.n) + 1
        if r_value:
            if r_value == 1:
                return int(nude)
            obfuscator = _powmod(r_value, self._n, self._nsq)
        else:
            obfuscator = self._obfuscator()
        return int(nude * obfuscator % self._nsq)

    def encrypt(self, value: Any, precision: float | None = None, r_value: int | None = None) -> EncryptedNumber:
        """Encode and encrypt an int or float (or an :class:`EncodedNumber`).

        Parameters
        ----------
        value : int, float or EncodedNumber
        precision : float, optional
            Passed to :meth:`EncodedNumber.encode`.
        r_value : int, optional
            Obfuscate with ``r_value ** n`` (python-paillier's exact ciphertext; the result is then
            marked as not obfuscated, as in python-paillier).

        Returns
        -------
        EncryptedNumber

        Raises
        ------
        TypeError
            If ``value`` is not a number.
        ValueError
            If it does not fit ``max_int`` after encoding.

        Examples
        --------
        >>> pk = PaillierPublicKey(126869)
        >>> pk.encrypt(10100, r_value=74384).ciphertext(be_secure=False)
        935906717
        """
        if precision is None and r_value is None:
            if isinstance(value, EncodedNumber):
                encoding, exponent = value.encoding, value.exponent
            else:
                encoding, exponent = _encode(self, value, None)
            c = (self._n * (encoding % self.n) + 1) * self._obfuscator() % self._nsq
            return EncryptedNumber._make(self, c, exponent, True)
        if isinstance(value, EncodedNumber):
            encoded = value
        else:
            encoded = EncodedNumber.encode(self, value, precision)
        return self.encrypt_encoded(encoded, r_value)

    def encrypt_encoded(self, encoding: EncodedNumber, r_value: int | None = None) -> EncryptedNumber:
        """Encrypt an :class:`EncodedNumber` (``r_value`` as in :meth:`encrypt`)."""
        if r_value is None:
            if not isinstance(encoding.encoding, int):
                raise WrongType(f"Expected int type plaintext but got: {type(encoding.encoding)}")
            c = (self._n * (encoding.encoding % self.n) + 1) * self._obfuscator() % self._nsq
            return EncryptedNumber._make(self, c, encoding.exponent, True)
        return EncryptedNumber._make(self, _mpz(self.raw_encrypt(encoding.encoding, r_value)), encoding.exponent,
                                     False)

    def encrypt_many(self, values: Iterable[Any], precision: float | None = None) -> list[EncryptedNumber]:
        """Encrypt many numbers in one kernel call: ``[encrypt(v, precision) for v in values]``.

        The numbers share one ciphertext buffer, so :meth:`PaillierPrivateKey.decrypt_many` and
        :func:`to_vector` use it without copying.

        Examples
        --------
        >>> pk, sk = generate_paillier_keypair(n_length=1024)
        >>> sk.decrypt_many(pk.encrypt_many([0.5, 7, -2]))
        [0.5, 7, -2]
        """
        encodings = []
        for v in values:
            if isinstance(v, EncodedNumber):
                encodings.append((v.encoding, v.exponent))
            elif precision is None:
                encodings.append(_encode(self, v, None))
            else:
                e = EncodedNumber.encode(self, v, precision)
                encodings.append((e.encoding, e.exponent))
        if not self._kernel or len(encodings) < 2:
            return [self.encrypt(EncodedNumber(self, m, e)) for m, e in encodings]
        dk = self.dtxfast_key
        n = self.n
        limbs = _dtx._pack_ints([m % n for m, _ in encodings], dk._ctx.wn)
        c = dk._ctx.encrypt(limbs, self._obfuscator_rows(len(encodings)), _threads())
        make = EncryptedNumber._make_row
        return [make(self, c, i, e, True) for i, (_, e) in enumerate(encodings)]

    # -- kernel helpers -----------------------------------------------------------------

    def _pow(self, c: Any, e: int, negative: bool) -> Any:
        """``c ** e`` (``c ** -e`` if negative) mod n^2, ``e >= 0``.

        One number, so one kernel call on Python ints (single-number IFMA where the CPU has it):
        no limb arrays, no thread pool.
        """
        if e == 0:
            return _mpz(1)
        if e == 1 and not negative:
            return c
        if self._kernel and e.bit_length() > 8:
            out = self.dtxfast_key._ctx.pow_one(c, e, negative)
            if out is None:
                raise ZeroDivisionError("invert() no inverse exists")
            return _mpz(out)
        if negative:
            return _powmod(util.invert(c, self._nsq), e, self._nsq)
        return _powmod(c, e, self._nsq)


_POS = np.zeros(1, np.uint8)


class PaillierPrivateKey:
    """A private key: the primes ``p < q`` of the public key's modulus, with python-paillier's
    attributes (``psquare``, ``qsquare``, ``p_inverse``, ``hp``, ``hq``).

    Parameters
    ----------
    public_key : PaillierPublicKey
    p, q : int
        The two (distinct) prime factors of ``public_key.n``, in any order.

    Raises
    ------
    ValueError
        If ``p * q != n`` or ``p == q``.

    Examples
    --------
    >>> pk = PaillierPublicKey(2537)
    >>> PaillierPrivateKey(pk, 43, 59) == PaillierPrivateKey(pk, 59, 43)
    True
    >>> PaillierPrivateKey(pk, 43, 59).raw_decrypt(pk.raw_encrypt(1000))
    1000
    """

    def __init__(self, public_key: PaillierPublicKey, p: int, q: int) -> None:
        if not isinstance(public_key, PaillierPublicKey):
            raise WrongType(f"public_key should be a PaillierPublicKey, not {type(public_key).__name__}")
        if not (_is_int(p) and _is_int(q)):
            raise WrongType("p and q must be ints")
        p, q = int(p), int(q)
        if p * q != public_key.n:
            raise KeyMismatch("given public key does not match the given p and q.")
        if p == q:
            raise ParameterError("p and q have to be different")
        self.public_key = public_key
        self.p, self.q = (p, q) if p < q else (q, p)
        self.psquare = self.p * self.p
        self.qsquare = self.q * self.q
        self.p_inverse = util.invert(self.p, self.q)
        self.hp = self.h_function(self.p, self.psquare)
        self.hq = self.h_function(self.q, self.qsquare)
        self._dsk: _dtx.PaillierPrivateKey | None = None
        self._one: Any = None  # the kernel's single-number decryption, bound on first use
        self._lock = threading.Lock()

    @staticmethod
    def from_totient(public_key: PaillierPublicKey, totient: int) -> PaillierPrivateKey:
        """The private key of ``public_key`` from ``(p - 1) * (q - 1)``.

        Raises
        ------
        ValueError
            If ``totient`` is not the totient of ``public_key.n``.

        Examples
        --------
        >>> pk = PaillierPublicKey(2537)
        >>> PaillierPrivateKey.from_totient(pk, 42 * 58).p
        43
        """
        n = public_key.n
        p_plus_q = n - totient + 1
        disc = p_plus_q * p_plus_q - 4 * n
        if disc < 0:
            raise KeyMismatch("given public key and totient do not match.")
        p_minus_q = util.isqrt(disc)
        q = (p_plus_q - p_minus_q) // 2
        p = p_plus_q - q
        if p * q != n:
            raise KeyMismatch("given public key and totient do not match.")
        return PaillierPrivateKey(public_key, p, q)

    @property
    def dtxfast_key(self) -> _dtx.PaillierPrivateKey:
        """This key as a :class:`dtxfast.crypto.paillier.PaillierPrivateKey` (1024 bits and more)."""
        dsk = self._dsk
        if dsk is None:
            pub = self.public_key.dtxfast_key
            with self._lock:
                if self._dsk is None:
                    self._dsk = _dtx.PaillierPrivateKey(pub, self.p, self.q)
                dsk = self._dsk
        return dsk

    def __repr__(self) -> str:
        return f"<PaillierPrivateKey for {self.public_key!r}>"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PaillierPrivateKey):
            return self.p == other.p and self.q == other.q
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.p, self.q))

    def __getstate__(self) -> dict[str, Any]:
        return {"public_key": self.public_key, "p": self.p, "q": self.q}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["public_key"], state["p"], state["q"])  # type: ignore[misc]

    # -- python-paillier's helpers ----------------------------------------------------------

    def h_function(self, x: int, xsquare: int) -> int:
        """``L(g^(x-1) mod x^2, x)^-1 mod x`` (Paillier's CRT decryption constant)."""
        return util.invert(self.l_function(util.powmod(self.public_key.g, x - 1, xsquare), x), x)

    @staticmethod
    def l_function(x: int, p: int) -> int:
        """Paillier's ``L(x) = (x - 1) // p``."""
        return (x - 1) // p

    def crt(self, mp: int, mq: int) -> int:
        """The residue mod ``n`` that is ``mp`` mod ``p`` and ``mq`` mod ``q``."""
        u = (mq - mp) * self.p_inverse % self.q
        return mp + u * self.p

    # -- decryption ---------------------------------------------------------------------

    def _raw(self, c: Any) -> int:
        pk = self.public_key
        if pk._kernel and 0 < c < pk._nsq:
            one = self._one
            if one is None:
                one = self._one = self.dtxfast_key._ctx.decrypt_one
            return one(c)
        p, q = self.p, self.q
        mp = (int(_powmod(c, p - 1, self.psquare)) - 1) // p * self.hp % p
        mq = (int(_powmod(c, q - 1, self.qsquare)) - 1) // q * self.hq % q
        return self.crt(mp, mq)

    def raw_decrypt(self, ciphertext: int) -> int:
        """Decrypt an integer ciphertext to its residue in ``[0, n)``, without decoding.

        Raises
        ------
        TypeError
            If ``ciphertext`` is not an int.
        """
        if not _is_int(ciphertext) or isinstance(ciphertext, bool):
            raise WrongType(f"Expected ciphertext to be an int, not: {type(ciphertext)}")
        return self._raw(ciphertext)

    def _check(self, encrypted_number: Any) -> None:
        if not isinstance(encrypted_number, EncryptedNumber):
            raise WrongType(
                f"Expected encrypted_number to be an EncryptedNumber not: {type(encrypted_number)}"
            )
        other = encrypted_number.public_key
        if other is not self.public_key and self.public_key != other:
            raise KeyMismatch("encrypted_number was encrypted against a different key!")

    def decrypt(self, encrypted_number: EncryptedNumber) -> int | float:
        """Decrypt and decode: an int when the exponent is ``>= 0``, else a float.

        Raises
        ------
        TypeError
            If the argument is not an :class:`EncryptedNumber`.
        ValueError
            If it was encrypted under another key.
        OverflowError
            If the plaintext lies in the overflow band.
        """
        self._check(encrypted_number)
        m = self._raw(encrypted_number._raw())
        return _decode(self.public_key, m, encrypted_number.exponent, EncodedNumber.BASE)

    def decrypt_encoded(self, encrypted_number: EncryptedNumber, Encoding: type | None = None) -> EncodedNumber:  # noqa: N803
        """Decrypt to an :class:`EncodedNumber` (or to ``Encoding``, a subclass with another
        ``BASE``)."""
        self._check(encrypted_number)
        cls = EncodedNumber if Encoding is None else Encoding
        return cls(self.public_key, self._raw(encrypted_number._raw()), encrypted_number.exponent)

    def decrypt_many(self, encrypted_numbers: Iterable[EncryptedNumber]) -> list[int | float]:
        """``[decrypt(x) for x in encrypted_numbers]`` in one kernel call (all cores).

        Numbers that share a buffer (from :meth:`PaillierPublicKey.encrypt_many` or
        :func:`from_vector`) are decrypted from it without copying.

        Examples
        --------
        >>> pk, sk = generate_paillier_keypair(n_length=1024)
        >>> sk.decrypt_many([pk.encrypt(1.25), pk.encrypt(-4)])
        [1.25, -4]
        """
        numbers = list(encrypted_numbers)
        for x in numbers:
            self._check(x)
        pk = self.public_key
        base = EncodedNumber.BASE
        if not pk._kernel or len(numbers) < 2:
            return [_decode(pk, self._raw(x._raw()), x.exponent, base) for x in numbers]
        rows = _rows(pk, numbers)
        m = self.dtxfast_key._ctx.decrypt(rows, _threads())
        width = m.shape[1] * 8
        raw = m.tobytes()
        return [
            _decode(pk, int.from_bytes(raw[i * width : (i + 1) * width], "little"), x.exponent, base)
            for i, x in enumerate(numbers)
        ]


class PaillierPrivateKeyring(Mapping):
    """Private keys by public key; decrypts with whichever key a number needs.

    Examples
    --------
    >>> pk, sk = generate_paillier_keypair(n_length=1024)
    >>> ring = PaillierPrivateKeyring([sk])
    >>> ring[pk] == sk, ring.decrypt(pk.encrypt(12))
    (True, 12)
    """

    def __init__(self, private_keys: Iterable[PaillierPrivateKey] | None = None) -> None:
        self.__keyring: dict[PaillierPublicKey, PaillierPrivateKey] = {}
        for key in private_keys or []:
            self.add(key)

    def __getitem__(self, key: PaillierPublicKey) -> PaillierPrivateKey:
        try:
            return self.__keyring[key]
        except KeyError:
            raise NotFound(f"no private key for {key!r} on this keyring") from None

    def __len__(self) -> int:
        return len(self.__keyring)

    def __iter__(self) -> Iterator[PaillierPublicKey]:
        return iter(self.__keyring)

    def __delitem__(self, public_key: PaillierPublicKey) -> None:
        try:
            del self.__keyring[public_key]
        except KeyError:
            raise NotFound(f"no private key for {public_key!r} on this keyring") from None

    def add(self, private_key: PaillierPrivateKey) -> None:
        """Add a private key (replacing one for the same public key).

        Raises
        ------
        TypeError
            If ``private_key`` is not a :class:`PaillierPrivateKey`.
        """
        if not isinstance(private_key, PaillierPrivateKey):
            raise WrongType(f"private_key should be of type PaillierPrivateKey, not {type(private_key)}")
        self.__keyring[private_key.public_key] = private_key

    def decrypt(self, encrypted_number: EncryptedNumber) -> int | float:
        """Decrypt with the key of ``encrypted_number.public_key`` (``KeyError`` if absent)."""
        return self[encrypted_number.public_key].decrypt(encrypted_number)


# ---------------------------------------------------------------------- the number


class EncryptedNumber:
    """The Paillier encryption of an int or float (python-paillier's ``EncryptedNumber``).

    Supports ``+`` / ``-`` with ints, floats, :class:`EncodedNumber` and other
    ``EncryptedNumber`` s (exponents are aligned down), ``*`` / ``/`` by a plaintext, and
    :meth:`obfuscate`. Results of operations are not re-randomised until
    :meth:`ciphertext` (``be_secure=True``, the default) or :meth:`obfuscate` is called.

    Parameters
    ----------
    public_key : PaillierPublicKey
    ciphertext : int
        In ``[1, n^2)``.
    exponent : int, default 0
        The plaintext is ``mantissa * 16 ** exponent``.

    Examples
    --------
    >>> pk, sk = generate_paillier_keypair(n_length=1024)
    >>> x = pk.encrypt(0.5)
    >>> y = EncryptedNumber(pk, x.ciphertext(), x.exponent)   # e.g. after a JSON round trip
    >>> sk.decrypt(y * 3 + x)
    2.0
    """

    __slots__ = ("public_key", "exponent", "__ciphertext", "__is_obfuscated", "_row")

    def __init__(self, public_key: PaillierPublicKey, ciphertext: int, exponent: int = 0) -> None:
        if isinstance(ciphertext, EncryptedNumber):
            raise WrongType("ciphertext should be an integer")
        if not isinstance(public_key, PaillierPublicKey):
            raise WrongType("public_key should be a PaillierPublicKey")
        if not _is_int(ciphertext) or isinstance(ciphertext, bool):
            raise WrongType(f"ciphertext should be an integer, not {type(ciphertext).__name__}")
        if not 0 < ciphertext < public_key.nsquare:
            raise MalformedInput("ciphertext must lie in [1, n^2)")
        self.public_key = public_key
        self.exponent = exponent
        self.__ciphertext = ciphertext
        self.__is_obfuscated = False
        self._row: tuple[np.ndarray, int] | None = None

    @staticmethod
    def _make(public_key: PaillierPublicKey, c: Any, exponent: int, obfuscated: bool = False) -> EncryptedNumber:
        x = _new(EncryptedNumber)
        x.public_key = public_key
        x.exponent = exponent
        x.__ciphertext = c
        x.__is_obfuscated = obfuscated
        x._row = None
        return x

    @staticmethod
    def _make_row(public_key: PaillierPublicKey, rows: np.ndarray, i: int, exponent: int,
                  obfuscated: bool) -> EncryptedNumber:
        """A number whose ciphertext is row ``i`` of a kernel buffer (read on first use)."""
        x = _new(EncryptedNumber)
        x.public_key = public_key
        x.exponent = exponent
        x.__ciphertext = None
        x.__is_obfuscated = obfuscated
        x._row = (rows, i)
        return x

    def _raw(self) -> Any:
        c = self.__ciphertext
        if c is None:
            rows, i = self._row  # type: ignore[misc]
            c = self.__ciphertext = _mpz(int.from_bytes(rows[i].tobytes(), "little"))
        return c

    def __repr__(self) -> str:
        return f"<EncryptedNumber exponent={self.exponent}>"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore_number, (self.public_key, int(self._raw()), self.exponent, self.__is_obfuscated))

    # -- python-paillier's surface --------------------------------------------------------

    def ciphertext(self, be_secure: bool = True) -> int:
        """The ciphertext as an int; with ``be_secure`` (default) it is obfuscated first if it
        is the unobfuscated result of an operation.

        Examples
        --------
        >>> pk, sk = generate_paillier_keypair(n_length=1024)
        >>> s = pk.encrypt(1) + pk.encrypt(2)
        >>> c_fast = s.ciphertext(be_secure=False)
        >>> c_safe = s.ciphertext()
        >>> c_fast != c_safe and sk.raw_decrypt(c_fast) == sk.raw_decrypt(c_safe) == 3
        True
        """
        if be_secure and not self.__is_obfuscated:
            self.obfuscate()
        return int(self._raw())

    def obfuscate(self) -> None:
        """Multiply in a fresh random obfuscator (do this before sending the number to anyone)."""
        pk = self.public_key
        self.__ciphertext = self._raw() * pk._obfuscator() % pk._nsq
        self.__is_obfuscated = True
        self._row = None

    def decrease_exponent_to(self, new_exp: int) -> EncryptedNumber:
        """The same value with the smaller exponent ``new_exp``.

        Raises
        ------
        ValueError
            If ``new_exp`` is larger than the current exponent, or the factor ``16 ** d`` does
            not fit ``max_int``.

        Examples
        --------
        >>> pk, sk = generate_paillier_keypair(n_length=1024)
        >>> x = pk.encrypt(1.5).decrease_exponent_to(-20)
        >>> x.exponent, sk.decrypt(x)
        (-20, 1.5)
        """
        if new_exp > self.exponent:
            raise ParameterError(
                f"New exponent {new_exp} should be more negative than old exponent {self.exponent}"
            )
        pk = self.public_key
        factor = EncodedNumber.BASE ** (self.exponent - new_exp)
        if factor > pk.max_int:
            raise ParameterError(f"Integer needs to be within +/- {pk.max_int} but got {factor}")
        return EncryptedNumber._make(pk, pk._pow(self._raw(), factor, False), new_exp)

    def _aligned(self, other_exponent: int) -> EncryptedNumber:
        return self.decrease_exponent_to(other_exponent) if self.exponent > other_exponent else self

    def __add__(self, other: Any) -> EncryptedNumber:
        pk = self.public_key
        if isinstance(other, EncryptedNumber):
            if other.public_key is not pk and pk != other.public_key:
                raise KeyMismatch("Attempted to add numbers encrypted against different public keys!")
            a, b = self, other
            if a.exponent != b.exponent:
                a, b = a._aligned(b.exponent), b._aligned(a.exponent)
            return EncryptedNumber._make(pk, a._raw() * b._raw() % pk._nsq, a.exponent)
        if isinstance(other, EncodedNumber):
            if other.public_key is not pk and pk != other.public_key:
                raise KeyMismatch("Attempted to add numbers encoded against different public keys!")
            encoding, exponent = other.encoding, other.exponent
            if other.exponent > self.exponent:
                enc = other.decrease_exponent_to(self.exponent)
                encoding, exponent = enc.encoding, enc.exponent
        else:
            encoding, exponent = _encode(pk, other, self.exponent)
        a = self._aligned(exponent)
        c = a._raw() * (pk._n * (encoding % pk.n) + 1) % pk._nsq
        return EncryptedNumber._make(pk, c, a.exponent)

    def __radd__(self, other: Any) -> EncryptedNumber:
        return self.__add__(other)

    def __mul__(self, other: Any) -> EncryptedNumber:
        if isinstance(other, EncryptedNumber):
            raise NotImplementedError("Paillier cannot multiply two ciphertexts; multiply by a plaintext")
        pk = self.public_key
        if isinstance(other, EncodedNumber):
            encoding, exponent = other.encoding, other.exponent
        else:
            encoding, exponent = _encode(pk, other, None)
        return EncryptedNumber._make(pk, self._raw_mul(encoding), self.exponent + exponent)

    def __rmul__(self, other: Any) -> EncryptedNumber:
        return self.__mul__(other)

    def __sub__(self, other: Any) -> EncryptedNumber:
        return self + (other * -1)

    def __rsub__(self, other: Any) -> EncryptedNumber:
        return other + (self * -1)

    def __truediv__(self, scalar: Any) -> EncryptedNumber:
        return self.__mul__(1 / scalar)

    def _raw_mul(self, plaintext: int) -> Any:
        """The ciphertext of ``self * plaintext`` for an encoded plaintext in ``[0, n)``."""
        if not isinstance(plaintext, int):
            raise WrongType(f"Expected ciphertext to be int, not {type(plaintext)}")
        pk = self.public_key
        if plaintext < 0 or plaintext >= pk.n:
            raise ParameterError(f"Scalar out of bounds: {plaintext}")
        if pk.n - pk.max_int <= plaintext:
            return pk._pow(self._raw(), pk.n - plaintext, True)
        return pk._pow(self._raw(), plaintext, False)


def _restore_number(public_key: PaillierPublicKey, ciphertext: int, exponent: int, obfuscated: bool) -> EncryptedNumber:
    x = EncryptedNumber(public_key, ciphertext, exponent)
    x._EncryptedNumber__is_obfuscated = obfuscated  # type: ignore[attr-defined]
    return x


# ------------------------------------------------------------- lists <-> vectors


def _rows(pk: PaillierPublicKey, numbers: Sequence[EncryptedNumber]) -> np.ndarray:
    """The numbers' ciphertexts as kernel limb rows: a view of their shared buffer when they are
    consecutive rows of one, else a packed copy."""
    first = numbers[0]._row
    if first is not None:
        buf, start = first
        ok = start + len(numbers) <= buf.shape[0]
        if ok:
            for k, x in enumerate(numbers):
                r = x._row
                if r is None or r[0] is not buf or r[1] != start + k:
                    ok = False
                    break
        if ok:
            return buf[start : start + len(numbers)]
    w = pk.dtxfast_key._ctx.w
    size = 8 * w
    data = b"".join(int(x._raw()).to_bytes(size, "little") for x in numbers)
    return np.frombuffer(data, dtype="<u8").astype(np.uint64, copy=False).reshape(len(numbers), w)


def to_vector(numbers: Sequence[EncryptedNumber]) -> _dtx.EncryptedVector:
    """An :class:`~dtxfast.crypto.paillier.EncryptedVector` holding ``numbers``.

    When the numbers share one exponent ``e <= 0`` and are consecutive rows of one buffer (as
    :meth:`PaillierPublicKey.encrypt_many` and :func:`from_vector` make them) the vector uses
    that buffer without copying; otherwise the ciphertexts are packed. Numbers of different
    exponents (python-paillier gives each float its own) are aligned to the smallest: a number
    ``d`` base-16 digits above it is raised to ``16 ** d`` (``4 d`` squarings, in one batch call
    on the kernel rows), as :func:`dtxfast.interop.phe.from_phe` aligns.

    Raises
    ------
    EncodingOverflowError
        If the exponents lie so far apart that an aligned mantissa could overflow.

    Examples
    --------
    >>> pk, sk = generate_paillier_keypair(n_length=1024)
    >>> v = to_vector(pk.encrypt_many([1, 2, 3]))
    >>> sk.dtxfast_key.decrypt(v * 10)
    array([10, 20, 30])
    >>> xs = pk.encrypt_many([0.5, 1e6, -3.25])   # exponents -14, -9, -13
    >>> sk.dtxfast_key.decrypt(to_vector(xs)).tolist()
    [0.5, 1000000.0, -3.25]
    """
    numbers = list(numbers)
    if not numbers:
        raise ParameterError("nothing to convert")
    pk = numbers[0].public_key
    for x in numbers:
        if not isinstance(x, EncryptedNumber):
            raise WrongType(f"expected EncryptedNumber, not {type(x).__name__}")
        if x.public_key is not pk and x.public_key != pk:
            raise KeyMismatch("the numbers are encrypted under different keys")
    dk = pk.dtxfast_key
    exps = [x.exponent for x in numbers]
    frac = max(0, -4 * min(exps))  # binary exponent of the vector
    shifts = [frac + 4 * e for e in exps]  # bits each plaintext moves up
    top = max(shifts)
    rows = _rows(pk, numbers)
    if not top:
        obfuscated = all(x._EncryptedNumber__is_obfuscated for x in numbers)  # type: ignore[attr-defined]
        return _dtx.EncryptedVector(dk, rows, frac, frac > 0, obfuscated=obfuscated)
    if top > dk.max_int.bit_length() - 128:
        # a mantissa of up to 128 bits must still fit after the shift (as from_phe)
        raise EncodingOverflowError(
            f"the numbers' exponents are {top} bits apart: too far to align in one vector "
            "without risking overflow (convert them in groups of similar magnitude)"
        )
    powers = _dtx._pack_ints([1 << s for s in shifts], (top + 64) // 64)
    aligned, _ = dk._ctx.pow(rows, powers, np.zeros(len(numbers), np.uint8), _threads())
    return _dtx.EncryptedVector(dk, aligned, frac, frac > 0)


def from_vector(vector: _dtx.EncryptedVector, public_key: PaillierPublicKey | None = None) -> list[EncryptedNumber]:
    """The elements of an :class:`~dtxfast.crypto.paillier.EncryptedVector` as numbers.

    The numbers are views of the vector's ciphertext buffer (read when first used); when the
    vector's binary exponent is not a multiple of 4 it is rescaled first (one exponentiation per
    element).

    Parameters
    ----------
    vector : EncryptedVector
    public_key : PaillierPublicKey, optional
        The compat key to attach (same modulus); by default one over ``vector.public_key``.

    Examples
    --------
    >>> from dtxfast.crypto.paillier import generate_keypair
    >>> dpk, dsk = generate_keypair(1024)
    >>> xs = from_vector(dpk.encrypt([0.5, -2.0]))
    >>> sk = PaillierPrivateKey(xs[0].public_key, dsk.p, dsk.q)
    >>> [sk.decrypt(x + 1) for x in xs]
    [1.5, -1.0]
    """
    if not isinstance(vector, _dtx.EncryptedVector):
        raise WrongType(f"expected an EncryptedVector, not {type(vector).__name__}")
    if public_key is None:
        public_key = PaillierPublicKey.from_dtxfast(vector.public_key)
    elif public_key.n != vector.public_key.n:
        raise KeyMismatch("public_key does not match the vector's key")
    pad = (-vector.exponent) % 4
    src = vector._rescaled(vector.exponent + pad) if pad else vector
    exponent = -(src.exponent // 4)
    rows = src._c
    obfuscated = bool(vector._obfuscated) and not pad
    make = EncryptedNumber._make_row
    return [make(public_key, rows, i, exponent, obfuscated) for i in range(rows.shape[0])]
