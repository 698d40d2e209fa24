"""Oblivious transfer (L1): base OTs over Ed25519, IKNP OT extension, KKRT16's batched OPRF.

Three layers, each a pair of classes (the two parties; no sockets, bytes in and out):

- **Base OT** (:class:`BaseOTSender`, :class:`BaseOTReceiver`): Chou–Orlandi "simplest OT" over
  the prime-order subgroup of Ed25519 (pycryptodome's point arithmetic), with the key hash over
  the transcript (index, both points). ``count`` 1-out-of-2 OTs of random 16-byte keys: the
  sender sends ``A = aG``; for choice bit ``c`` the receiver sends ``B = bG + cA`` and keeps
  ``H(j, A, B, bA)``; the sender gets ``k0 = H(j, A, B, aB)`` and ``k1 = H(j, A, B, a(B - A))``.
  Semi-honest security (CDH in the random-oracle model); a point off the curve is refused.
- **IKNP extension** (:class:`IKNPReceiver`, :class:`IKNPSender`): ``n`` random OTs (the receiver
  chooses its bits, both messages are random) from :data:`KAPPA` = 128 base OTs with the roles
  reversed. The receiver sends one ``(n, 16)`` matrix ``U = T0 ^ T1 ^ r·1``; outputs are
  ``H(i, row)`` (SHA-256, truncated to 16 bytes, one call per row; or, with ``hash="tccr"``,
  :func:`tccr_rows`: fixed-key AES over the whole matrix at once, for millions of OTs). Further
  extensions from the same base OTs take fresh rows (``lo``: the PRG position and the hash index
  ``i`` of the first row), never the same rows twice.
- **KKRT16 OPRF** (:class:`KKRTReceiver`, :class:`KKRTSender`): a batched oblivious PRF from 512
  random OTs (code width 512 bits, enough for 128-bit security at up to 2^24 inputs per KKRT16's
  table). The receiver has one input per row (bin); it sends ``U_i = T0_i ^ T1_i ^ C(x_i)`` and
  learns ``F(i, x_i) = H(T0_i)``; the sender, holding the 512 secret bits ``s``, can compute
  ``F(i, y) = H(Q_i ^ (C(y) & s))`` for any ``y`` and row ``i``, which equals the receiver's value
  exactly when ``y = x_i``. ``C`` is a pseudorandom code (four AES-128 blocks under a key both
  parties agree on), ``H`` SHA-256.

The hot loops (AES-CTR PRG expansion of the seeds, bit-matrix transposition, code + hash per row)
run in the compiled kernel ``dtxfast._kernels._ot`` (GIL released, OpenMP over rows), with the
pure-Python twin :mod:`dtxfast.crypto._ot_py` beside it.

Examples
--------
A full OPRF on 128 rows, base OTs to KKRT:

>>> import numpy as np
>>> s = OPRFKey.generate()
>>> snd = BaseOTSender(KAPPA)  # the OPRF sender is the base-OT sender
>>> delta = np.frombuffer(os.urandom(KAPPA // 8), np.uint8)
>>> rcv = BaseOTReceiver(bits_of(delta, KAPPA), snd.message())
>>> k0, k1 = snd.keys(rcv.message())
>>> ext_r = IKNPReceiver(np.stack([k0, k1], axis=1), bits_of(s.bits, CODE_BITS))  # OPRF sender
>>> ext_s = IKNPSender(delta, rcv.keys())
>>> m0, m1 = ext_s.receive(ext_r.message())
>>> oprf_r = KKRTReceiver(m0, m1, code_key=bytes(16))
>>> x = np.frombuffer(os.urandom(128 * 16), np.uint8).reshape(128, 16)
>>> u, mine = oprf_r.encode(x, 0)
>>> oprf_s = KKRTSender(s, ext_r.outputs(), code_key=bytes(16), rows=128)
>>> oprf_s.receive(u, 0)
>>> theirs = oprf_s.evaluate(np.arange(128), x, 16)
>>> bool((theirs == mine).all())
True
>>> bool((oprf_s.evaluate(np.arange(128), x[::-1].copy(), 16) == mine).all(axis=1).any())
False
"""

