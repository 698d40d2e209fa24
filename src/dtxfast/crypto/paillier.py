"""Paillier encryption, batch-first.

The batch type :class:`EncryptedVector` is the primary type: a single number is the length-1
case. All arithmetic runs in the compiled kernel (``dtxfast._kernels._paillier``, GMP, OpenMP)
when it is built, else in its pure-Python twin (:mod:`dtxfast.crypto._paillier_py`); both give
the same results (``dtxfast.backend_info()`` says which is in use).

Scheme
------
Textbook Paillier with ``g = n + 1`` (so ``g^m = 1 + m n mod n^2``: one multiplication), CRT
decryption with precomputed constants, and two ways to draw the obfuscator ``r^n``:

``"djn"`` (default)
    Damgård–Jurik–Nielsen: ``h_s^a mod n^2`` with ``h_s = h^n``, ``h = -x^2 mod n`` for ``x``
    derived from ``n`` by SHAKE-256 (so the public key stays just ``n``), and a random exponent
    ``a`` of ``n_bits / 2`` bits (the length DJN and SecretFlow HEU use; semantic security then rests
    on DCR plus the hardness of short-exponent discrete logarithms in the subgroup of unknown order).
    ``h_s^a`` is computed from a fixed-base table (window 10: about ``n_bits / 20``
    multiplications instead of a full exponentiation), built on the key's first encryption: about
    1 s and 67 MB for a 2048-bit key (17 MB at 1024 bits). The table lookups depend on the secret
    exponent: on hosts where a co-resident attacker can observe cache timing, use ``"standard"``.

Kernels
-------
On CPUs with AVX-512 IFMA (checked at run time; ``DTXFAST_SIMD=0`` turns it off) the compiled
kernel multiplies eight residues at once in radix-2^52 Montgomery form: DJN obfuscation, CRT
decryption (mod ``p^2`` and ``q^2``), exponentiation by plaintexts, ciphertext products and
``X @ v`` (Pippenger's bucket method over eight rows at a time). Elsewhere it uses GMP. All paths,
and the pure-Python reference, return identical ciphertexts for the same randomness.
``"standard"``
    ``r^n mod n^2`` for a uniform ``r`` in ``Z_n^*``, computed with GMP's side-channel silent
    ``mpz_powm_sec``.

Ciphertexts are re-randomized before they leave a party: every operation result is marked
un-obfuscated and :meth:`EncryptedVector.to_bytes` multiplies in a fresh obfuscator first (the
python-paillier habit), unless told otherwise.

Fixed-point encoding
--------------------
A vector carries one binary exponent ``F`` (``exponent``): element ``i`` encrypts
``round(x_i * 2^F) mod n``; negative values wrap (``m > n - n/3`` decodes as negative) and a
value beyond ``n/3`` in magnitude is an overflow, raised as
:class:`~dtxfast.errors.EncodingOverflowError`, never decoded silently wrong.

* Integers are encoded exactly with ``F = 0`` and decrypt to ``int64`` (or Python ints when a
  value does not fit 64 bits).
* Floats use ``F = 64`` by default (:data:`DEFAULT_FRAC_BITS`): the absolute error of an encoded
  value is at most ``2^-65``, so the relative error is below ``2^-40`` for every
  ``2^-25 <= |x| <= 2^20`` (and for larger values up to ``n/3 / 2^64``); floats with
  ``|x| >= 2^-11`` are encoded exactly. Decryption returns ``float64`` (rounded toward zero to 53
  bits).
* Plaintext operands (of ``*`` and ``@``) keep :data:`PLAINTEXT_BITS` = 53 significant bits of
  their largest entry, i.e. float64 precision; the result's exponent is the sum of both.

Examples
--------
>>> import numpy as np
>>> from dtxfast.crypto.paillier import generate_keypair
>>> pk, sk = generate_keypair(1024)
>>> ev = pk.encrypt([1.5, -2.25, 3.0])
>>> sk.decrypt(ev * 2 + 1)
array([ 4. , -3.5,  7. ])
>>> X = np.array([[1.0, 2.0, 3.0], [0.5, 0.0, -1.0]])
>>> sk.decrypt(X @ ev)
array([ 6.  , -2.25])
>>> sk.decrypt(pk.encrypt(np.arange(4)).sum())
array([6])
"""

from __future__ import annotations

import hashlib
import math
import os
import struct
import threading
from collections import deque
from typing import Any, Callable, Iterable, Literal, Sequence, Union

import gmpy2
import numpy as np
from Crypto.Hash import SHAKE256
from Crypto.Math.Primality import generate_probable_prime

from .._backend import load_kernel, num_threads
from ..errors import EncodingOverflowError, KeyMismatch, MalformedInput, ParameterError

__all__ = [
    "DEFAULT_FRAC_BITS",
    "PLAINTEXT_BITS",
    "MIN_KEY_BITS",
    "EncryptedVector",
    "PaillierPrivateKey",
    "PaillierPublicKey",
    "concatenate",
    "generate_keypair",
    "matmul",
]

_kernel, _INFO = load_kernel("_paillier", "dtxfast.crypto._paillier_py")

#: fractional bits of the fixed-point encoding of float inputs
DEFAULT_FRAC_BITS = 64
#: significant bits kept of a float plaintext operand (its largest entry) in ``*`` and ``@``
PLAINTEXT_BITS = 53
#: smallest modulus accepted
MIN_KEY_BITS = 1024
#: window (bits) of the DJN fixed-base table
DJN_TABLE_WINDOW = 10

RandFunc = Callable[[int], bytes]
ArrayLike = Union[int, float, Sequence[Any], np.ndarray]
Obfuscation = Literal["djn", "standard"]

_MAGIC = b"DTX"
_VERSION = 1
_KIND_PUBLIC, _KIND_PRIVATE, _KIND_VECTOR = 0x50, 0x53, 0x56  # 'P', 'S', 'V'
_HEADER = struct.Struct("<3sBB")
_VEC_HEADER = struct.Struct("<16siBIH")  # fingerprint, exponent, flags, count, bytes per ct
_MAX_EXPONENT = 1 << 15


def _threads() -> int:
    return num_threads()


def _u64(buf: bytes, rows: int, cols: int) -> np.ndarray:
    return np.frombuffer(buf, dtype="<u8").astype(np.uint64, copy=False).reshape(rows, cols)


