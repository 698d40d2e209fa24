"""Pairwise correlated randomness: AES-128 in counter mode as a PRF stream.

Two parties that share a 16-byte seed draw identical streams of Z_2^64 elements, as long as they
draw in the same order. The replicated-sharing protocol only draws at points of the program every
holder of the seed reaches in the same order, so the streams never drift apart.
"""

from __future__ import annotations

import numpy as np
from Crypto.Cipher import AES

from ...errors import ParameterError

__all__ = ["PRFStream"]

_ZEROS = bytes(1 << 20)


class PRFStream:
    """A stream of pseudo-random 64-bit words from AES-CTR under ``key``.

    Parameters
    ----------
    key : bytes
        16-byte seed shared by the parties that must draw the same stream.

    Examples
    --------
    >>> a, b = PRFStream(bytes(16)), PRFStream(bytes(16))
    >>> bool((a.draw(4) == b.draw(4)).all())
    True
    """

    #: small draws are served from a keystream buffer of this many words (same stream)
    CHUNK = 1 << 14

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, (bytes, bytearray)) or len(key) != 16:
            raise ParameterError("a PRF seed must be 16 bytes")
        self._cipher = AES.new(bytes(key), AES.MODE_CTR, nonce=b"", initial_value=0)
        self._buf = np.empty(0, dtype=np.uint64)
        self._pos = 0
        self.drawn = 0

    def _keystream(self, n: int) -> np.ndarray:
        global _ZEROS
        nbytes = 8 * n
        if nbytes > len(_ZEROS):
            _ZEROS = bytes(max(nbytes, 2 * len(_ZEROS)))
        out = np.empty(n, dtype=np.uint64)
        if nbytes:
            self._cipher.encrypt(memoryview(_ZEROS)[:nbytes], output=out.data.cast("B"))
        return out

    def draw(self, n: int) -> np.ndarray:
        """The next ``n`` words of the stream as a ``uint64`` array (do not modify it)."""
        n = int(n)
        self.drawn += n
        rest = len(self._buf) - self._pos
        if n <= rest:
            out = self._buf[self._pos:self._pos + n]
            self._pos += n
            return out
        if n - rest >= self.CHUNK:  # large draw: the buffered rest, then fresh keystream
            out = np.concatenate([self._buf[self._pos:], self._keystream(n - rest)]) if rest else self._keystream(n)
            self._buf, self._pos = self._buf[:0], 0
            return out
        self._buf = np.concatenate([self._buf[self._pos:], self._keystream(self.CHUNK)])
        self._pos = n
        return self._buf[:n]
