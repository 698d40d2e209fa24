"""Pure-Python reference of the Paillier kernel (gmpy2 only), twin of ``dtxfast._kernels._paillier``.

Same classes, same methods, same array layouts, same results: the test suite runs every property
against both. It is the fallback when the compiled extension is not built, and the readable
specification of what each compiled routine computes.
"""

from __future__ import annotations

from typing import Any

import gmpy2
import numpy as np
from gmpy2 import mpz

__all__ = ["PublicContext", "PrivateContext", "int_to_limbs", "limbs_to_int", "simd_available"]


def simd_available() -> bool:
    """The reference never uses SIMD."""
    return False

_U64 = np.uint64


def int_to_limbs(value: int, width: int) -> np.ndarray:
    """Little-endian uint64 limbs of a non-negative int, zero-padded to ``width``."""
    return np.frombuffer(int(value).to_bytes(width * 8, "little"), dtype=_U64).copy()


def limbs_to_int(limbs: np.ndarray) -> int:
    """Inverse of :func:`int_to_limbs`."""
    return int.from_bytes(np.ascontiguousarray(limbs, dtype=_U64).tobytes(), "little")


def _rows(a: np.ndarray) -> list[Any]:
    """Each row of a limb array as an mpz."""
    a = np.ascontiguousarray(a, dtype=_U64)
    width = a.shape[1] * 8
    raw = a.tobytes()
    return [mpz(int.from_bytes(raw[i * width : (i + 1) * width], "little")) for i in range(a.shape[0])]


def _pack(values: list[Any], width: int) -> np.ndarray:
    out = bytearray(len(values) * width * 8)
    size = width * 8
    for i, v in enumerate(values):
        out[i * size : (i + 1) * size] = int(v).to_bytes(size, "little")
    return np.frombuffer(bytes(out), dtype=_U64).reshape(len(values), width).copy()


