"""What runs on a compute worker: one chunk of one batch operation (no Ray import here).

:func:`run_chunk` takes an operation name, the serialized key the operation needs (a public key,
or a private key when the party allowed it to travel) with its digest, and the chunk's inputs; it
returns the chunk's outputs, or a :class:`ChunkError` for a :class:`DtxError`, so the driver re-raises the same class with the chunk's position instead of a remote traceback.

Keys are rebuilt from bytes once per worker process and kept in a small cache keyed by their
digest (a Paillier key's DJN table, ~1 s and 67 MB at 2048 bits, is built once per worker).
Kernels on a worker use the threads the worker was given (Ray sets ``OMP_NUM_THREADS`` to the task's
CPUs, 1 by default).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import errors
from .._backend import num_threads
from ..crypto import paillier
from ..crypto.blind_rsa import BlindedBatch, BlindRSAPublicKey, BlindRSASigner, IdBatch

__all__ = ["KEY_KINDS", "ChunkError", "run_chunk", "worker_report"]


@dataclass(frozen=True)
class ChunkError:
    """A :class:`~dtxfast.errors.DtxError` raised in a chunk: its class name and message."""

    name: str
    message: str


#: how each key kind is rebuilt from the bytes that travel
_LOADERS: dict[str, Callable[[bytes], Any]] = {
    "paillier-public": paillier.PaillierPublicKey.from_bytes,
    "paillier-private": paillier.PaillierPrivateKey.from_bytes,
    "rsa-public": BlindRSAPublicKey.from_bytes,
    "rsa-private": BlindRSASigner.from_pem,
}
KEY_KINDS = tuple(_LOADERS)

_CACHE: OrderedDict[bytes, Any] = OrderedDict()
_CACHE_SIZE = 4


def _key(kind: str, digest: bytes, data: bytes) -> Any:
    key = _CACHE.get(digest)
    if key is None:
        key = _LOADERS[kind](data)
        _CACHE[digest] = key
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    else:
        _CACHE.move_to_end(digest)
    return key


def _fingerprint(key: Any) -> str:
    if isinstance(key, paillier.PaillierPrivateKey):
        return key.public_key.fingerprint.hex()
    if isinstance(key, BlindRSASigner):
        return key.public_key().fingerprint.hex()
    return bytes(key.fingerprint).hex()


def held_keys() -> list[tuple[str, str]]:
    """``(class name, fingerprint hex)`` of every key this worker process holds."""
    return sorted((type(k).__name__, _fingerprint(k)) for k in _CACHE.values())


def _encrypt(pk: paillier.PaillierPublicKey, values: np.ndarray, frac_bits: int | None) -> tuple[np.ndarray, int, bool]:
    ev = pk.encrypt(values, frac_bits=frac_bits)
    return ev._c, ev.exponent, ev.is_float


def _decrypt(sk: paillier.PaillierPrivateKey, c: np.ndarray, exponent: int, is_float: bool) -> np.ndarray:
    return sk.decrypt(paillier.EncryptedVector(sk.public_key, c, exponent, is_float, obfuscated=True))


def _matmul(pk: paillier.PaillierPublicKey, xabs: np.ndarray, xneg: np.ndarray | None, c: np.ndarray,
            cinv: np.ndarray | None, bits: int, window: int) -> np.ndarray:
    return pk._ctx.matmul(np.ascontiguousarray(xabs), None if xneg is None else np.ascontiguousarray(xneg),
                          c, cinv, max(bits, 1), window, num_threads())


def _blind(pub: BlindRSAPublicKey, buffer: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    batch = pub.blind(IdBatch(buffer, offsets))
    return batch.blinded, batch.rinv


def _finalize(pub: BlindRSAPublicKey, signed: np.ndarray, rinv: np.ndarray, blinded: np.ndarray,
              verify: str) -> np.ndarray:
    return pub.finalize(BlindedBatch(blinded, rinv, pub.key_id), signed, verify=verify)  # type: ignore[arg-type]


_OPS: dict[str, Callable[..., Any]] = {
    "encrypt": _encrypt,
    "decrypt": _decrypt,
    "matmul": _matmul,
    "sign_blinded": lambda signer, blinded: signer.sign_blinded(blinded),
    "sign_own": lambda signer, buffer, offsets: signer.tags(IdBatch(buffer, offsets)),
    "blind": _blind,
    "finalize": _finalize,
}


def run_chunk(op: str, kind: str, digest: bytes, key_data: bytes, *args: Any) -> Any:
    """Run one chunk of ``op`` with the key of ``kind`` (rebuilt from ``key_data``, cached by ``digest``).

    Returns the operation's output, or a :class:`ChunkError` for a
    :class:`~dtxfast.errors.DtxError` raised by the operation.
    """
    try:
        return _OPS[op](_key(kind, digest, key_data), *args)
    except errors.DtxError as exc:
        return ChunkError(type(exc).__name__, str(exc))


def worker_report() -> dict[str, Any]:
    """This worker's process id and the keys it holds (:func:`held_keys`)."""
    import os

    return {"pid": os.getpid(), "keys": held_keys()}