from __future__ import annotations

import hashlib
import os
import struct

import numpy as np
from Crypto.PublicKey import ECC
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from .._backend import load_kernel, num_threads
from ..errors import MalformedInput, ParameterError, StateError
from .blind_rsa import Rng

__all__ = [
    "CODE_BITS",
    "KAPPA",
    "POINT_BYTES",
    "BaseOTReceiver",
    "BaseOTSender",
    "IKNPReceiver",
    "IKNPSender",
    "KKRTReceiver",
    "KKRTSender",
    "OPRFKey",
    "bits_of",
    "tccr_rows",
]

_kernel, _info = load_kernel("_ot", "dtxfast.crypto._ot_py")

#: base OTs (and IKNP's matrix width): the computational security parameter
KAPPA = 128
#: KKRT16's code width in bits (rows of 64 bytes)
CODE_BITS = 512
#: bytes of an Ed25519 point on the wire (x and y, 32 bytes each, big-endian)
POINT_BYTES = 64

#: Ed25519's base point and prime subgroup order (RFC 8032, section 5.1), built through
#: pycryptodome's public point constructor (which checks that the point is on the curve)
_G = ECC.EccPoint(
    15112221349535400772501151409588531511454012693041857206046113283949847762202,
    46316835694926478169428394003475163141307993866256225615783033603165251855960,
    curve="Ed25519",
)
_ORDER = 2**252 + 27742317777372353535851937790883648493
_BASE_DOMAIN = b"dtxfast/ot/base/v1\x00"
_IKNP_DOMAIN = b"dtxfast/ot/iknp/v1\x00"


def bits_of(packed: np.ndarray, count: int) -> np.ndarray:
    """The first ``count`` bits of a packed ``uint8`` array (little bit order) as 0/1 ``uint8``.

    >>> bits_of(np.array([5], np.uint8), 4).tolist()
    [1, 0, 1, 0]
    """
    return np.unpackbits(np.asarray(packed, dtype=np.uint8), bitorder="little")[:count]


def _scalar(rng: Rng) -> int:
    while True:
        a = int.from_bytes(rng(64), "big") % _ORDER
        if a:
            return a


def _enc(p: ECC.EccPoint) -> bytes:
    x, y = p.xy
    return int(x).to_bytes(32, "big") + int(y).to_bytes(32, "big")


def _dec(data: bytes) -> ECC.EccPoint:
    try:
        return ECC.EccPoint(int.from_bytes(data[:32], "big"), int.from_bytes(data[32:64], "big"),
                            curve="Ed25519")
    except ValueError:
        raise MalformedInput("a base-OT point is not on Ed25519") from None


def _key(j: int, a: bytes, b: bytes, p: ECC.EccPoint) -> bytes:
    return hashlib.sha256(_BASE_DOMAIN + struct.pack(">I", j) + a + b + _enc(p)).digest()[:16]


class BaseOTSender:
    """The sender of ``count`` base OTs of random 16-byte keys (simplest OT, Ed25519).

    Parameters
    ----------
    count : int
        Number of OTs.
    rng : callable, optional
        ``rng(nbytes) -> bytes`` for the secret scalar (default os.urandom).
    """

    def __init__(self, count: int, rng: Rng = os.urandom) -> None:
        if not isinstance(count, int) or count < 1:
            raise ParameterError("count must be a positive int")
        self.count = count
        self._a = _scalar(rng)
        self._A = _G * self._a
        self._Abytes = _enc(self._A)

    def message(self) -> bytes:
        """The first message: ``A = aG`` (64 bytes)."""
        return self._Abytes

    def keys(self, receiver_message: bytes) -> tuple[np.ndarray, np.ndarray]:
        """Both keys of every OT, ``(count, 16)`` each, from the receiver's points.

        Raises
        ------
        MalformedInput
            Wrong length, or a point not on the curve.
        """
        if len(receiver_message) != self.count * POINT_BYTES:
            raise MalformedInput(f"the base-OT receiver's message must hold {self.count} points")
        aA = self._A * self._a
        k0 = np.zeros((self.count, 16), np.uint8)
        k1 = np.zeros((self.count, 16), np.uint8)
        for j in range(self.count):
            braw = bytes(receiver_message[j * POINT_BYTES:(j + 1) * POINT_BYTES])
            aB = _dec(braw) * self._a
            k0[j] = np.frombuffer(_key(j, self._Abytes, braw, aB), np.uint8)
            k1[j] = np.frombuffer(_key(j, self._Abytes, braw, aB + (-aA)), np.uint8)
        return k0, k1


