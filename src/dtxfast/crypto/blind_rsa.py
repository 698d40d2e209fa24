"""RSA blind signatures over batches of ids, the primitive of RSA-PSI (L1).

A signer holds an RSA key; a requester turns each of its ids into a *tag* the signer's key
defines, without the signer seeing the id:

1. full-domain hash ``h = FDH(id)`` into Z_n (SHA-256 expanded to ``len(n) + 16`` bytes, reduced
   mod n; the hash is bound to the key's fingerprint);
2. blinding ``m = h * r^e mod n`` with a fresh uniformly random ``r`` per id (and per run);
3. the signer returns ``s = m^d mod n`` (CRT, :meth:`BlindRSASigner.sign_blinded`);
4. the requester checks the signature, unblinds ``sigma = s * r^-1 = h^d`` and hashes it to a
   16-byte tag ``SHA-256("...tag..." || sigma)[:16]``.

The signer computes the tags of its own ids directly (:meth:`BlindRSASigner.tags`). Equal ids give
equal tags under one key; without the signer's help no one can compute the tag of an id
(one-more-RSA assumption, random oracle), and a blinded value is uniformly distributed in Z_n^*
whatever the id, so the signer learns nothing from it.

Batches: ids are an :class:`IdBatch` (one byte buffer + offsets), big integers are rows of a
``(count, k)`` ``uint8`` array of big-endian bytes. The heavy work runs in the compiled kernel
``dtxfast._kernels._psi`` (OpenSSL libcrypto, GIL released, OpenMP over the batch) or its
pure-Python twin :mod:`dtxfast.crypto._psi_py`.

Examples
--------
>>> from dtxfast.crypto.blind_rsa import BlindRSASigner, IdBatch
>>> signer = BlindRSASigner.generate(1024)
>>> pub = signer.public_key()
>>> ids = IdBatch.from_strings(["alice", "bob"])
>>> batch = pub.blind(ids)
>>> tags = pub.finalize(batch, signer.sign_blinded(batch.blinded))
>>> bool((tags == signer.tags(ids)).all())
True
"""

from __future__ import annotations

import hashlib
import os
import struct
from array import array
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Literal

import numpy as np

from .._backend import load_kernel, num_threads
from ..errors import InvalidSignature, KeyMismatch, MalformedInput, ParameterError

__all__ = [
    "TAG_SIZE",
    "IdBatch",
    "BlindedBatch",
    "BlindRSAPublicKey",
    "BlindRSASigner",
]

_kernel, _info = load_kernel("_psi", "dtxfast.crypto._psi_py")

#: bytes of a PSI tag (truncated SHA-256; false-match probability about N_a * N_b / 2^128)
TAG_SIZE = 16
MIN_BITS = 1024
MAX_BITS = 8192
_FDH_DOMAIN = b"dtxfast/psi/rsa/fdh/v1\x00"
_TAG_DOMAIN = b"dtxfast/psi/rsa/tag/v1\x00"
_FP_DOMAIN = b"dtxfast/psi/rsa/key/v1\x00"
_RAND_EXTRA = 8

Rng = Callable[[int], bytes]


def _u8(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype=np.uint8)