class PublicContext:
    """Key constants of a public key n, and (after :meth:`build_table`) the DJN base."""

    def __init__(self, n: int) -> None:
        self.n = int(n)
        self._n = mpz(n)
        self._nsq = self._n * self._n
        self._max_int = self._n // 3
        self.wn = (self.n.bit_length() + 63) // 64
        self.w = (int(self._nsq).bit_length() + 63) // 64
        self._hs: Any = None

    #: the reference never uses SIMD
    simd = False

    @property
    def has_table(self) -> bool:
        return self._hs is not None

    def build_table(self, hs: int, exp_bits: int, window: int, threads: int) -> None:
        # The reference needs no table: it raises hs to each exponent directly.
        self._hs = mpz(hs)

    def obf_djn(self, exps: np.ndarray, threads: int) -> np.ndarray:
        return _pack([gmpy2.powmod(self._hs, e, self._nsq) for e in _rows(exps)], self.w)

    def obf_standard(self, r: np.ndarray, threads: int) -> np.ndarray:
        out = []
        for x in _rows(r):
            x = x % self._n
            if x == 0:
                x = mpz(1)
            out.append(gmpy2.powmod_sec(x, self._n, self._nsq))
        return _pack(out, self.w)

    def encrypt(self, m: np.ndarray, obf: np.ndarray | None, threads: int) -> np.ndarray:
        ms = _rows(m)
        if obf is None:
            return _pack([1 + x * self._n for x in ms], self.w)
        return _pack([(1 + x * self._n) * o % self._nsq for x, o in zip(ms, _rows(obf))], self.w)

    def mul(self, a: np.ndarray, b: np.ndarray, threads: int) -> np.ndarray:
        av, bv = _rows(a), _rows(b)
        if len(bv) == 1:
            bv = bv * len(av)
        return _pack([x * y % self._nsq for x, y in zip(av, bv)], self.w)

    def add_plain(self, c: np.ndarray, m: np.ndarray, threads: int) -> np.ndarray:
        cv, mv = _rows(c), _rows(m)
        if len(mv) == 1:
            mv = mv * len(cv)
        return _pack([x * (1 + y * self._n) % self._nsq for x, y in zip(cv, mv)], self.w)

    def pow(self, c: np.ndarray, e: np.ndarray, eneg: np.ndarray, threads: int) -> tuple[np.ndarray, int]:
        cv, ev = _rows(c), _rows(e)
        neg = [bool(x) for x in np.asarray(eneg)]
        cnt = max(len(cv), len(ev))
        if len(cv) == 1:
            cv = cv * cnt
        if len(ev) == 1:
            ev, neg = ev * cnt, neg * cnt
        out, bad = [], -1
        for j, (x, k, s) in enumerate(zip(cv, ev, neg)):
            if s and k != 0:
                try:
                    x = gmpy2.invert(x, self._nsq)
                except ZeroDivisionError:
                    bad = j if bad < 0 else bad
                    out.append(mpz(1))
                    continue
            out.append(gmpy2.powmod(x, k, self._nsq))
        return _pack(out, self.w), bad

    simd_one = False

    def pow_one(self, c: int, e: int, negative: bool) -> int | None:
        """``c ** e`` (``c ** -e`` if ``negative``) mod n^2; None when ``negative`` and ``c`` is
        not invertible."""
        x = mpz(c)
        if negative and e != 0:
            try:
                x = gmpy2.invert(x, self._nsq)
            except ZeroDivisionError:
                return None
        return int(gmpy2.powmod(x, e, self._nsq))

    def invert(self, c: np.ndarray, threads: int) -> tuple[np.ndarray, int]:
        out, bad = [], -1
        for j, x in enumerate(_rows(c)):
            try:
                out.append(gmpy2.invert(x, self._nsq))
            except ZeroDivisionError:
                bad = j if bad < 0 else bad
                out.append(mpz(1))
        return _pack(out, self.w), bad

    def prod(self, c: np.ndarray, threads: int) -> np.ndarray:
        acc = mpz(1)
        for x in _rows(c):
            acc = acc * x % self._nsq
        return _pack([acc], self.w)

    def matmul(
        self,
        xabs: np.ndarray,
        xneg: np.ndarray | None,
        c: np.ndarray,
        cinv: np.ndarray | None,
        bits: int,
        window: int,
        threads: int,
    ) -> np.ndarray:
        # The reference is the naive method: one powmod per entry, one mulmod per addition.
        cv = _rows(c)
        ci = _rows(cinv) if cinv is not None else None
        out = []
        for i in range(xabs.shape[0]):
            acc = mpz(1)
            for j in range(xabs.shape[1]):
                e = int(xabs[i, j])
                if e == 0:
                    continue
                base = ci[j] if (xneg is not None and xneg[i, j] and ci is not None) else cv[j]
                acc = acc * gmpy2.powmod(base, e, self._nsq) % self._nsq
            out.append(acc)
        return _pack(out, self.w)

    def _signed(self, m: Any) -> Any:
        if m <= self._max_int:
            return m
        if m >= self._n - self._max_int:
            return m - self._n
        return None

    def encode_f64(self, x: np.ndarray, frac: int, threads: int) -> tuple[np.ndarray, int]:
        out, bad = [], -1
        for j, v in enumerate(np.asarray(x, dtype=np.float64)):
            fv = float(v)
            if not np.isfinite(fv):
                bad = j if bad < 0 else bad
                out.append(0)
                continue
            num, den = fv.as_integer_ratio()  # exact
            scaled = num * (1 << frac) if frac >= 0 else num
            # round half to even of scaled / den (den is a power of two)
            q, r = divmod(scaled, den)
            if 2 * r > den or (2 * r == den and q % 2 == 1):
                q += 1
            if abs(q) > self._max_int:
                bad = j if bad < 0 else bad
                out.append(0)
                continue
            out.append(q % self._n)
        return _pack(out, self.wn), bad

    def encode_i64(self, x: np.ndarray, shift: int, threads: int) -> tuple[np.ndarray, int]:
        out, bad = [], -1
        for j, v in enumerate(np.asarray(x, dtype=np.int64)):
            q = int(v) << shift
            if abs(q) > self._max_int:
                bad = j if bad < 0 else bad
                out.append(0)
                continue
            out.append(q % self._n)
        return _pack(out, self.wn), bad

    def decode_f64(self, m: np.ndarray, frac: int, threads: int) -> tuple[np.ndarray, int]:
        out = np.empty(m.shape[0], dtype=np.float64)
        bad = -1
        for j, x in enumerate(_rows(m)):
            v = self._signed(x)
            if v is None:
                bad = j if bad < 0 else bad
                out[j] = np.nan
                continue
            # truncate to 53 bits toward zero, like mpz_get_d_2exp, then scale
            iv = int(v)
            nbits = abs(iv).bit_length()
            if nbits > 53:
                sh = nbits - 53
                mant = (abs(iv) >> sh) * (1 if iv > 0 else -1)
                out[j] = np.ldexp(float(mant), sh - frac)
            else:
                out[j] = np.ldexp(float(iv), -frac)
        return out, bad

    def decode_i64(self, m: np.ndarray, threads: int) -> tuple[np.ndarray, np.ndarray]:
        out = np.zeros(m.shape[0], dtype=np.int64)
        status = np.zeros(m.shape[0], dtype=np.uint8)
        for j, x in enumerate(_rows(m)):
            v = self._signed(x)
            if v is None:
                status[j] = 2
            elif not (-(1 << 63) <= v < (1 << 63)):
                status[j] = 1
            else:
                out[j] = int(v)
        return out, status

    def check_range(self, c: np.ndarray, ciphertext: bool) -> int:
        mod = self._nsq if ciphertext else self._n
        for j, x in enumerate(_rows(c)):
            if (ciphertext and x == 0) or x >= mod:
                return j
        return -1


class PrivateContext:
    """CRT constants of a private key (p, q) for :meth:`decrypt`."""

    def __init__(self, pub: PublicContext, p: int, q: int) -> None:
        self.pub = pub
        self._p, self._q = mpz(p), mpz(q)
        self._psq, self._qsq = self._p * self._p, self._q * self._q
        g = pub._n + 1
        self._hp = gmpy2.invert((gmpy2.powmod(g, self._p - 1, self._psq) - 1) // self._p, self._p)
        self._hq = gmpy2.invert((gmpy2.powmod(g, self._q - 1, self._qsq) - 1) // self._q, self._q)
        self._qinv = gmpy2.invert(self._q, self._p)

    simd = False
    simd_one = False

    def decrypt_one(self, c: int) -> int:
        """The residue in ``[0, n)`` of one ciphertext, an int in ``[0, n^2)``."""
        p, q = self._p, self._q
        x = mpz(c)
        mp = (gmpy2.powmod(x % self._psq, p - 1, self._psq) - 1) // p * self._hp % p
        mq = (gmpy2.powmod(x % self._qsq, q - 1, self._qsq) - 1) // q * self._hq % q
        return int(mq + q * ((mp - mq) * self._qinv % p))

    def decrypt(self, c: np.ndarray, threads: int) -> np.ndarray:
        out = []
        p, q = self._p, self._q
        for x in _rows(c):
            mp = (gmpy2.powmod(x % self._psq, p - 1, self._psq) - 1) // p * self._hp % p
            mq = (gmpy2.powmod(x % self._qsq, q - 1, self._qsq) - 1) // q * self._hq % q
            out.append(mq + q * ((mp - mq) * self._qinv % p))
        return _pack(out, self.pub.wn)