class BaseOTReceiver:
    """The receiver of base OTs with choice bits ``choices`` (0/1 per OT).

    Raises
    ------
    MalformedInput
        The sender's point is malformed or not on the curve.
    """

    def __init__(self, choices: np.ndarray, sender_message: bytes, rng: Rng = os.urandom) -> None:
        choices = np.asarray(choices, dtype=np.uint8)
        if choices.ndim != 1 or choices.size < 1 or np.any(choices > 1):
            raise ParameterError("choices must be a non-empty 1-d array of 0/1")
        if len(sender_message) != POINT_BYTES:
            raise MalformedInput("the base-OT sender's message is one 64-byte point")
        A = _dec(bytes(sender_message))
        araw = bytes(sender_message)
        self._keys = np.zeros((choices.size, 16), np.uint8)
        parts = []
        for j, c in enumerate(choices.tolist()):
            b = _scalar(rng)
            B = _G * b
            if c:
                B = B + A
            braw = _enc(B)
            parts.append(braw)
            self._keys[j] = np.frombuffer(_key(j, araw, braw, A * b), np.uint8)
        self._msg = b"".join(parts)

    def message(self) -> bytes:
        """The receiver's points, 64 bytes each."""
        return self._msg

    def keys(self) -> np.ndarray:
        """The chosen key of every OT, ``(count, 16)``."""
        return self._keys