class IdBatch:
    """A batch of ids as one ``uint8`` buffer plus ``int64`` offsets (compact, kernel-ready).

    Ids are byte strings; :meth:`from_strings` encodes text as UTF-8.

    Examples
    --------
    >>> b = IdBatch.from_strings(["a", "bc", "a"])
    >>> len(b), b[1]
    (3, b'bc')
    >>> u, first = b.unique(); len(u), first.tolist()
    (2, [0, 1])
    """

    __slots__ = ("buffer", "offsets")

    def __init__(self, buffer: np.ndarray, offsets: np.ndarray) -> None:
        buffer = np.ascontiguousarray(buffer, dtype=np.uint8)
        offsets = np.ascontiguousarray(offsets, dtype=np.int64)
        if offsets.ndim != 1 or offsets.shape[0] < 1 or offsets[0] != 0:
            raise ParameterError("offsets must be a 1-d array starting at 0")
        if offsets[-1] != buffer.shape[0] or (offsets.shape[0] > 1 and np.any(np.diff(offsets) < 0)):
            raise ParameterError("offsets must be non-decreasing and end at the buffer length")
        self.buffer = buffer
        self.offsets = offsets

    @classmethod
    def from_bytes(cls, ids: Iterable[bytes]) -> IdBatch:
        """Build a batch from byte strings (streamed: memory is the ids' bytes + 8 per id)."""
        buf = bytearray()
        ends = array("q")
        for x in ids:
            buf += x
            ends.append(len(buf))
        offsets = np.zeros(len(ends) + 1, dtype=np.int64)
        if ends:
            offsets[1:] = np.frombuffer(ends, dtype=np.int64)
        return cls(np.frombuffer(buf, dtype=np.uint8), offsets)

    @classmethod
    def from_strings(cls, ids: Iterable[str]) -> IdBatch:
        """Build a batch from text ids (UTF-8), streamed like :meth:`from_bytes`."""

        def encoded() -> Iterator[bytes]:
            for x in ids:
                if not isinstance(x, str):
                    raise ParameterError(f"ids must be str, not {type(x).__name__}")
                yield x.encode("utf-8")

        return cls.from_bytes(encoded())

    def __len__(self) -> int:
        return int(self.offsets.shape[0] - 1)

    def __getitem__(self, i: int) -> bytes:
        return bytes(self.buffer[self.offsets[i] : self.offsets[i + 1]])

    def to_list(self) -> list[bytes]:
        """All ids as a list of bytes."""
        raw = self.buffer.tobytes()
        off = self.offsets.tolist()
        return [raw[off[i] : off[i + 1]] for i in range(len(self))]

    def take(self, index: np.ndarray) -> IdBatch:
        """The ids at ``index`` (in that order; negative indices count from the end, as in a list).

        Raises
        ------
        IndexError
            An index is out of range.
        """
        n = len(self)
        idx = np.asarray(index, dtype=np.int64).reshape(-1)
        idx = np.where(idx < 0, idx + n, idx)
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise IndexError(f"index out of range for {n} ids")
        raw = self.buffer.tobytes()
        off = self.offsets.tolist()
        return IdBatch.from_bytes(raw[off[i] : off[i + 1]] for i in idx.tolist())

    def slice(self, start: int, stop: int) -> IdBatch:
        """Ids ``start:stop`` (a view-free copy)."""
        stop = min(stop, len(self))
        lo, hi = int(self.offsets[start]), int(self.offsets[stop])
        return IdBatch(self.buffer[lo:hi].copy(), self.offsets[start : stop + 1] - lo)

    def unique(self) -> tuple[IdBatch, np.ndarray]:
        """Distinct ids in first-occurrence order, and the index of each in this batch."""
        seen: dict[bytes, int] = {}
        for i, x in enumerate(self.to_list()):
            seen.setdefault(x, i)
        first = np.fromiter(seen.values(), dtype=np.int64, count=len(seen))
        return IdBatch.from_bytes(seen.keys()), first

    def digest(self) -> bytes:
        """SHA-256 over the length-prefixed ids, in order (identifies the batch for caching)."""
        h = hashlib.sha256(b"dtxfast/psi/ids/v1\x00")
        h.update(struct.pack(">Q", len(self)))
        h.update(np.diff(self.offsets).astype(">u8").tobytes())
        h.update(self.buffer.tobytes())
        return h.digest()


