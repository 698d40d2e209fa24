"""Pairwise correlated randomness: AES-128 in counter mode as a PRF stream.

Two parties that share a 16-byte seed draw identical streams of Z_2^64 elements, as long as they
draw in the same order. The replicated-sharing protocol only draws at points of the program every
holder of the seed reaches in the same order, so the streams never drift apart.

The keystream comes from the compiled kernel ``dtxfast._kernels._prf`` (AES on AVX-512 VAES,
four blocks per instruction, or on AES-NI; ``ext/_prf_aes.h``), which writes any range of words
of the stream straight into the array it returns, on :func:`dtxfast.num_threads` threads for
large draws. Without it (not built, or no AES-NI) OpenSSL's AES-CTR through ``cryptography``
computes the same stream (:mod:`._prf_ref`, the twin the kernel is tested equal to).
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

from ... import _backend
from ...errors import ParameterError
from . import _prf_ref
from ._select import _threads

__all__ = ["PRFStream"]


def _choose() -> ModuleType:
    module, _ = _backend.load_kernel("_prf", "dtxfast.protocols.mpc._prf_ref")
    if not module.aes_available():  # built, but this CPU has no AES-NI: OpenSSL's AES-CTR
        _backend._loaded["_prf"] = (_prf_ref, _backend.BackendInfo(
            "_prf", "python", "no AES-NI on this CPU; using OpenSSL's AES-CTR (cryptography)"))
        return _prf_ref
    return module


#: the module whose ``Stream`` computes the keystream (switched by :func:`dtxfast.use_backend`)
_kernel: ModuleType = _choose()


class PRFStream:
    """A stream of pseudo-random 64-bit words from AES-128-CTR under ``key`` (counter from 0).

    The same stream as any other AES-128-CTR with a zero initial counter block: word ``w`` is
    bytes ``8 w .. 8 w + 7`` of the keystream as a little-endian ``uint64``.

    Parameters
    ----------
    key : bytes
        16-byte seed shared by the parties that must draw the same stream.

    Examples
    --------
    >>> a, b = PRFStream(bytes(16)), PRFStream(bytes(16))
    >>> bool((a.draw(4) == b.draw(4)).all())
    True
    >>> c, d = PRFStream(b"k" * 16), PRFStream(b"k" * 16)
    >>> bool((a.draw_sub(c, 3) == b.draw(3) - d.draw(3)).all())
    True
    """

    __slots__ = ("_s",)

    #: the fallback's keystream buffer (words); draws around it exercise its buffering
    CHUNK = _prf_ref.Stream.CHUNK

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, (bytes, bytearray)) or len(key) != 16:
            raise ParameterError("a PRF seed must be 16 bytes")
        self._s = _kernel.Stream(bytes(key))

    @property
    def drawn(self) -> int:
        """Number of words drawn so far (the position in the stream)."""
        return int(self._s.pos)

    def draw(self, n: int) -> np.ndarray:
        """The next ``n`` words of the stream as a fresh ``uint64`` array."""
        s = self._s
        if n >= _kernel.PARALLEL_WORDS:
            return s.draw(n, _threads())
        return s.draw(n)

    def draw_sub(self, other: PRFStream, n: int) -> np.ndarray:
        """``self.draw(n) - other.draw(n)`` (mod 2^64) in one pass; both streams advance by ``n``.

        Each stream yields exactly the words the two separate draws would (this one's first), so a
        holder of either seed who draws separately stays in step.
        """
        if type(other._s) is not type(self._s):  # built under different backends
            out = self.draw(n)
            out -= other.draw(n)
            return out
        if n >= _kernel.PARALLEL_WORDS:
            return self._s.draw_sub(other._s, n, _threads())
        return self._s.draw_sub(other._s, n)