# ------------------------------------------------------------------------------- keys


def generate_keypair(
    n_bits: int = 2048,
    *,
    obfuscation: Obfuscation = "djn",
    randfunc: RandFunc | None = None,
) -> tuple[PaillierPublicKey, PaillierPrivateKey]:
    """Generate a Paillier key pair.

    Parameters
    ----------
    n_bits : int, default 2048
        Exact bit length of the modulus ``n = p q`` (even, at least 1024). ``p`` and ``q`` have
        ``n_bits / 2`` bits each, with their two top bits set so that ``n`` has exactly ``n_bits``.
    obfuscation : {"djn", "standard"}
        How the public key draws obfuscators (see the module documentation).
    randfunc : callable, optional
        ``randfunc(k) -> k random bytes``; defaults to the operating system's CSPRNG.

    Returns
    -------
    (PaillierPublicKey, PaillierPrivateKey)

    Raises
    ------
    ParameterError
        If ``n_bits`` is below 1024 or odd.

    Examples
    --------
    >>> pk, sk = generate_keypair(1024)
    >>> pk.n.bit_length()
    1024
    """
    if isinstance(n_bits, bool) or not isinstance(n_bits, int):
        raise ParameterError(f"n_bits must be an int, not {type(n_bits).__name__}")
    if n_bits < MIN_KEY_BITS:
        raise ParameterError(f"n_bits must be at least {MIN_KEY_BITS} (got {n_bits}): smaller moduli are factorable")
    if n_bits % 2:
        raise ParameterError(f"n_bits must be even (got {n_bits})")
    rand = randfunc or os.urandom
    half = n_bits // 2

    def top_two_bits(x: Any) -> bool:
        return int(x) >> (half - 2) == 3

    while True:
        p = int(generate_probable_prime(exact_bits=half, randfunc=rand, prime_filter=top_two_bits))
        q = int(generate_probable_prime(exact_bits=half, randfunc=rand, prime_filter=top_two_bits))
        if p != q and (p * q).bit_length() == n_bits:
            break
    if p < q:
        p, q = q, p
    pk = PaillierPublicKey(p * q, obfuscation=obfuscation)
    return pk, PaillierPrivateKey(pk, p, q)