@dataclass(frozen=True)
class BlindedBatch:
    """Blinded full-domain hashes and the secrets needed to unblind them.

    Attributes
    ----------
    blinded : numpy.ndarray
        ``(count, k)`` ``uint8``: the values sent to the signer.
    rinv : numpy.ndarray
        ``(count, k)`` ``uint8``: the inverses of the blinding factors. Secret: never send it.
    key_id : bytes
        The first 8 bytes of the fingerprint of the key the batch was blinded for.
    """

    blinded: np.ndarray
    rinv: np.ndarray
    key_id: bytes

    def __len__(self) -> int:
        return int(self.blinded.shape[0])


def _check_signed(key_id: bytes, batch: BlindedBatch, signed: Any, verify: str) -> np.ndarray:
    """Validate the signer's answers to ``batch`` (as ``finalize`` takes them); returns them as uint8."""
    if batch.key_id != key_id:
        raise KeyMismatch("the batch was blinded under another key")
    if verify not in ("batch", "each"):
        raise ParameterError("verify must be 'batch' or 'each'")
    signed = np.ascontiguousarray(signed, dtype=np.uint8)
    if signed.shape != batch.blinded.shape:
        raise MalformedInput(f"expected {batch.blinded.shape} signed values, got {signed.shape}")
    return signed