def _pad128(n: int) -> int:
    return max(128, (n + 127) // 128 * 128)


def _prg_rows(seeds: np.ndarray, lo: int, rows: int) -> np.ndarray:
    out = np.zeros((rows, seeds.shape[0] // 8), np.uint8)
    if _kernel.prg_rows(np.ascontiguousarray(seeds, dtype=np.uint8), lo, out, num_threads()):
        raise RuntimeError("OpenSSL failed in the OT kernel")
    return out


def _hash_rows(rows: np.ndarray, lo: int = 0) -> np.ndarray:
    out = np.zeros((rows.shape[0], 16), np.uint8)
    for i in range(rows.shape[0]):
        out[i] = np.frombuffer(
            hashlib.sha256(_IKNP_DOMAIN + struct.pack(">Q" if lo else ">I", lo + i) + rows[i].tobytes()).digest()[:16],
            np.uint8)
    return out


#: the public fixed AES key of :func:`tccr_rows` (a hash of a label: nothing up the sleeve)
_TCCR_KEY = hashlib.sha256(b"dtxfast/ot/tccr/v1").digest()[:16]
_HASHES = ("sha256", "tccr")


def tccr_rows(rows: np.ndarray, lo: int = 0) -> np.ndarray:
    """Hash every 16-byte row ``x_i`` to ``H(i, x_i) = pi(pi(x_i) ^ i) ^ pi(x_i)``, ``i = lo + row``.

    ``pi`` is AES-128 under a fixed public key: the tweakable correlation-robust hash of Guo,
    Katz, Wang and Yu (IEEE S&P 2020), what IKNP needs of its hash; two AES-ECB passes over the
    whole matrix (OpenSSL through ``cryptography``), no Python loop per row.

    Parameters
    ----------
    rows : array (n, 16) uint8
    lo : int
        Index of the first row (distinct rows of one key must use distinct indices).

    Returns
    -------
    array (n, 16) uint8

    Examples
    --------
    >>> x = np.zeros((2, 16), np.uint8)
    >>> h = tccr_rows(x)
    >>> bool((h[0] != h[1]).any()), bool((tccr_rows(x[1:], lo=1) == h[1:]).all())
    (True, True)
    """
    rows = np.ascontiguousarray(rows, dtype=np.uint8)
    if rows.ndim != 2 or rows.shape[1] != 16:
        raise ParameterError("rows must be (n, 16) bytes")
    if not isinstance(lo, int) or lo < 0:
        raise ParameterError("lo must be a non-negative int")
    n = rows.shape[0]
    enc = Cipher(algorithms.AES(_TCCR_KEY), modes.ECB()).encryptor()
    p = np.frombuffer(enc.update(rows), np.uint64).reshape(n, 2)
    x = p.copy()
    x[:, 0] ^= np.arange(lo, lo + n, dtype=np.uint64)  # the tweak i, little-endian in the first 8 bytes
    q = np.frombuffer(enc.update(x.view(np.uint8)), np.uint64).reshape(n, 2)
    return (q ^ p).view(np.uint8).reshape(n, 16)


def _hash(rows: np.ndarray, lo: int, how: str) -> np.ndarray:
    if how == "tccr":
        return tccr_rows(rows, lo)
    return _hash_rows(rows, lo)


def _check_ext(lo: int, how: str) -> None:
    if not isinstance(lo, int) or lo < 0 or lo % 128:
        raise ParameterError("lo (the first row) must be a non-negative multiple of 128")
    if how not in _HASHES:
        raise ParameterError(f"hash must be one of {_HASHES}, not {how!r}")


class IKNPReceiver:
    """IKNP receiver of ``len(choices)`` random OTs (a multiple of 128).

    Parameters
    ----------
    seed_pairs : array (128, 2, 16)
        Both keys of 128 base OTs in which this party was the *sender*.
    choices : array of 0/1
        This party's choice bits.
    lo : int, default 0
        First row of this extension (a multiple of 128): a later extension from the same base
        OTs starts where the previous one ended (the sender passes the same ``lo``).
    hash : {"sha256", "tccr"}
        How rows become outputs (the sender must use the same): SHA-256 per row, or
        :func:`tccr_rows` over the whole matrix.
    """

    def __init__(self, seed_pairs: np.ndarray, choices: np.ndarray, *, lo: int = 0, hash: str = "sha256") -> None:
        seed_pairs = np.ascontiguousarray(seed_pairs, dtype=np.uint8)
        choices = np.asarray(choices, dtype=np.uint8)
        if seed_pairs.shape != (KAPPA, 2, 16):
            raise ParameterError("seed_pairs must be (128, 2, 16)")
        n = choices.size
        if choices.ndim != 1 or n == 0 or n % 128 or np.any(choices > 1):
            raise ParameterError("choices: a multiple of 128 bits (0/1)")
        _check_ext(lo, hash)
        t0 = _prg_rows(seed_pairs[:, 0], lo, n)
        t1 = _prg_rows(seed_pairs[:, 1], lo, n)
        u = t0.view(np.uint64) ^ t1.view(np.uint64)
        u ^= choices.astype(np.uint64)[:, None] * np.uint64(0xFFFFFFFFFFFFFFFF)
        self._u = u.view(np.uint8)
        self._out = _hash(t0, lo, hash)

    def message(self) -> bytes:
        """``U`` as ``(n, 16)`` row-major bytes."""
        return self._u.tobytes()

    def outputs(self) -> np.ndarray:
        """The chosen message of each OT, ``(n, 16)``."""
        return self._out


class IKNPSender:
    """IKNP sender: both random messages of each OT.

    Parameters
    ----------
    delta : array (16,) uint8
        The 128 secret bits (packed) that were its base-OT choices.
    chosen : array (128, 16)
        The keys it received in those base OTs.
    """

    def __init__(self, delta: np.ndarray, chosen: np.ndarray) -> None:
        self._delta = np.ascontiguousarray(np.asarray(delta, dtype=np.uint8).reshape(KAPPA // 8))
        self._chosen = np.ascontiguousarray(chosen, dtype=np.uint8)
        if self._chosen.shape != (KAPPA, 16):
            raise ParameterError("chosen must be (128, 16)")

    def receive(self, message: bytes, *, lo: int = 0, hash: str = "sha256") -> tuple[np.ndarray, np.ndarray]:
        """``(m0, m1)``, ``(n, 16)`` each, from the receiver's ``U`` (``lo``, ``hash``: as the
        receiver's).

        Raises
        ------
        MalformedInput
            The length is not a positive multiple of 128 rows of 16 bytes.
        """
        _check_ext(lo, hash)
        if len(message) == 0 or len(message) % (128 * 16):
            raise MalformedInput("an IKNP message is a multiple of 128 rows of 16 bytes")
        u = np.frombuffer(bytes(message), np.uint8).reshape(-1, 16)
        d64 = self._delta.view(np.uint64)
        q = _prg_rows(self._chosen, lo, u.shape[0]).view(np.uint64)
        q ^= u.view(np.uint64) & d64[None, :]
        q1 = q ^ d64[None, :]
        return _hash(q.view(np.uint8), lo, hash), _hash(q1.view(np.uint8), lo, hash)


class OPRFKey:
    """The KKRT sender's secret: :data:`CODE_BITS` random bits ``s`` (its IKNP choice bits).

    Parameters
    ----------
    bits : bytes
        64 bytes.
    """

    __slots__ = ("bits",)

    def __init__(self, bits: bytes) -> None:
        if not isinstance(bits, (bytes, bytearray)) or len(bits) != CODE_BITS // 8:
            raise ParameterError("an OPRF key is 64 bytes")
        self.bits = np.frombuffer(bytes(bits), dtype=np.uint8)

    @classmethod
    def generate(cls, rng: Rng = os.urandom) -> OPRFKey:
        """A fresh random key."""
        return cls(rng(CODE_BITS // 8))

    @property
    def key_id(self) -> bytes:
        """8 bytes naming this key (a hash of it; reveals nothing about it)."""
        return hashlib.sha256(b"dtxfast/ot/oprf-key-id/v1\x00" + self.bits.tobytes()).digest()[:8]

    def __repr__(self) -> str:
        return f"OPRFKey(id={self.key_id.hex()})"


def _check_seeds(seeds: np.ndarray, name: str) -> np.ndarray:
    seeds = np.ascontiguousarray(seeds, dtype=np.uint8)
    if seeds.shape != (CODE_BITS, 16):
        raise ParameterError(f"{name} must be (512, 16)")
    return seeds


class KKRTReceiver:
    """KKRT16 OPRF receiver: one input per row; learns the OPRF value of each.

    Parameters
    ----------
    seeds0, seeds1 : arrays (512, 16)
        Both messages of 512 random OTs (this party is the OT sender, e.g. :class:`IKNPSender`).
    code_key : bytes
        16 bytes both parties agree on (the pseudorandom code's AES key).
    """

    def __init__(self, seeds0: np.ndarray, seeds1: np.ndarray, code_key: bytes) -> None:
        self._s0 = _check_seeds(seeds0, "seeds0")
        self._s1 = _check_seeds(seeds1, "seeds1")
        if len(code_key) != 16:
            raise ParameterError("code_key is 16 bytes")
        self._key = np.frombuffer(bytes(code_key), np.uint8)

    def encode(self, inputs: np.ndarray, lo: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows ``[lo, lo + len(inputs))``: the message ``U`` ``(B, 64)`` and this party's OPRF
        values ``(B, 16)``. ``lo`` and ``len(inputs)`` are multiples of 128."""
        inputs = np.ascontiguousarray(inputs, dtype=np.uint8)
        b = inputs.shape[0]
        if inputs.ndim != 2 or inputs.shape[1] != 16 or b % 128 or lo % 128 or lo < 0:
            raise ParameterError("inputs (B, 16) and lo, with B and lo multiples of 128")
        t0 = _prg_rows(self._s0, lo, b)
        t1 = _prg_rows(self._s1, lo, b)
        u = np.empty((b, 64), np.uint8)
        vals = np.empty((b, 16), np.uint8)
        if _kernel.kkrt_encode(t0, t1, inputs, self._key, u, vals, num_threads()):
            raise RuntimeError("OpenSSL failed in the OT kernel")
        return u, vals


class KKRTSender:
    """KKRT16 OPRF sender: after the receiver's ``U`` rows, evaluates the OPRF anywhere.

    Parameters
    ----------
    key : OPRFKey
        The secret bits ``s`` (its choice bits in the random OTs).
    seeds : array (512, 16)
        The chosen messages of those OTs (e.g. :meth:`IKNPReceiver.outputs`).
    code_key : bytes
        16 bytes, as the receiver's.
    rows : int
        Number of rows (a multiple of 128).
    """

    def __init__(self, key: OPRFKey, seeds: np.ndarray, code_key: bytes, rows: int) -> None:
        if not isinstance(key, OPRFKey):
            raise ParameterError("key must be an OPRFKey")
        if rows < 0 or rows % 128:
            raise ParameterError("rows must be a multiple of 128")
        if len(code_key) != 16:
            raise ParameterError("code_key is 16 bytes")
        self._s = key.bits
        self._seeds = _check_seeds(seeds, "seeds")
        self._key = np.frombuffer(bytes(code_key), np.uint8)
        self.rows = rows
        self._q = np.empty((rows, 64), np.uint8)
        self._filled = 0

    @property
    def complete(self) -> bool:
        """True once every row of ``U`` was received."""
        return self._filled == self.rows

    def receive(self, u: np.ndarray, lo: int) -> None:
        """Take rows ``[lo, lo + len(u))`` of ``U`` (in order; ``lo`` a multiple of 128).

        Raises
        ------
        StateError
            Rows out of order or beyond :attr:`rows`.
        """
        u = np.ascontiguousarray(u, dtype=np.uint8)
        b = u.shape[0]
        if u.ndim != 2 or u.shape[1] != 64 or b % 128:
            raise ParameterError("u is (B, 64) with B a multiple of 128")
        if lo != self._filled or lo + b > self.rows:
            raise StateError(f"U rows [{lo}, {lo + b}) out of order (expected from {self._filled} to {self.rows})")
        q = self._q[lo:lo + b]  # contiguous rows: the kernel writes them in place
        if _kernel.prg_rows(self._seeds, lo, q, num_threads()):
            raise RuntimeError("OpenSSL failed in the OT kernel")
        _kernel.kkrt_sender_q(q, u, self._s, num_threads())
        self._filled += b

    def evaluate_ids(self, bins: np.ndarray, items: np.ndarray, width: int) -> np.ndarray:
        """The OPRF of each item at each of its three bins (cuckoo hashing): ``(3n, width)``,
        row ``h * n + i`` for item ``i`` at ``bins[i, h]``, its input tagged with ``h`` (the low
        nibble of byte 15 replaced by ``h << 2``)."""
        if not self.complete:
            raise StateError("not every row of U was received")
        bins = np.ascontiguousarray(bins, dtype=np.uint32)
        items = np.ascontiguousarray(items, dtype=np.uint8)
        if items.ndim != 2 or items.shape[1] != 16 or bins.shape != (items.shape[0], 3):
            raise ParameterError("bins (n, 3) and items (n, 16)")
        out = np.empty((3 * items.shape[0], width), np.uint8)
        if items.shape[0] and _kernel.kkrt_eval_ids(self._q, self._s, bins, items, self._key, out,
                                                    num_threads()):
            raise RuntimeError("OpenSSL failed in the OT kernel")
        return out

    def evaluate(self, rows: np.ndarray, inputs: np.ndarray, width: int) -> np.ndarray:
        """The OPRF of ``inputs[i]`` at row ``rows[i]``, truncated to ``width`` bytes (1..32)."""
        if not self.complete:
            raise StateError("not every row of U was received")
        rows = np.ascontiguousarray(rows, dtype=np.int64)
        inputs = np.ascontiguousarray(inputs, dtype=np.uint8)
        if inputs.ndim != 2 or inputs.shape[1] != 16 or rows.shape != (inputs.shape[0],):
            raise ParameterError("rows (n,) and inputs (n, 16)")
        out = np.empty((rows.shape[0], width), np.uint8)
        if rows.shape[0]:
            q = self._q if self.rows else np.zeros((1, 64), np.uint8)
            if _kernel.kkrt_eval(q, self._s, rows, inputs, self._key, out, num_threads()):
                raise RuntimeError("OpenSSL failed in the OT kernel")
        return out
