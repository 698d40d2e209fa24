"""Pure twin of the compiled PRF kernel (``ext/_prf.pyx``): AES-128-CTR through OpenSSL.

The same functions as :mod:`dtxfast._kernels._prf`, with OpenSSL's AES-CTR (``cryptography``)
computing the keystream: the fallback where the kernel was not built or the CPU lacks AES-NI,
and the reference the kernel is tested equal to.
"""

from __future__ import annotations

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = ["PARALLEL_WORDS", "SIMD_FALLBACK", "SIMD_NAME", "Stream", "aes_available", "ctr_blocks",
           "simd_available"]

SIMD_FALLBACK = "OpenSSL AES-CTR"
SIMD_NAME = "OpenSSL AES-CTR"
#: kept for the same interface (OpenSSL runs one thread whatever ``nthreads`` says)
PARALLEL_WORDS = 1 << 19

_ZEROS = bytes(1 << 20)


def simd_available() -> bool:
    """False: no SIMD path of dtxfast's own here."""
    return False


def aes_available() -> bool:
    """True: OpenSSL runs everywhere."""
    return True


class Stream:
    """The AES-128-CTR keystream under ``key`` (zero initial counter block) as ``uint64`` words,
    drawn in order: :attr:`pos` words have been drawn.

    Draws of fewer than :attr:`CHUNK` words are served from a keystream buffer (the same stream);
    a larger one is written by OpenSSL straight into the array it returns.

    Examples
    --------
    >>> s = Stream(bytes(16))
    >>> hex(int(s.draw(1)[0]))  # AES_0(0), the first 8 bytes as a little-endian word
    '0x3b2c8aefd44be966'
    """

    #: small draws are served from a keystream buffer of this many words
    CHUNK = 1 << 12

    def __init__(self, key: bytes) -> None:
        if len(key) != 16:
            raise ValueError("an AES-128 key is 16 bytes")
        self._enc = Cipher(algorithms.AES(bytes(key)), modes.CTR(bytes(16))).encryptor()
        self._buf = np.empty(0, dtype=np.uint64)
        self._at = 0
        self.pos = 0

    def _fill(self, out: np.ndarray, start: int, n: int) -> None:
        """The next ``n`` words of OpenSSL's stream into ``out[start:start+n]`` (2 spare words)."""
        global _ZEROS
        nbytes = 8 * n
        if nbytes > len(_ZEROS):
            _ZEROS = bytes(max(nbytes, 2 * len(_ZEROS)))
        if nbytes:
            self._enc.update_into(memoryview(_ZEROS)[:nbytes], out.data.cast("B")[8 * start:])

    def draw(self, n: int, nthreads: int = 1) -> np.ndarray:
        """The next ``n`` words (a fresh array)."""
        self.pos += n
        rest = len(self._buf) - self._at
        if n <= rest:
            out = self._buf[self._at:self._at + n].copy()
            self._at += n
            return out
        if n - rest >= self.CHUNK:  # large draw: the buffered rest, then fresh keystream
            full = np.empty(n + 2, dtype=np.uint64)  # update_into wants 15 spare bytes
            full[:rest] = self._buf[self._at:]
            self._fill(full, rest, n - rest)
            self._buf, self._at = self._buf[:0], 0
            return full[:n]
        buf = np.empty(rest + self.CHUNK + 2, dtype=np.uint64)
        buf[:rest] = self._buf[self._at:]
        self._fill(buf, rest, self.CHUNK)
        self._buf, self._at = buf[:rest + self.CHUNK], n
        return self._buf[:n].copy()

    def draw_sub(self, other: Stream, n: int, nthreads: int = 1) -> np.ndarray:
        """The next ``n`` words of this stream minus the next ``n`` of ``other`` (mod 2^64)."""
        out = self.draw(n)
        out -= other.draw(n)
        return out


def ctr_blocks(key: bytes, counter: bytes, nblocks: int) -> bytes:
    """``nblocks`` keystream blocks of AES-128-CTR under ``key`` from the 16-byte ``counter`` block."""
    if len(key) != 16 or len(counter) != 16:
        raise ValueError("key and counter block are 16 bytes")
    enc = Cipher(algorithms.AES(bytes(key)), modes.CTR(bytes(counter))).encryptor()
    return enc.update(bytes(16 * nblocks)) + enc.finalize()