def _be(x: int, length: int | None = None) -> bytes:
    return int(x).to_bytes(length if length is not None else max(1, (int(x).bit_length() + 7) // 8), "big")


class BlindRSAPublicKey:
    """The requester's view of the signer's key: ``(n, e)``.

    Parameters
    ----------
    n : int
        RSA modulus (1024 to 8192 bits).
    e : int
        Public exponent (odd, at least 3).
    """

    __slots__ = ("n", "e", "k", "_n_be", "fingerprint", "_fdh_prefix", "_tag_prefix")

    def __init__(self, n: int, e: int) -> None:
        if not isinstance(n, int) or not isinstance(e, int):
            raise ParameterError("n and e must be int")
        if not MIN_BITS <= n.bit_length() <= MAX_BITS or n % 2 == 0:
            raise ParameterError(f"an RSA modulus has {MIN_BITS} to {MAX_BITS} bits and is odd")
        if e < 3 or e % 2 == 0 or e >= 2**32:
            raise ParameterError("the public exponent must be odd, at least 3 and below 2^32")
        self.n = n
        self.e = e
        self.k = (n.bit_length() + 7) // 8
        self._n_be = _be(n, self.k)
        self.fingerprint = hashlib.sha256(_FP_DOMAIN + self._n_be + struct.pack(">I", e)).digest()
        self._fdh_prefix = _u8(_FDH_DOMAIN + self.fingerprint)
        self._tag_prefix = _u8(_TAG_DOMAIN + self.fingerprint)

    @property
    def key_id(self) -> bytes:
        """The first 8 bytes of :attr:`fingerprint`; travels in every PSI message."""
        return self.fingerprint[:8]

    def to_bytes(self) -> bytes:
        """``u16 k || n (k bytes) || u32 e``."""
        return struct.pack(">H", self.k) + self._n_be + struct.pack(">I", self.e)

    @classmethod
    def from_bytes(cls, data: bytes) -> BlindRSAPublicKey:
        """Parse :meth:`to_bytes`; raises MalformedInput on a bad encoding."""
        if len(data) < 2:
            raise MalformedInput("truncated RSA public key")
        (k,) = struct.unpack(">H", data[:2])
        if len(data) != 2 + k + 4:
            raise MalformedInput("RSA public key has the wrong length")
        n = int.from_bytes(data[2 : 2 + k], "big")
        (e,) = struct.unpack(">I", data[2 + k :])
        try:
            key = cls(n, e)
        except ParameterError as exc:
            raise MalformedInput(f"invalid RSA public key: {exc}") from None
        if key.k != k:
            raise MalformedInput("RSA public key length does not match its modulus")
        return key

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BlindRSAPublicKey) and self.fingerprint == other.fingerprint

    def __hash__(self) -> int:
        return hash(self.fingerprint)

    def __repr__(self) -> str:
        return f"BlindRSAPublicKey(bits={self.n.bit_length()}, id={self.key_id.hex()})"

    def hash_ids(self, ids: IdBatch) -> np.ndarray:
        """The full-domain hashes of ``ids`` as ``(count, k)`` rows (no blinding: hazmat)."""
        out = np.zeros((len(ids), self.k), dtype=np.uint8)
        if len(ids):
            _kernel.fdh(ids.buffer, ids.offsets, self._fdh_prefix, self._n_be, out, num_threads())
        return out

    def blind(self, ids: IdBatch, *, rng: Rng = os.urandom) -> BlindedBatch:
        """Hash and blind ``ids`` with fresh random factors (``rng(nbytes)``, default os.urandom)."""
        count = len(ids)
        blinded = np.zeros((count, self.k), dtype=np.uint8)
        rinv = np.zeros((count, self.k), dtype=np.uint8)
        for _ in range(3):
            rnd = np.frombuffer(rng(count * (self.k + _RAND_EXTRA)), dtype=np.uint8)
            if rnd.shape[0] != count * (self.k + _RAND_EXTRA):
                raise ParameterError("rng returned the wrong number of bytes")
            if not count:
                break
            bad = _kernel.blind(ids.buffer, ids.offsets, self._fdh_prefix, self._n_be, self.e,
                                rnd.reshape(count, self.k + _RAND_EXTRA), blinded, rinv, num_threads())
            if bad < 0:
                break
        else:  # pragma: no cover - only with a modulus that has small factors
            raise ParameterError("could not blind: the modulus looks malformed")
        return BlindedBatch(blinded, rinv, self.key_id)

    def finalize(self, batch: BlindedBatch, signed: np.ndarray, *,
                 verify: Literal["batch", "each"] = "batch") -> np.ndarray:
        """Check the signer's answers, unblind them and hash them to ``(count, 16)`` tags.

        Parameters
        ----------
        batch : BlindedBatch
            What :meth:`blind` returned.
        signed : numpy.ndarray
            The signer's ``(count, k)`` answers.
        verify : {"batch", "each"}
            ``"each"`` checks ``s^e == m`` for every answer (costs one public-exponent
            exponentiation per id); ``"batch"`` (default) checks ``(prod s)^e == prod m`` once per
            chunk of 64 answers, which refuses a wrong key and any answer corrupted alone, but not
            a deliberate pair of answers multiplied by ``x`` and ``x^-1`` (only a cheater who wants
            to spoil the result would do that; it reveals nothing).

        Raises
        ------
        KeyMismatch
            ``batch`` was blinded under another key.
        MalformedInput
            ``signed`` has the wrong shape, or a value is not below n.
        InvalidSignature
            An answer is not the signature of its blinded value.
        """
        signed = _check_signed(self.key_id, batch, signed, verify)
        tags = np.zeros((len(batch), TAG_SIZE), dtype=np.uint8)
        if len(batch):
            bad = _kernel.unblind_tag(signed, batch.rinv, batch.blinded, self._n_be, self.e,
                                      self._tag_prefix, tags, num_threads(), verify == "each")
            if bad >= 0:
                raise InvalidSignature(f"blind signature {bad} does not verify under the signer's key")
        return tags


class BlindRSASigner:
    """The signer's RSA private key (CRT form), which blindly signs and tags its own ids.

    Keys come from pycryptodome (``Crypto.PublicKey.RSA``); :meth:`generate` draws a new one.
    """

    __slots__ = ("_pub", "_parts", "_der")

    def __init__(self, n: int, e: int, d: int, p: int, q: int) -> None:
        if p * q != n or p == q:
            raise ParameterError("p * q must equal n")
        pub = BlindRSAPublicKey(n, e)
        if pow(pow(2, e, n), d, n) != 2:
            raise ParameterError("d is not the private exponent of (n, e)")
        if p < q:  # CRT with p > q is the usual form; either works, keep it canonical
            p, q = q, p
        self._pub = pub
        self._parts = (
            pub._n_be, _be(p), _be(q), _be(d % (p - 1)), _be(d % (q - 1)), _be(pow(q, -1, p)),
        )
        from Crypto.PublicKey import RSA

        self._der = RSA.construct((n, e, d, p, q)).export_key("DER")

    @classmethod
    def generate(cls, bits: int = 2048, e: int = 65537) -> BlindRSASigner:
        """A fresh key of ``bits`` bits (pycryptodome's generator, the OS's randomness)."""
        if not MIN_BITS <= bits <= MAX_BITS:
            raise ParameterError(f"key size must be {MIN_BITS} to {MAX_BITS} bits")
        from Crypto.PublicKey import RSA

        key = RSA.generate(bits, e=e)
        return cls(int(key.n), int(key.e), int(key.d), int(key.p), int(key.q))

    @classmethod
    def from_pem(cls, data: bytes | str, passphrase: str | None = None) -> BlindRSASigner:
        """Load a PEM or DER RSA private key."""
        from Crypto.PublicKey import RSA

        try:
            key = RSA.import_key(data, passphrase=passphrase)
        except (ValueError, IndexError, TypeError) as exc:
            raise MalformedInput(f"not an RSA private key: {exc}") from None
        if not key.has_private():
            raise MalformedInput("an RSA public key was given where the private key is needed")
        return cls(int(key.n), int(key.e), int(key.d), int(key.p), int(key.q))

    def to_pem(self, passphrase: str | None = None) -> bytes:
        """The key as PKCS#8 PEM (encrypted with ``passphrase`` if given)."""
        from Crypto.PublicKey import RSA

        key = RSA.import_key(self._der)
        if passphrase is None:
            return key.export_key("PEM", pkcs=8)
        return key.export_key("PEM", pkcs=8, passphrase=passphrase,
                              protection="scryptAndAES128-CBC")

    def to_der(self) -> bytes:
        """The key as PKCS#1 DER (what OpenSSL's ``d2i_RSAPrivateKey`` reads)."""
        return self._der

    def public_key(self) -> BlindRSAPublicKey:
        """The public half, sent to requesters."""
        return self._pub

    @property
    def key_id(self) -> bytes:
        return self._pub.key_id

    def __repr__(self) -> str:
        return f"BlindRSASigner(bits={self._pub.n.bit_length()}, id={self.key_id.hex()})"

    def sign_blinded(self, blinded: np.ndarray) -> np.ndarray:
        """Sign a ``(count, k)`` batch of blinded values: ``s_i = m_i^d mod n`` (CRT).

        Raises
        ------
        MalformedInput
            Wrong shape, or a value is 0 or not below n.
        """
        blinded = np.ascontiguousarray(blinded, dtype=np.uint8)
        if blinded.ndim != 2 or blinded.shape[1] != self._pub.k:
            raise MalformedInput(f"blinded values must be rows of {self._pub.k} bytes")
        out = np.zeros_like(blinded)
        if blinded.shape[0]:
            bad = _kernel.sign(blinded, *self._parts, out, num_threads())
            if bad >= 0:
                raise MalformedInput(f"blinded value {bad} is not in [1, n)")
        return out

    def tags(self, ids: IdBatch) -> np.ndarray:
        """The ``(count, 16)`` tags of the signer's own ids (hash, sign, hash; no blinding)."""
        out = np.zeros((len(ids), TAG_SIZE), dtype=np.uint8)
        if len(ids):
            bad = _kernel.sign_tag(ids.buffer, ids.offsets, self._pub._fdh_prefix, *self._parts,
                                   self._pub._tag_prefix, out, num_threads())
            if bad >= 0:  # pragma: no cover - only on allocation failure
                raise MemoryError("signing failed")
        return out
