"""The compute-backend interface and the local backend (the kernels of this process).

See :mod:`dtxfast.compute` for what each operation does, what a worker sees, and how to pick a
backend.
"""

from __future__ import annotations

import abc
from typing import Any, Literal

import numpy as np

from ..crypto.blind_rsa import BlindedBatch, BlindRSAPublicKey, BlindRSASigner, IdBatch, Rng
from ..crypto.paillier import (
    PLAINTEXT_BITS,
    EncryptedVector,
    PaillierPrivateKey,
    PaillierPublicKey,
    matmul,
)
from ..errors import ParameterError

__all__ = ["PRIVATE_KEY_POLICIES", "ComputeBackend", "LocalCompute", "PrivateKeyPolicy"]

PrivateKeyPolicy = Literal["refuse", "local", "send"]
#: what a backend may do with a private key: ``refuse`` (raise), ``local`` (run that operation on
#: this machine), ``send`` (ship the key to the workers)
PRIVATE_KEY_POLICIES: tuple[str, ...] = ("refuse", "local", "send")


def check_policy(policy: str) -> PrivateKeyPolicy:
    """Validate a private-key policy name."""
    if policy not in PRIVATE_KEY_POLICIES:
        raise ParameterError(f"private_keys must be one of {', '.join(PRIVATE_KEY_POLICIES)}, not {policy!r}")
    return policy  # type: ignore[return-value]


class ComputeBackend(abc.ABC):
    """Where the batch operations of large runs execute.

    Every backend returns what the L1 call of the same name returns (``pk.encrypt``,
    ``sk.decrypt``, ``X @ ev``, ``signer.sign_blinded``, ``signer.tags``, ``pub.blind``,
    ``pub.finalize``): the same values, in the same order, with the same errors. Use a backend as
    a context manager, or call :meth:`close`.
    """

    #: short name: ``"local"`` or ``"ray"``
    name: str = ""

    # -- Paillier -----------------------------------------------------------------------------
    @abc.abstractmethod
    def encrypt(self, pk: PaillierPublicKey, values: Any, *, frac_bits: int | None = None) -> EncryptedVector:
        """``pk.encrypt(values)`` (needs the public key only)."""

    @abc.abstractmethod
    def decrypt(self, sk: PaillierPrivateKey, ev: EncryptedVector) -> np.ndarray:
        """``sk.decrypt(ev)`` (needs the private key)."""

    @abc.abstractmethod
    def matmul(self, X: Any, ev: EncryptedVector, *, plaintext_bits: int = PLAINTEXT_BITS) -> EncryptedVector:
        """``X @ ev`` for a plaintext matrix (needs the public key only)."""

    # -- blind-RSA PSI ------------------------------------------------------------------------
    @abc.abstractmethod
    def sign_blinded(self, signer: BlindRSASigner, blinded: np.ndarray) -> np.ndarray:
        """``signer.sign_blinded(blinded)``: the signer's answers (needs the RSA private key)."""

    @abc.abstractmethod
    def sign_own(self, signer: BlindRSASigner, ids: IdBatch) -> np.ndarray:
        """``signer.tags(ids)``: the tags of the signer's own ids (needs the RSA private key)."""

    @abc.abstractmethod
    def blind(self, pub: BlindRSAPublicKey, ids: IdBatch, *, rng: Rng | None = None) -> BlindedBatch:
        """``pub.blind(ids)``: the requester's blinded hashes (public key; the ids and factors)."""

    @abc.abstractmethod
    def finalize(self, pub: BlindRSAPublicKey, batch: BlindedBatch, signed: np.ndarray, *,
                 verify: Literal["batch", "each"] = "batch") -> np.ndarray:
        """``pub.finalize(batch, signed)``: check, unblind and hash the signer's answers."""

    # -- lifetime -----------------------------------------------------------------------------
    def close(self) -> None:
        """Release what the backend holds (a Ray connection it opened, ...)."""

    def __enter__(self) -> ComputeBackend:  # noqa: PYI034 - typing.Self needs Python 3.11
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> str:
        """One line: which backend, where, how many CPUs."""
        return self.name


class LocalCompute(ComputeBackend):
    """Today's kernels in this process (GMP/OpenSSL, OpenMP over ``dtxfast.num_threads()`` cores).

    Keys never leave the process, so there is no private-key policy to choose.

    Examples
    --------
    >>> from dtxfast.crypto.paillier import generate_keypair
    >>> pk, sk = generate_keypair(1024)
    >>> with LocalCompute() as cb:
    ...     cb.decrypt(sk, cb.matmul([[1, 2], [3, -4]], cb.encrypt(pk, [5, 6])))
    array([17, -9])
    """

    name = "local"

    def encrypt(self, pk: PaillierPublicKey, values: Any, *, frac_bits: int | None = None) -> EncryptedVector:
        return pk.encrypt(values, frac_bits=frac_bits)

    def decrypt(self, sk: PaillierPrivateKey, ev: EncryptedVector) -> np.ndarray:
        return sk.decrypt(ev)

    def matmul(self, X: Any, ev: EncryptedVector, *, plaintext_bits: int = PLAINTEXT_BITS) -> EncryptedVector:
        return matmul(X, ev, plaintext_bits=plaintext_bits)

    def sign_blinded(self, signer: BlindRSASigner, blinded: np.ndarray) -> np.ndarray:
        return signer.sign_blinded(blinded)

    def sign_own(self, signer: BlindRSASigner, ids: IdBatch) -> np.ndarray:
        return signer.tags(ids)

    def blind(self, pub: BlindRSAPublicKey, ids: IdBatch, *, rng: Rng | None = None) -> BlindedBatch:
        return pub.blind(ids) if rng is None else pub.blind(ids, rng=rng)

    def finalize(self, pub: BlindRSAPublicKey, batch: BlindedBatch, signed: np.ndarray, *,
                 verify: Literal["batch", "each"] = "batch") -> np.ndarray:
        return pub.finalize(batch, signed, verify=verify)

    def describe(self) -> str:
        from .._backend import num_threads

        return f"local ({num_threads()} threads)"
