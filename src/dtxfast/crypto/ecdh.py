"""Commutative X25519 masking over batches of ids, the primitive of ECDH-PSI (L1).

Each party holds a secret X25519 scalar. An id is hashed to a u-coordinate
``P = SHA-256("...h2u..." || id)`` (top bit cleared, RFC 7748) and masked as ``X25519(a, P)``.
Scalar multiplication commutes, so ``X25519(b, X25519(a, P)) == X25519(a, X25519(b, P))``: two
parties that mask each other's masked values obtain equal doubly-masked values for equal ids and
unrelated values otherwise (decisional Diffie-Hellman on Curve25519 and its twist, random oracle).
The doubly-masked value is hashed to a 16-byte tag.

X25519 runs in the compiled kernel ``dtxfast._kernels._psi`` (GIL released, OpenMP over the batch):
where the CPU has AVX-512 IFMA, as a multi-buffer Montgomery ladder that multiplies 8 points at
once (radix 2^52, ``ext/_x25519_ifma.h``; no branch or memory index depends on the scalar), else
one point at a time through OpenSSL (``DTXFAST_SIMD=0`` forces that path;
``dtxfast.backend_info()`` says which one runs). Both give byte-identical results, tested against
RFC 7748's vectors and pyca/cryptography. The pure-Python twin calls the ``cryptography``
package; there is no Python-level point arithmetic.

Examples
--------
>>> from dtxfast.crypto.blind_rsa import IdBatch
>>> from dtxfast.crypto.ecdh import ECDHMaskKey
>>> a, b = ECDHMaskKey.generate(), ECDHMaskKey.generate()
>>> ids = IdBatch.from_strings(["x", "y"])
>>> ab = b.mask(a.mask(a.hash_ids(ids)))
>>> ba = a.mask(b.mask(b.hash_ids(ids)))
>>> bool((ab == ba).all())
True
"""

from __future__ import annotations

import hashlib
import os

import numpy as np

from .._backend import load_kernel, num_threads
from ..errors import MalformedInput, ParameterError
from .blind_rsa import TAG_SIZE, IdBatch, Rng

__all__ = ["POINT_SIZE", "ECDHMaskKey", "ecdh_tags"]

_kernel, _info = load_kernel("_psi", "dtxfast.crypto._psi_py")

POINT_SIZE = 32
_H2U_DOMAIN = np.frombuffer(b"dtxfast/psi/x25519/h2u/v1\x00", dtype=np.uint8)
_TAG_DOMAIN = np.frombuffer(b"dtxfast/psi/x25519/tag/v1\x00", dtype=np.uint8)


class ECDHMaskKey:
    """A secret X25519 scalar used to mask ids (ECDH-PSI).

    Parameters
    ----------
    scalar : bytes
        32 secret bytes (clamped by X25519 itself).
    """

    __slots__ = ("_scalar",)

    def __init__(self, scalar: bytes) -> None:
        if not isinstance(scalar, (bytes, bytearray)) or len(scalar) != 32:
            raise ParameterError("an X25519 scalar is 32 bytes")
        self._scalar = np.frombuffer(bytes(scalar), dtype=np.uint8)

    @classmethod
    def generate(cls, rng: Rng = os.urandom) -> ECDHMaskKey:
        """A fresh random scalar."""
        return cls(rng(32))

    def to_bytes(self) -> bytes:
        """The 32 secret bytes."""
        return self._scalar.tobytes()

    @property
    def key_id(self) -> bytes:
        """8 bytes identifying this key (a hash of the secret; reveals nothing about it)."""
        return hashlib.sha256(b"dtxfast/psi/x25519/key-id/v1\x00" + self.to_bytes()).digest()[:8]

    def __repr__(self) -> str:
        return f"ECDHMaskKey(id={self.key_id.hex()})"

    @staticmethod
    def hash_ids(ids: IdBatch) -> np.ndarray:
        """Hash ids to ``(count, 32)`` X25519 u-coordinates."""
        out = np.zeros((len(ids), POINT_SIZE), dtype=np.uint8)
        if len(ids):
            _kernel.hash_to_u(ids.buffer, ids.offsets, _H2U_DOMAIN, out, num_threads())
        return out

    def mask(self, points: np.ndarray) -> np.ndarray:
        """``X25519(scalar, P)`` for each row of ``points``.

        Raises
        ------
        MalformedInput
            Wrong shape, or a point of small order (its product is the all-zero value).
        """
        points = np.ascontiguousarray(points, dtype=np.uint8)
        if points.ndim != 2 or points.shape[1] != POINT_SIZE:
            raise MalformedInput("X25519 points must be rows of 32 bytes")
        out = np.zeros_like(points)
        if points.shape[0]:
            bad = _kernel.x25519(self._scalar, points, out, num_threads())
            if bad >= 0:
                raise MalformedInput(f"point {bad} has small order (X25519 gave zero)")
        return out


def ecdh_tags(points: np.ndarray) -> np.ndarray:
    """Hash doubly-masked points to ``(count, 16)`` tags."""
    points = np.ascontiguousarray(points, dtype=np.uint8)
    if points.ndim != 2 or points.shape[1] != POINT_SIZE:
        raise MalformedInput("X25519 points must be rows of 32 bytes")
    tags = np.zeros((points.shape[0], TAG_SIZE), dtype=np.uint8)
    if points.shape[0]:
        _kernel.tag_rows(points, _TAG_DOMAIN, tags, num_threads())
    return tags
