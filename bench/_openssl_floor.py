"""The RSA floor of ``psi.signer``: libcrypto's own raw RSA private operation, through ctypes.

``RSA_private_decrypt`` without padding is what ``openssl speed rsa2048`` measures: the CRT
exponentiation with OpenSSL's fastest code for the CPU (AVX-512 IFMA where the CPU has it). It is
benchmark-only code, so it lives here and not in the shipped kernel. ctypes releases the GIL for
each foreign call, so ``threads`` Python threads run that many private operations at once; the
per-call overhead (about a microsecond) is well under 1% of a 2048-bit private operation.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from concurrent.futures import ThreadPoolExecutor
from typing import Any

__all__ = ["available", "rsa_private_raw"]

_RSA_NO_PADDING = 3
_lib: Any = None


def _libcrypto() -> Any:
    global _lib
    if _lib is None:
        name = ctypes.util.find_library("crypto")
        if name is None:
            raise OSError("libcrypto not found")
        lib = ctypes.CDLL(name)
        lib.d2i_RSAPrivateKey.restype = ctypes.c_void_p
        lib.d2i_RSAPrivateKey.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_char_p), ctypes.c_long]
        lib.RSA_private_decrypt.restype = ctypes.c_int
        lib.RSA_private_decrypt.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p,
                                            ctypes.c_int]
        lib.RSA_free.argtypes = [ctypes.c_void_p]
        _lib = lib
    return _lib


def available() -> bool:
    """True if the system's libcrypto can be loaded."""
    try:
        _libcrypto()
    except (OSError, AttributeError):
        return False
    return True


def rsa_private_raw(der: bytes, rows: list[bytes], threads: int) -> list[bytes]:
    """``x^d mod n`` of every ``x`` in ``rows`` (each the modulus length) with OpenSSL, on ``threads``."""
    lib = _libcrypto()
    buf = ctypes.c_char_p(der)
    rsa = lib.d2i_RSAPrivateKey(None, ctypes.byref(buf), len(der))
    if not rsa:
        raise ValueError("not a DER RSAPrivateKey")
    k = len(rows[0]) if rows else 0

    def part(lo: int, hi: int) -> list[bytes]:
        out = []
        for x in rows[lo:hi]:
            res = ctypes.create_string_buffer(k)
            if lib.RSA_private_decrypt(k, x, res, rsa, _RSA_NO_PADDING) != k:
                raise ValueError("RSA_private_decrypt failed")
            out.append(res.raw)
        return out

    try:
        if threads <= 1:
            return part(0, len(rows))
        step = -(-len(rows) // threads)
        with ThreadPoolExecutor(threads) as pool:
            parts = list(pool.map(lambda lo: part(lo, lo + step), range(0, len(rows), step)))
        return [y for p in parts for y in p]
    finally:
        lib.RSA_free(rsa)
