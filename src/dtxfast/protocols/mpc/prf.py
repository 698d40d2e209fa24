"""Pairwise correlated randomness: AES-128 in counter mode as a PRF stream.

Two parties that share a 16-byte seed draw identical streams of Z_2^64 elements, as long as they
draw in the same order. The replicated-sharing protocol only draws at points of the program every
holder of the seed reaches in the same order, so the streams never drift apart.
"""

from __future__ import annotations

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ...errors import ParameterError

__all__ = ["PRFStream"]

_ZEROS = bytes(1 << 20)


class PRFStream:
    """A stream of pseudo-random 64-bit words from AES-128-CTR under ``key`` (counter from 0).

    The keystream comes from OpenSSL (``cryptography``), written straight into the array it
    returns; it is the same stream as any other AES-128-CTR with a zero initial counter block.

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

    #: draws of fewer words are served from a keystream buffer of this many words (same stream)
    CHUNK = 1 << 12

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, (bytes, bytearray)) or len(key) != 16:
            raise ParameterError("a PRF seed must be 16 bytes")
        self._enc = Cipher(algorithms.AES(bytes(key)), modes.CTR(bytes(16))).encryptor()
        self._buf = np.empty(0, dtype=np.uint64)
        self._pos = 0
        self.drawn = 0

    def _fill(self, out: np.ndarray, start: int, n: int) -> None:
        """Write the next ``n`` keystream words into ``out[start:start+n]`` (``out`` has 2 spare words)."""
        global _ZEROS
        nbytes = 8 * n
        if nbytes > len(_ZEROS):
            _ZEROS = bytes(max(nbytes, 2 * len(_ZEROS)))
        if nbytes:
            self._enc.update_into(memoryview(_ZEROS)[:nbytes], out.data.cast("B")[8 * start:])

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
            full = np.empty(n + 2, dtype=np.uint64)  # update_into wants 15 spare bytes
            full[:rest] = self._buf[self._pos:]
            self._fill(full, rest, n - rest)
            self._buf, self._pos = self._buf[:0], 0
            return full[:n]
        buf = np.empty(rest + self.CHUNK + 2, dtype=np.uint64)
        buf[:rest] = self._buf[self._pos:]
        self._fill(buf, rest, self.CHUNK)
        self._buf, self._pos = buf[:rest + self.CHUNK], n
        return self._buf[:n]