class PaillierPublicKey:
    """A Paillier public key: the modulus ``n`` (with ``g = n + 1``).

    Parameters
    ----------
    n : int
        The modulus, an odd integer of at least 1024 bits.
    obfuscation : {"djn", "standard"}
        How obfuscators are drawn (see the module documentation).

    Examples
    --------
    >>> pk, sk = generate_keypair(1024)
    >>> pk2 = PaillierPublicKey.from_bytes(pk.to_bytes())
    >>> pk2 == pk
    True
    """

    def __init__(self, n: int, *, obfuscation: Obfuscation = "djn") -> None:
        if isinstance(n, bool) or not isinstance(n, (int, type(gmpy2.mpz(0)))):
            raise ParameterError("n must be an int")
        n = int(n)
        if n.bit_length() < MIN_KEY_BITS:
            raise ParameterError(f"modulus has {n.bit_length()} bits; at least {MIN_KEY_BITS} are required")
        if n % 2 == 0:
            raise ParameterError("modulus must be odd")
        if obfuscation not in ("djn", "standard"):
            raise ParameterError(f"obfuscation must be 'djn' or 'standard', not {obfuscation!r}")
        self.n = n
        self.nsq = n * n
        self.n_bits = n.bit_length()
        #: largest magnitude a plaintext may have (larger decodes as overflow)
        self.max_int = n // 3
        self.obfuscation: Obfuscation = obfuscation
        self._ctx = _kernel.PublicContext(n)
        self._djn_limbs = (self.n_bits // 2 + 63) // 64
        self._lock = threading.Lock()
        self._pool: deque[np.ndarray] = deque()
        self._pool_count = 0
        self.fingerprint = hashlib.sha256(b"dtxfast/paillier-pk/v1" + self._n_bytes()).digest()[:16]

    # -- identity and serialization ---------------------------------------------------

    def _n_bytes(self) -> bytes:
        return self.n.to_bytes((self.n_bits + 7) // 8, "big")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PaillierPublicKey) and other.n == self.n

    def __hash__(self) -> int:
        return hash(self.n)

    def __repr__(self) -> str:
        return f"PaillierPublicKey(n_bits={self.n_bits}, fingerprint={self.fingerprint.hex()[:16]})"

    def to_bytes(self) -> bytes:
        """Versioned, length-prefixed encoding of the key."""
        nb = self._n_bytes()
        mode = 0 if self.obfuscation == "djn" else 1
        return _HEADER.pack(_MAGIC, _KIND_PUBLIC, _VERSION) + struct.pack("<BH", mode, len(nb)) + nb

    @classmethod
    def from_bytes(cls, data: bytes) -> PaillierPublicKey:
        """Inverse of :meth:`to_bytes`; raises :class:`~dtxfast.errors.MalformedInput`."""
        body = _check_header(data, _KIND_PUBLIC, "public key")
        if len(body) < 3:
            raise MalformedInput("public key is truncated")
        mode, nlen = struct.unpack_from("<BH", body)
        if mode not in (0, 1):
            raise MalformedInput(f"unknown obfuscation mode {mode}")
        if len(body) != 3 + nlen:
            raise MalformedInput(f"public key length mismatch: expected {3 + nlen} bytes after the header, got {len(body)}")
        n = int.from_bytes(body[3:], "big")
        try:
            return cls(n, obfuscation="djn" if mode == 0 else "standard")
        except ParameterError as exc:
            raise MalformedInput(f"invalid public key: {exc}") from None

    # -- obfuscators ------------------------------------------------------------------

    def _djn_base(self) -> int:
        """h_s = (-x^2)^n mod n^2 for x derived from n (nothing up the sleeve)."""
        shake = SHAKE256.new(b"dtxfast/djn-generator/v1" + self._n_bytes())
        x = int.from_bytes(shake.read((self.n_bits + 7) // 8 + 16), "big") % self.n
        h = (-x * x) % self.n
        return int(gmpy2.powmod(h, self.n, self.nsq))

    def _ensure_table(self) -> None:
        if self._ctx.has_table:
            return
        with self._lock:
            if not self._ctx.has_table:
                self._ctx.build_table(self._djn_base(), self._djn_limbs * 64, DJN_TABLE_WINDOW, _threads())

    def _fresh_obfuscators(self, count: int, randfunc: RandFunc | None) -> np.ndarray:
        rand = randfunc or os.urandom
        if self.obfuscation == "djn":
            self._ensure_table()
            we = self._djn_limbs
            exps = _u64(rand(count * we * 8), count, we).copy()
            # keep exactly n_bits/2 random bits
            extra = we * 64 - self.n_bits // 2
            if extra:
                exps[:, -1] &= np.uint64((1 << (64 - extra)) - 1)
            return self._ctx.obf_djn(exps, _threads())
        wr = self._ctx.wn + 1  # 64 extra bits: r mod n is within 2^-64 of uniform
        r = _u64(rand(count * wr * 8), count, wr)
        return self._ctx.obf_standard(np.ascontiguousarray(r), _threads())

    def obfuscators(self, count: int, *, randfunc: RandFunc | None = None) -> np.ndarray:
        """``count`` obfuscators ``r^n mod n^2`` (limb rows), from the precomputed pool first.

        Low-level: :meth:`encrypt` and :meth:`EncryptedVector.rerandomize` call it.
        """
        parts: list[np.ndarray] = []
        need = count
        if self._pool_count and randfunc is None:
            with self._lock:
                while need and self._pool:
                    chunk = self._pool.popleft()
                    take = min(need, chunk.shape[0])
                    parts.append(chunk[:take])
                    if take < chunk.shape[0]:
                        self._pool.appendleft(chunk[take:])
                    self._pool_count -= take
                    need -= take
        if need:
            parts.append(self._fresh_obfuscators(need, randfunc))
        if len(parts) == 1:
            return np.ascontiguousarray(parts[0])
        return np.ascontiguousarray(np.concatenate(parts)) if parts else np.empty((0, self._ctx.w), np.uint64)

    def precompute(self, count: int, *, background: bool = False) -> threading.Thread | None:
        """Compute ``count`` obfuscators ahead of time, so that online encryption costs about one
        multiplication per element.

        Parameters
        ----------
        count : int
            How many obfuscators to add to the pool (each is used once).
        background : bool
            Fill the pool in a background thread (the kernel releases the GIL) and return it.

        Examples
        --------
        >>> pk, sk = generate_keypair(1024)
        >>> pk.precompute(8)
        >>> pk.pool_size
        8
        >>> _ = pk.encrypt(np.zeros(5)); pk.pool_size
        3
        """
        if not isinstance(count, int) or count < 0:
            raise ParameterError("count must be a non-negative int")

        def fill() -> None:
            chunk = self._fresh_obfuscators(count, None)
            with self._lock:
                self._pool.append(chunk)
                self._pool_count += count

        if background:
            t = threading.Thread(target=fill, name="dtxfast-paillier-precompute", daemon=True)
            t.start()
            return t
        fill()
        return None

    @property
    def pool_size(self) -> int:
        """Number of precomputed obfuscators available."""
        return self._pool_count

    # -- encryption -------------------------------------------------------------------

    def encode(self, values: ArrayLike, *, frac_bits: int | None = None) -> tuple[np.ndarray, int, bool]:
        """Fixed-point encode ``values`` as residues mod n.

        Returns ``(limbs, exponent, is_float)``; see the module documentation for the rules.
        """
        arr = _as_array(values)
        if arr.dtype.kind == "f":
            frac = DEFAULT_FRAC_BITS if frac_bits is None else _check_frac(frac_bits)
            limbs, bad = self._ctx.encode_f64(np.ascontiguousarray(arr, dtype=np.float64), frac, _threads())
            if bad >= 0:
                v = arr[bad]
                if not math.isfinite(float(v)):
                    raise ParameterError(f"cannot encrypt a non-finite value ({v} at index {bad})")
                raise EncodingOverflowError(
                    f"value {v} at index {bad} overflows the plaintext space at {frac} fractional bits"
                )
            return limbs, frac, True
        if arr.dtype.kind in "iub" and (arr.dtype.kind != "u" or arr.dtype.itemsize < 8):
            limbs, bad = self._ctx.encode_i64(np.ascontiguousarray(arr, dtype=np.int64), 0, _threads())
            if bad >= 0:
                raise EncodingOverflowError(f"value {arr[bad]} at index {bad} overflows the plaintext space")
            return limbs, 0, False
        # object arrays of Python ints (beyond 64 bits) or uint64
        ints = []
        for i, v in enumerate(arr.tolist()):
            if isinstance(v, float):
                return self.encode(arr.astype(np.float64), frac_bits=frac_bits)
            if not isinstance(v, int):
                raise ParameterError(f"cannot encrypt {type(v).__name__} at index {i}")
            if abs(v) > self.max_int:
                raise EncodingOverflowError(f"value at index {i} overflows the plaintext space")
            ints.append(v % self.n)
        return _pack_ints(ints, self._ctx.wn), 0, False

    def encrypt(
        self,
        values: ArrayLike,
        *,
        frac_bits: int | None = None,
        randfunc: RandFunc | None = None,
    ) -> EncryptedVector:
        """Encrypt a scalar, a list or a numpy array of int or float.

        Parameters
        ----------
        values : scalar, sequence or numpy array (1-D; 0-D is the length-1 case)
        frac_bits : int, optional
            Fractional bits of the fixed-point encoding of floats (default 64). Ignored for ints.
        randfunc : callable, optional
            ``randfunc(k) -> k bytes`` to draw the randomness from (tests); default the OS CSPRNG.

        Returns
        -------
        EncryptedVector

        Raises
        ------
        EncodingOverflowError
            If a value does not fit the plaintext space.
        ParameterError
            If a value is not a finite number.

        Examples
        --------
        >>> pk, sk = generate_keypair(1024)
        >>> sk.decrypt(pk.encrypt(3))
        array([3])
        >>> sk.decrypt(pk.encrypt(np.array([0.25, -1e6])))
        array([ 2.5e-01, -1.0e+06])
        """
        limbs, exponent, is_float = self.encode(values, frac_bits=frac_bits)
        obf = self.obfuscators(limbs.shape[0], randfunc=randfunc)
        c = self._ctx.encrypt(limbs, obf, _threads())
        return EncryptedVector(self, c, exponent, is_float, obfuscated=True,
                               bits=_value_bits(_as_array(values), exponent))

    def raw_encrypt(self, residues: Sequence[int], *, obfuscate: bool = True) -> EncryptedVector:
        """Hazmat: encrypt integers already reduced to ``[0, n)``, with no encoding.

        ``obfuscate=False`` gives the deterministic ``1 + m n`` (never send that to anyone).
        """
        ints = [int(v) for v in residues]
        if any(v < 0 or v >= self.n for v in ints):
            raise ParameterError("raw plaintexts must lie in [0, n)")
        limbs = _pack_ints(ints, self._ctx.wn)
        obf = self.obfuscators(len(ints)) if obfuscate else None
        return EncryptedVector(self, self._ctx.encrypt(limbs, obf, _threads()), 0, False, obfuscated=obfuscate)


class PaillierPrivateKey:
    """A Paillier private key: the primes ``p, q`` of its public key's modulus.

    Examples
    --------
    >>> pk, sk = generate_keypair(1024)
    >>> sk2 = PaillierPrivateKey.from_bytes(sk.to_bytes())
    >>> sk2.public_key == pk and int(sk2.decrypt(pk.encrypt([7]))[0]) == 7
    True
    """

    def __init__(self, public_key: PaillierPublicKey, p: int, q: int) -> None:
        p, q = int(p), int(q)
        if p * q != public_key.n:
            raise KeyMismatch("p * q is not the public key's modulus")
        if p == q:
            raise ParameterError("p and q must differ")
        self.public_key = public_key
        self.p, self.q = (p, q) if p > q else (q, p)
        self._ctx = _kernel.PrivateContext(public_key._ctx, self.p, self.q)

    def __repr__(self) -> str:
        return f"PaillierPrivateKey(public_key={self.public_key!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PaillierPrivateKey) and (other.p, other.q) == (self.p, self.q)

    def __hash__(self) -> int:
        return hash((self.p, self.q))

    def to_bytes(self) -> bytes:
        """Versioned, length-prefixed encoding of ``p`` and ``q`` (secret!)."""
        pb = self.p.to_bytes((self.p.bit_length() + 7) // 8, "big")
        qb = self.q.to_bytes((self.q.bit_length() + 7) // 8, "big")
        mode = 0 if self.public_key.obfuscation == "djn" else 1
        return (
            _HEADER.pack(_MAGIC, _KIND_PRIVATE, _VERSION)
            + struct.pack("<BH", mode, len(pb)) + pb + struct.pack("<H", len(qb)) + qb
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> PaillierPrivateKey:
        """Inverse of :meth:`to_bytes`; checks that p and q are distinct probable primes."""
        body = _check_header(data, _KIND_PRIVATE, "private key")
        try:
            mode, plen = struct.unpack_from("<BH", body)
            p = int.from_bytes(body[3 : 3 + plen], "big")
            (qlen,) = struct.unpack_from("<H", body, 3 + plen)
            if len(body) != 5 + plen + qlen:
                raise MalformedInput("private key length mismatch")
            q = int.from_bytes(body[5 + plen :], "big")
        except struct.error:
            raise MalformedInput("private key is truncated") from None
        if mode not in (0, 1):
            raise MalformedInput(f"unknown obfuscation mode {mode}")
        if p.bit_length() != q.bit_length() or p == q or not (gmpy2.is_prime(p, 32) and gmpy2.is_prime(q, 32)):
            raise MalformedInput("invalid private key: p and q must be distinct primes of equal length")
        try:
            pk = PaillierPublicKey(p * q, obfuscation="djn" if mode == 0 else "standard")
        except ParameterError as exc:
            raise MalformedInput(f"invalid private key: {exc}") from None
        return cls(pk, p, q)

    def _check(self, ev: EncryptedVector) -> None:
        if not isinstance(ev, EncryptedVector):
            raise ParameterError(f"expected an EncryptedVector, not {type(ev).__name__}")
        if ev.public_key != self.public_key:
            raise KeyMismatch("the vector was encrypted under a different public key")

    def raw_decrypt(self, ev: EncryptedVector) -> list[int]:
        """Hazmat: the residues in ``[0, n)``, with no decoding."""
        self._check(ev)
        m = self._ctx.decrypt(ev._c, _threads())
        return [_limbs_to_int(row) for row in m]

    def decrypt(self, ev: EncryptedVector) -> np.ndarray:
        """Decrypt and decode a vector.

        Returns
        -------
        numpy.ndarray
            ``float64`` for float vectors; ``int64`` for integer vectors, or an object array of
            Python ints when a value does not fit 64 bits.

        Raises
        ------
        KeyMismatch
            If the vector was made under another key.
        EncodingOverflowError
            If a decrypted value lies in the overflow band (its computation left the plaintext
            space), instead of returning a wrong number.
        """
        self._check(ev)
        pctx = self.public_key._ctx
        m = self._ctx.decrypt(ev._c, _threads())
        if ev.is_float or ev.exponent:
            out, bad = pctx.decode_f64(m, ev.exponent, _threads())
            if bad >= 0:
                raise EncodingOverflowError(f"element {bad} overflowed the plaintext space")
            return out
        vals, status = pctx.decode_i64(m, _threads())
        if not status.any():
            return vals
        if (status == 2).any():
            raise EncodingOverflowError(f"element {int(np.argmax(status == 2))} overflowed the plaintext space")
        n = self.public_key.n
        big = np.empty(len(vals), dtype=object)
        for i, row in enumerate(m):
            v = _limbs_to_int(row)
            big[i] = v - n if v > self.public_key.max_int else v
        return big


# ------------------------------------------------------------------------ the vector


class EncryptedVector:
    """A vector of Paillier ciphertexts under one public key, with one fixed-point exponent.

    Supports ``+`` / ``-`` with another vector or plaintext (scalar or array, broadcast from
    length 1), unary ``-``, ``*`` by a plaintext scalar or array, ``X @ v`` for a plaintext
    matrix, :meth:`sum`, indexing and slicing, :func:`concatenate`, :meth:`rerandomize` and
    :meth:`to_bytes` / :meth:`from_bytes`.

    Examples
    --------
    >>> pk, sk = generate_keypair(1024)
    >>> a, b = pk.encrypt([1, 2, 3]), pk.encrypt([10, 20, 30])
    >>> sk.decrypt(a + b), sk.decrypt(a - 1), sk.decrypt(-a[1:])
    (array([11, 22, 33]), array([0, 1, 2]), array([-2, -3]))
    >>> sk.decrypt(EncryptedVector.from_bytes((a * [2, 0, -1]).to_bytes(), pk))
    array([ 2,  0, -3])
    """

    __slots__ = ("public_key", "_c", "exponent", "is_float", "_obfuscated", "_bits")
    #: make numpy operators (``ndarray @ v``, ``ndarray * v``) defer to this class
    __array_ufunc__ = None

    def __init__(
        self,
        public_key: PaillierPublicKey,
        ciphertexts: np.ndarray,
        exponent: int = 0,
        is_float: bool = False,
        *,
        obfuscated: bool = False,
        bits: int | None = None,
    ) -> None:
        self.public_key = public_key
        self._c = ciphertexts
        # Upper bound on the bit length of the encoded values, when known locally (None after
        # deserialization): operations that could leave the plaintext space raise before they
        # compute, instead of wrapping around silently.
        self._bits = _bounded(public_key, bits)
        #: binary fixed-point exponent: element i encrypts round(x_i * 2**exponent)
        self.exponent = int(exponent)
        #: whether decryption returns floats
        self.is_float = bool(is_float)
        self._obfuscated = obfuscated

    # -- basics -----------------------------------------------------------------------

    def __len__(self) -> int:
        return int(self._c.shape[0])

    def __repr__(self) -> str:
        kind = f"float, exponent={self.exponent}" if self.is_float else "int"
        return f"EncryptedVector(len={len(self)}, {kind}, key={self.public_key.fingerprint.hex()[:16]})"

    @property
    def ciphertexts(self) -> np.ndarray:
        """Read-only view of the ciphertexts as ``uint64`` limb rows (little-endian)."""
        v = self._c.view()
        v.flags.writeable = False
        return v

    def raw_ciphertexts(self) -> list[int]:
        """Hazmat: the ciphertexts as Python ints."""
        return [_limbs_to_int(row) for row in self._c]

    @classmethod
    def from_ciphertexts(
        cls, public_key: PaillierPublicKey, ciphertexts: Iterable[int], exponent: int = 0, is_float: bool = False
    ) -> EncryptedVector:
        """Hazmat: build a vector from ciphertext ints (checked to lie in ``[1, n^2)``)."""
        c = _pack_ints([int(x) for x in ciphertexts], public_key._ctx.w)
        _check_ciphertexts(public_key, c)
        return cls(public_key, c, _check_frac(exponent), is_float)

    def _like(
        self, c: np.ndarray, exponent: int | None = None, is_float: bool | None = None, *, grow: int = 0
    ) -> EncryptedVector:
        return EncryptedVector(
            self.public_key, c, self.exponent if exponent is None else exponent,
            self.is_float if is_float is None else is_float,
            bits=None if self._bits is None else self._bits + grow,
        )

    def __getitem__(self, key: int | slice | Sequence[int] | np.ndarray) -> EncryptedVector:
        if isinstance(key, (int, np.integer)):
            i = int(key)
            if not -len(self) <= i < len(self):
                raise IndexError(f"index {i} out of range for length {len(self)}")
            c = self._c[i : i + 1] if i >= 0 else self._c[len(self) + i : len(self) + i + 1]
        else:
            c = self._c[key]
            if c.ndim != 2:
                raise IndexError("invalid index")
        return EncryptedVector(self.public_key, np.ascontiguousarray(c), self.exponent, self.is_float,
                               obfuscated=self._obfuscated, bits=self._bits)

    def __iter__(self) -> Any:
        for i in range(len(self)):
            yield self[i]

    # -- alignment helpers ------------------------------------------------------------

    def _rescaled(self, exponent: int) -> EncryptedVector:
        """The same values at a larger exponent (multiplies the plaintexts by 2^d)."""
        d = exponent - self.exponent
        if d == 0:
            return self
        if d < 0:
            raise ParameterError("cannot lower a vector's exponent")
        e = _pack_ints([1 << d], (d + 64) // 64)
        c, _ = self.public_key._ctx.pow(self._c, e, np.zeros(1, np.uint8), _threads())
        return self._like(c, exponent=exponent, grow=d)

    def _check_peer(self, other: EncryptedVector) -> None:
        if other.public_key != self.public_key:
            raise KeyMismatch("cannot combine vectors encrypted under different public keys")
        if len(other) != len(self) and len(other) != 1 and len(self) != 1:
            raise ParameterError(f"length mismatch: {len(self)} and {len(other)}")

    # -- arithmetic -------------------------------------------------------------------

    def __add__(self, other: Any) -> EncryptedVector:
        ctx = self.public_key._ctx
        if isinstance(other, EncryptedVector):
            self._check_peer(other)
            exp = max(self.exponent, other.exponent)
            a, b = self._rescaled(exp), other._rescaled(exp)
            if len(a) == 1 and len(b) > 1:
                a, b = b, a
            bits = None if a._bits is None or b._bits is None else max(a._bits, b._bits) + 1
            return EncryptedVector(self.public_key, ctx.mul(a._c, b._c, _threads()), exp,
                                   self.is_float or other.is_float, bits=bits)
        arr = _as_array(other)
        if len(arr) != len(self) and len(arr) != 1 and len(self) != 1:
            raise ParameterError(f"length mismatch: {len(self)} and {len(arr)}")
        base = self
        if arr.dtype.kind == "f" and not self.is_float:
            base = self._rescaled(max(self.exponent, DEFAULT_FRAC_BITS))
            base = base._like(base._c, is_float=True)
        if arr.dtype.kind == "f":
            limbs, _, _ = self.public_key.encode(arr, frac_bits=base.exponent)
        else:
            limbs = _encode_int_scaled(self.public_key, arr, base.exponent)
        c = base._c
        if len(c) == 1 and limbs.shape[0] > 1:
            c = np.ascontiguousarray(np.broadcast_to(c, (limbs.shape[0], c.shape[1])))
        plain_bits = _value_bits(arr, base.exponent)
        bits = None if base._bits is None else max(base._bits, plain_bits) + 1
        return EncryptedVector(self.public_key, ctx.add_plain(c, limbs, _threads()), base.exponent,
                               base.is_float, bits=bits)

    __radd__ = __add__

    def __neg__(self) -> EncryptedVector:
        c, bad = self.public_key._ctx.invert(self._c, _threads())
        if bad >= 0:
            raise MalformedInput(f"ciphertext {bad} is not invertible mod n^2")
        return self._like(c)

    def __sub__(self, other: Any) -> EncryptedVector:
        if isinstance(other, EncryptedVector):
            return self + (-other)
        return self + _negate_plain(_as_array(other))

    def __rsub__(self, other: Any) -> EncryptedVector:
        return (-self) + other

    def __mul__(self, other: Any) -> EncryptedVector:
        if isinstance(other, EncryptedVector):
            raise TypeError("Paillier is additively homomorphic: multiply by a plaintext, not a ciphertext")
        arr = _as_array(other)
        if len(arr) != len(self) and len(arr) != 1 and len(self) != 1:
            raise ParameterError(f"length mismatch: {len(self)} and {len(arr)}")
        mags, neg, frac, is_float = _encode_operand(arr, PLAINTEXT_BITS)
        if self._bits is not None:
            _bounded(self.public_key, self._bits + _mag_bits(mags))
        c, bad = self.public_key._ctx.pow(self._c, mags, neg, _threads())
        if bad >= 0:
            raise MalformedInput(f"ciphertext {bad} is not invertible mod n^2")
        return self._like(c, exponent=self.exponent + frac, is_float=self.is_float or is_float,
                          grow=_mag_bits(mags))

    __rmul__ = __mul__

    def __truediv__(self, other: Any) -> EncryptedVector:
        arr = _as_array(other)
        if arr.dtype.kind not in "iuf":
            raise ParameterError("can only divide by a plaintext number")
        return self * (1.0 / arr.astype(np.float64))

    def __rmatmul__(self, X: Any) -> EncryptedVector:
        return matmul(X, self)

    def __matmul__(self, X: Any) -> EncryptedVector:
        """``v @ X`` for a plaintext matrix ``X`` of shape (len(v), m): ``X.T @ v``."""
        X = np.asarray(X)
        return matmul(X.T if X.ndim == 2 else X, self)

    def sum(self) -> EncryptedVector:
        """Homomorphic sum of all elements (a length-1 vector)."""
        return self._like(self.public_key._ctx.prod(self._c, _threads()), grow=max(len(self) - 1, 0).bit_length())

    def rerandomize(self, *, randfunc: RandFunc | None = None) -> EncryptedVector:
        """The same plaintexts under fresh randomness (multiplies in fresh obfuscators)."""
        obf = self.public_key.obfuscators(len(self), randfunc=randfunc)
        c = self.public_key._ctx.mul(self._c, obf, _threads()) if len(self) else self._c.copy()
        out = self._like(c)
        out._obfuscated = True
        return out

    # -- serialization ----------------------------------------------------------------

    def to_bytes(self, *, rerandomize: bool = True) -> bytes:
        """Versioned, length-checked encoding: header, key fingerprint, exponent, ciphertexts.

        Each ciphertext takes ``8 * limbs(n^2)`` bytes (512 for a 2048-bit key). By default a
        vector that is the result of an operation is re-randomized first, so what leaves the
        party reveals nothing about how it was computed; ``rerandomize=False`` sends it as is.
        """
        ev = self.rerandomize() if (rerandomize and not self._obfuscated) else self
        ct_bytes = ev._c.shape[1] * 8
        head = _HEADER.pack(_MAGIC, _KIND_VECTOR, _VERSION) + _VEC_HEADER.pack(
            self.public_key.fingerprint, ev.exponent, 1 if ev.is_float else 0, len(ev), ct_bytes
        )
        return head + ev._c.astype("<u8", copy=False).tobytes()

    @classmethod
    def from_bytes(cls, data: bytes, public_key: PaillierPublicKey) -> EncryptedVector:
        """Inverse of :meth:`to_bytes`.

        Raises
        ------
        MalformedInput
            Truncated, oversized, unknown version, or a ciphertext outside ``[1, n^2)``.
        KeyMismatch
            The vector was made under another public key.
        """
        body = _check_header(data, _KIND_VECTOR, "encrypted vector")
        if len(body) < _VEC_HEADER.size:
            raise MalformedInput("encrypted vector is truncated")
        fp, exponent, flags, count, ct_bytes = _VEC_HEADER.unpack_from(body)
        if fp != public_key.fingerprint:
            raise KeyMismatch("the vector was encrypted under a different public key")
        if flags not in (0, 1):
            raise MalformedInput(f"unknown flags {flags}")
        if not 0 <= exponent <= _MAX_EXPONENT:
            raise MalformedInput(f"exponent {exponent} out of range")
        w = public_key._ctx.w
        if ct_bytes != 8 * w:
            raise MalformedInput(f"ciphertexts are {ct_bytes} bytes, expected {8 * w} for this key")
        payload = memoryview(body)[_VEC_HEADER.size :]
        if len(payload) != count * ct_bytes:
            raise MalformedInput(
                f"encrypted vector length mismatch: header says {count} ciphertexts "
                f"({count * ct_bytes} bytes), payload has {len(payload)} bytes"
            )
        c = _u64(bytes(payload), count, w).copy()
        _check_ciphertexts(public_key, c)
        return cls(public_key, c, exponent, bool(flags), obfuscated=True)

    @staticmethod
    def concatenate(vectors: Sequence[EncryptedVector]) -> EncryptedVector:
        """See :func:`concatenate`."""
        return concatenate(vectors)


def concatenate(vectors: Sequence[EncryptedVector]) -> EncryptedVector:
    """Join vectors under one key (exponents are aligned to the largest).

    Examples
    --------
    >>> pk, sk = generate_keypair(1024)
    >>> sk.decrypt(concatenate([pk.encrypt([1, 2]), pk.encrypt([3])]))
    array([1, 2, 3])
    """
    vectors = list(vectors)
    if not vectors:
        raise ParameterError("nothing to concatenate")
    pk = vectors[0].public_key
    for v in vectors[1:]:
        if v.public_key != pk:
            raise KeyMismatch("cannot concatenate vectors encrypted under different public keys")
    exp = max(v.exponent for v in vectors)
    is_float = any(v.is_float for v in vectors)
    parts = [v._rescaled(exp)._c for v in vectors]
    known = [v._bits + exp - v.exponent for v in vectors if v._bits is not None]
    return EncryptedVector(pk, np.ascontiguousarray(np.concatenate(parts)), exp, is_float,
                           obfuscated=all(v._obfuscated for v in vectors),
                           bits=max(known) if len(known) == len(vectors) else None)


def matmul(X: Any, ev: EncryptedVector, *, plaintext_bits: int = PLAINTEXT_BITS) -> EncryptedVector:
    """``X @ ev`` for a plaintext matrix ``X`` (m x n) and an encrypted vector of length n.

    Each output element is a multi-exponentiation ``prod_j c_j^(x_ij)``, computed with
    Pippenger's bucket method (a fraction of the multiplications of one exponentiation per entry).
    Negative entries use ``c_j^-1`` (inverted once per column), never a full-size exponent.

    Parameters
    ----------
    X : array_like, 2-D (or 1-D for a dot product, giving length 1)
        Integers (exact, must fit int64) or floats.
    ev : EncryptedVector
    plaintext_bits : int, default 53
        Significant bits kept of float entries (relative to the largest); fewer bits make the
        product faster (cost is proportional to this).

    Examples
    --------
    >>> pk, sk = generate_keypair(1024)
    >>> sk.decrypt(matmul([[1, -2], [3, 4]], pk.encrypt([5, 6])))
    array([-7, 39])
    """
    A = _matmul_check(X, ev, plaintext_bits)
    plan = _matmul_plan(A, ev, plaintext_bits)
    c = ev.public_key._ctx.matmul(plan.xabs, plan.xneg, ev._c, plan.cinv, max(plan.bits, 1), plan.window,
                                  _threads())
    return plan.result(ev, c)


class _MatmulPlan:
    """``X @ ev`` prepared: the encoded plaintext matrix, the inverted columns, the Pippenger window.

    Rows are independent: ``ctx.matmul`` over any block of rows of ``xabs``/``xneg`` gives those
    rows of the product, bit for bit (what :mod:`dtxfast.compute` splits into chunks).
    """

    __slots__ = ("xabs", "xneg", "cinv", "frac", "is_float", "bits", "window", "bound")

    def __init__(self, xabs: np.ndarray, xneg: np.ndarray | None, cinv: np.ndarray | None, frac: int,
                 is_float: bool, bits: int, window: int, bound: int | None) -> None:
        self.xabs, self.xneg, self.cinv = xabs, xneg, cinv
        self.frac, self.is_float, self.bits, self.window, self.bound = frac, is_float, bits, window, bound

    def result(self, ev: EncryptedVector, c: np.ndarray) -> EncryptedVector:
        """The product vector from the computed ciphertext rows ``c``."""
        return EncryptedVector(ev.public_key, c, ev.exponent + self.frac, ev.is_float or self.is_float,
                               bits=self.bound)


def _matmul_plan(A: np.ndarray, ev: EncryptedVector, plaintext_bits: int) -> _MatmulPlan:
    """Encode a checked 2-D ``A`` for ``A @ ev`` (overflow checked before any work)."""
    mags, neg, frac, is_float = _encode_operand(A.reshape(-1), plaintext_bits)
    if mags.shape[1] != 1:
        raise ParameterError("integer matrix entries must fit 64 bits")
    m, k = A.shape
    xabs = np.ascontiguousarray(mags.reshape(m, k))
    xneg: np.ndarray | None = np.ascontiguousarray(neg.reshape(m, k))
    ctx = ev.public_key._ctx
    cinv = None
    if xneg is not None and xneg.any():
        cols = np.flatnonzero(xneg.any(axis=0))
        cinv = ev._c.copy()
        inv, bad = ctx.invert(np.ascontiguousarray(ev._c[cols]), _threads())
        if bad >= 0:
            raise MalformedInput(f"ciphertext {int(cols[bad])} is not invertible mod n^2")
        cinv[cols] = inv
    else:
        xneg = None
    bits = int(xabs.max()).bit_length() if xabs.size else 0
    if ev._bits is not None:
        _bounded(ev.public_key, ev._bits + bits + max(k - 1, 0).bit_length())
    window = _pippenger_window(k, bits)
    bound = None if ev._bits is None else ev._bits + bits + max(k - 1, 0).bit_length()
    return _MatmulPlan(xabs, xneg, cinv, frac, is_float, bits, window, bound)


def _matmul_check(X: Any, ev: Any, plaintext_bits: int) -> np.ndarray:
    """Validate the operands of ``X @ ev``; returns ``X`` as a 2-D array."""
    if not isinstance(ev, EncryptedVector):
        raise ParameterError("the right operand must be an EncryptedVector")
    A = np.asarray(X)
    if A.ndim == 1:
        A = A[None, :]
    if A.ndim != 2:
        raise ParameterError(f"X must be 1-D or 2-D, not {A.ndim}-D")
    if A.shape[1] != len(ev):
        raise ParameterError(f"shape mismatch: X has {A.shape[1]} columns, vector has {len(ev)} elements")
    if not 1 <= plaintext_bits <= 63:
        raise ParameterError("plaintext_bits must be in [1, 63]")
    return A


# ------------------------------------------------------------------------------ helpers


def _bounded(pk: PaillierPublicKey, bits: int | None) -> int | None:
    """Raise if values of ``bits`` bits may exceed the plaintext space (``n / 3``)."""
    if bits is not None and bits >= pk.max_int.bit_length():
        raise EncodingOverflowError(
            f"the result may exceed the plaintext space: values up to 2^{bits}, "
            f"the key holds magnitudes below 2^{pk.max_int.bit_length() - 1}"
        )
    return bits


def _value_bits(arr: np.ndarray, frac: int) -> int:
    """Bit length bound of ``round(x * 2^frac)`` over an array."""
    if arr.size == 0:
        return 0
    if arr.dtype.kind == "f":
        top = float(np.max(np.abs(arr)))
        return (math.frexp(top)[1] + frac + 1) if top else 0
    if arr.dtype.kind in "iub" and arr.dtype.itemsize <= 8:
        top = int(np.max(np.abs(arr.astype(np.float64))))  # float is enough for a bound
        return int(top).bit_length() + 1 + frac
    return max(abs(int(v)).bit_length() for v in arr.tolist()) + frac


def _mag_bits(mags: np.ndarray) -> int:
    if mags.size == 0:
        return 0
    if mags.shape[1] == 1:
        return int(mags.max()).bit_length()
    return max(_limbs_to_int(row).bit_length() for row in mags)


def _pippenger_window(k: int, bits: int) -> int:
    """Bucket width minimizing ceil(bits/c) * (k + 2^(c+1)) + bits multiplications."""
    if bits <= 0 or k <= 0:
        return 1
    best, best_cost = 1, float("inf")
    for c in range(1, 17):
        cost = math.ceil(bits / c) * (k + 2 ** (c + 1)) + bits
        if cost < best_cost:
            best, best_cost = c, cost
    return best


def _as_array(values: Any) -> np.ndarray:
    if isinstance(values, EncryptedVector):
        raise ParameterError("expected plaintext values")
    if isinstance(values, (int, np.integer)) and not isinstance(values, bool) and abs(int(values)) >= 1 << 63:
        return np.array([int(values)], dtype=object)
    arr = np.asarray(values)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ParameterError(f"expected a scalar or a 1-D array, got shape {arr.shape}")
    if arr.dtype.kind not in "iufbO":
        raise ParameterError(f"cannot encrypt values of dtype {arr.dtype}")
    if arr.dtype.kind == "b":
        arr = arr.astype(np.int64)
    return arr


def _check_frac(frac: int) -> int:
    if isinstance(frac, bool) or not isinstance(frac, (int, np.integer)) or not 0 <= int(frac) <= _MAX_EXPONENT:
        raise ParameterError(f"frac_bits must be an int in [0, {_MAX_EXPONENT}]")
    return int(frac)


def _pack_ints(values: Sequence[int], width: int) -> np.ndarray:
    size = width * 8
    buf = b"".join(int(v).to_bytes(size, "little") for v in values)
    return _u64(buf, len(values), width).copy() if values else np.empty((0, width), np.uint64)


def _limbs_to_int(row: np.ndarray) -> int:
    return int.from_bytes(np.ascontiguousarray(row, dtype="<u8").tobytes(), "little")


def _negate_plain(arr: np.ndarray) -> np.ndarray:
    if arr.dtype.kind == "O":
        return np.array([-int(v) for v in arr], dtype=object)
    if arr.dtype.kind == "u":
        return -arr.astype(object) if arr.dtype.itemsize == 8 else -arr.astype(np.int64)
    if arr.dtype.kind == "i" and (arr == np.iinfo(arr.dtype).min).any():
        return np.array([-int(v) for v in arr], dtype=object)
    return -arr


def _encode_int_scaled(pk: PaillierPublicKey, arr: np.ndarray, shift: int) -> np.ndarray:
    """Integers times 2^shift as residues mod n (exact)."""
    if arr.dtype.kind in "iu" and (arr.dtype.kind == "i" or arr.dtype.itemsize < 8):
        limbs, bad = pk._ctx.encode_i64(np.ascontiguousarray(arr, dtype=np.int64), shift, _threads())
        if bad >= 0:
            raise EncodingOverflowError(f"value {arr[bad]} at index {bad} overflows the plaintext space")
        return limbs
    ints = []
    for i, v in enumerate(arr.tolist()):
        v = int(v) << shift
        if abs(v) > pk.max_int:
            raise EncodingOverflowError(f"value at index {i} overflows the plaintext space")
        ints.append(v % pk.n)
    return _pack_ints(ints, pk._ctx.wn)


def _encode_operand(arr: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray, int, bool]:
    """Plaintext multiplier as (magnitude limbs, sign flags, fractional bits, is_float)."""
    if arr.dtype.kind == "f":
        a = arr.astype(np.float64)
        if not np.isfinite(a).all():
            raise ParameterError("cannot multiply by a non-finite value")
        top = float(np.max(np.abs(a))) if a.size else 0.0
        frac = 0 if top == 0.0 else max(0, bits - 1 - math.frexp(top)[1] + 1)
        if top != 0.0 and math.frexp(top)[1] > bits:
            # beyond 2^bits the integer part alone needs more bits: keep it exact as ints
            return _encode_operand(np.array([int(round(v)) for v in a], dtype=object), 64)
        scaled = np.rint(np.ldexp(a, frac))
        neg = (scaled < 0).astype(np.uint8)
        mags = np.abs(scaled).astype(np.uint64).reshape(-1, 1)
        return np.ascontiguousarray(mags), neg, frac, True
    if arr.dtype.kind in "iu" and arr.dtype.itemsize <= 8 and not (arr.dtype.kind == "u" and arr.dtype.itemsize == 8):
        a = arr.astype(np.int64)
        u = a.view(np.uint64)
        mags = np.where(a < 0, (~u) + np.uint64(1), u).astype(np.uint64).reshape(-1, 1)
        return np.ascontiguousarray(mags), (a < 0).astype(np.uint8), 0, False
    ints = [int(v) for v in arr.tolist()]
    width = max(1, max(((abs(v).bit_length() + 63) // 64 for v in ints), default=1))
    mags = _pack_ints([abs(v) for v in ints], width)
    neg = np.array([v < 0 for v in ints], dtype=np.uint8)
    return mags, neg, 0, False


def _check_header(data: bytes, kind: int, what: str) -> bytes:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise MalformedInput(f"{what} must be bytes")
    data = bytes(data)
    if len(data) < _HEADER.size:
        raise MalformedInput(f"{what} is truncated")
    magic, k, version = _HEADER.unpack_from(data)
    if magic != _MAGIC or k != kind:
        raise MalformedInput(f"not a dtxfast {what}")
    if version != _VERSION:
        raise MalformedInput(f"unsupported {what} version {version} (this dtxfast reads version {_VERSION})")
    return data[_HEADER.size :]


def _check_ciphertexts(pk: PaillierPublicKey, c: np.ndarray) -> None:
    bad = pk._ctx.check_range(c, True)
    if bad >= 0:
        raise MalformedInput(f"ciphertext {bad} is not in [1, n^2)")
