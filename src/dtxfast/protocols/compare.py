"""Two-party secure comparison and multiplexing on additive shares, over oblivious transfer (L2).

Two semi-honest parties (``first=True`` and ``first=False``) hold additive shares
``x = x_0 + x_1 mod 2^l`` of ``count`` values. :class:`SignBit` gives them XOR shares of the sign
bit ``[x < 0]`` of each (the top bit of ``x``, i.e. the comparison ``x < 0`` for every
``|x| < 2^(l-1)``; compare with a public ``c`` by sharing ``x - c``); :class:`Multiplexer` turns
XOR shares of bits ``b`` and additive integer shares of values ``v`` into additive integer shares
of ``b * v``. Neither party learns a bit, a value or a product: no dealer, no third party; all
correlated randomness comes from random OTs between the two (:class:`OTPool`: IKNP over 128
Chou–Orlandi base OTs, :mod:`dtxfast.crypto.ot`, one extension in each direction).

Protocol
--------
* **OT supply** (:class:`OTPool`). Once: each party is the base-OT sender for the OT extension in
  which it will choose (two rounds: :meth:`~OTPool.setup_message`, :meth:`~OTPool.setup_reply`).
  Per use: each party sends one IKNP matrix ``U`` for ``n`` fresh random OTs in which it chooses
  (random choice bits; 16 bytes per OT; rows never reused, outputs hashed with
  :func:`~dtxfast.crypto.ot.tccr_rows`). Both parties take OTs from the pool in the same order.
* **Bit triples** (GMW's AND gates): from one random OT in each direction, with no further
  message. In an OT where party P sends ``(m_0, m_1)`` and Q chooses ``c`` and gets ``m_c``,
  ``m_0 ^ m_c = (m_0 ^ m_1) c``: P's random bit ``a_P = m_0 ^ m_1`` and Q's random bit
  ``b_Q = c`` have XOR-shared product. With the other direction's OT for ``a_Q b_P``, each party
  holds ``c_P = a_P b_P ^ m_0 ^ m_c'`` and ``(a_0 ^ a_1)(b_0 ^ b_1) = c_0 ^ c_1``. An AND of
  XOR-shared bits ``x, y`` (Beaver) opens ``x ^ a`` and ``y ^ b``: uniform bits.
* **Sign bit** (:class:`SignBit`): ``msb(x) = msb(x_0) ^ msb(x_1) ^ carry``, the carry out of the
  sum of the low ``l - 1`` bits of the two shares: per bit the generate ``g_i = s_i t_i`` (one AND
  of the two parties' private bits: one OT sent by the first party, ``m_0 ^ m_c = (m_0 ^ m_1) c``,
  with ``s ^ m_0 ^ m_1`` and ``t ^ c`` opened) and the propagate ``p_i = s_i ^ t_i`` (free), then
  a log-depth tree of ``(G, P) o (G', P') = (G ^ P G', P P')`` (Beaver ANDs; the lowest group's
  ``P`` is never needed). :func:`and_count` ANDs per value (103 at ``l = 38``: 37 leaves of one
  OT, 66 tree ANDs of two) in ``1 + ceil(log2(l - 1))`` rounds (7 at ``l = 38``); all values of
  a call travel together (numpy over bit matrices, no loop per value or per bit).
* **Multiplexer** (:class:`Multiplexer`): ``b v = (b_0 ^ b_1)(v_0 + v_1)``. For its own term
  ``(b_0 ^ b_1) v_P`` party P sends, by one OT chosen by the peer's bit ``b_Q``, the two messages
  ``(b_P ^ j) v_P + r`` (``j = 0, 1``) and keeps ``-r``; ``r`` is uniform with
  :data:`STAT_BITS` more bits than the public bound of ``v_P`` and offset so that no message
  wraps: the shares are exact integers. Random OTs become chosen OTs in the usual way (the
  chooser sends ``b_Q ^ c``, the sender pads message ``j`` with a PRG of key ``m_(j ^ e)``:
  fixed-key AES of the key under fresh tweaks).
  Two rounds.

What each party learns
----------------------
Nothing about the other's shares, bits or values: every message is (i) a base-OT point or an IKNP
matrix (uniform given the receiver's view, computationally: CDH and a correlation-robust hash),
(ii) an opened Beaver difference ``x ^ a`` or a derandomization bit ``b ^ c``, uniform because
``a``, ``c`` are the sender's secret random bits, used once, or (iii) a multiplexer message:
the one the receiver can open is ``(b_0 ^ b_1) v_P + r``, within ``2^-STAT_BITS`` of uniform
whatever ``b`` and ``v_P``; the other is padded with a key it does not have. The outputs are
shares: XOR shares of the sign bits, integer shares of the products. Semi-honest parties are
assumed (a deviating party can change the results, not read the other's inputs from them).

Examples
--------
Compare four shared values with 0 (the parties run in one process here; over a network each
side runs its half and exchanges the same bytes):

>>> import numpy as np
>>> a, b = OTPool(), OTPool()
>>> ra, rb = a.setup_reply(b.setup_message()), b.setup_reply(a.setup_message())
>>> a.setup_finish(rb); b.setup_finish(ra)
>>> x = np.array([5, -1, 0, -(1 << 38)], dtype=np.int64).astype(np.uint64) & np.uint64((1 << 40) - 1)
>>> r = np.array([123456789, 42, 7, 99], dtype=np.uint64)
>>> xa, xb = (x - r) & np.uint64((1 << 40) - 1), r  # additive shares mod 2^40
>>> na, nb = SignBit.ots_needed(4, 40)  # OTs each party sends
>>> ua, ub = a.extend(nb), b.extend(na)  # each chooses in the OTs the other sends
>>> a.accept(ub, na); b.accept(ua, nb)
>>> sa, sb = SignBit(a, True, xa, 40), SignBit(b, False, xb, 40)
>>> ma, mb = sa.message(), sb.message()
>>> while ma is not None:
...     ma, mb = sa.receive(mb), sb.receive(ma)
>>> (sa.result ^ sb.result).tolist()  # [x < 0]
[0, 1, 0, 1]
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..crypto.blind_rsa import Rng
from ..crypto.ot import KAPPA, BaseOTReceiver, BaseOTSender, IKNPReceiver, IKNPSender, bits_of, tccr_rows
from ..errors import MalformedInput, ParameterError, StateError

__all__ = [
    "STAT_BITS",
    "Multiplexer",
    "OTPool",
    "SignBit",
    "and_count",
    "plain_sign",
]

#: statistical security of the multiplexer's masks (``2^-STAT_BITS`` distance per value)
STAT_BITS = 64
#: tweaks of the multiplexer's pads start here (IKNP's rows use tweaks from 0: disjoint domains)
_PAD_TWEAK = 1 << 62


def and_count(width: int) -> int:
    """AND gates of the carry out of a ``width``-bit sum (leaves and tree), per value of
    :class:`SignBit` with ``l = width + 1``.

    >>> and_count(37)
    103
    """
    ands, k = width, width
    while k > 1:
        ands += 2 * (k // 2) - 1  # the lowest group's propagate bit is never needed
        k = k // 2 + k % 2
    return ands


def plain_sign(x: np.ndarray, bits: int) -> np.ndarray:
    """The reference: ``[x < 0]`` of the values ``x mod 2^bits`` read as signed, as 0/1 ``uint8``.

    >>> plain_sign(np.array([1, (1 << 8) - 1], dtype=np.uint64), 8).tolist()
    [0, 1]
    """
    x = np.asarray(x, dtype=np.uint64) & _mask(bits)
    return ((x >> np.uint64(bits - 1)) & np.uint64(1)).astype(np.uint8)


def _mask(bits: int) -> np.uint64:
    return np.uint64((1 << bits) - 1) if bits < 64 else np.uint64(0xFFFFFFFFFFFFFFFF)


def _pad128(n: int) -> int:
    return max(128, -(-n // 128) * 128)


class OTPool:
    """Random OTs in both directions between two parties (IKNP extensions of one base-OT setup).

    Parameters
    ----------
    rng : callable, optional
        ``rng(nbytes) -> bytes``: base-OT scalars, ``Delta``, choice bits (default ``os.urandom``).

    Notes
    -----
    Setup, both parties at once: ``reply = setup_reply(peer.setup_message())``, then
    ``setup_finish(peer's reply)``. Then per use: both send ``extend(n)``, both
    ``accept(peer's matrix, n)``, then take OTs (:meth:`take_sent`, :meth:`take_received`) in
    the same order at both parties. An extension replaces what was left of the previous one.
    """

    def __init__(self, rng: Rng = os.urandom) -> None:
        self._rng = rng
        self._base_sender = BaseOTSender(KAPPA, rng)  # for the extension in which this party chooses
        self._delta = np.frombuffer(rng(KAPPA // 8), np.uint8).copy()
        self._base_receiver: BaseOTReceiver | None = None
        self._seed_pairs: np.ndarray | None = None
        self._ext_sender: IKNPSender | None = None
        self._lo_recv = self._lo_send = 0
        self._recv: tuple[np.ndarray, np.ndarray] | None = None
        self._sent: tuple[np.ndarray, np.ndarray] | None = None
        self._recv_pos = self._sent_pos = 0

    @property
    def ready(self) -> bool:
        """True once the base OTs are done (:meth:`setup_finish`)."""
        return self._ext_sender is not None

    def setup_message(self) -> bytes:
        """Setup round 1: this party's base-OT sender point (64 bytes)."""
        return self._base_sender.message()

    def setup_reply(self, peer_message: bytes) -> bytes:
        """Setup round 2: this party's base-OT receiver points for the peer's round-1 message.

        Raises
        ------
        MalformedInput
            A malformed point, or one not on the curve.
        """
        if self._base_receiver is not None:
            raise StateError("setup_reply was already called")
        self._base_receiver = BaseOTReceiver(bits_of(self._delta, KAPPA), bytes(peer_message), self._rng)
        return self._base_receiver.message()

    def setup_finish(self, peer_reply: bytes) -> None:
        """End of setup: the base-OT keys from the peer's round-2 message."""
        if self._base_receiver is None or self._ext_sender is not None:
            raise StateError("setup_finish comes once, after setup_reply")
        k0, k1 = self._base_sender.keys(bytes(peer_reply))
        self._seed_pairs = np.ascontiguousarray(np.stack([k0, k1], axis=1))
        self._ext_sender = IKNPSender(self._delta, self._base_receiver.keys())

    def extend(self, count: int) -> bytes:
        """``U`` of ``count`` (rounded up to 128) fresh random OTs in which this party chooses."""
        if self._seed_pairs is None:
            raise StateError("the OT pool is not set up")
        n = _pad128(int(count))
        choices = bits_of(np.frombuffer(self._rng(n // 8), np.uint8), n)
        ext = IKNPReceiver(self._seed_pairs, choices, lo=self._lo_recv, hash="tccr")
        self._lo_recv += n
        self._recv, self._recv_pos = (choices, ext.outputs()), 0
        return ext.message()

    def accept(self, peer_matrix: bytes, count: int) -> None:
        """The peer's ``U`` for ``count`` OTs in which this party sends.

        Raises
        ------
        MalformedInput
            Not the length of ``count`` OTs (rounded up to 128).
        """
        if self._ext_sender is None:
            raise StateError("the OT pool is not set up")
        n = _pad128(int(count))
        if len(peer_matrix) != 16 * n:
            raise MalformedInput(f"an OT extension of {count} OTs is {16 * n} bytes, not {len(peer_matrix)}")
        m0, m1 = self._ext_sender.receive(bytes(peer_matrix), lo=self._lo_send, hash="tccr")
        self._lo_send += n
        self._sent, self._sent_pos = (m0, m1), 0

    def take_sent(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The next ``n`` OTs in which this party sent: both messages, ``(n, 16)`` each."""
        if self._sent is None or self._sent_pos + n > len(self._sent[0]):
            raise StateError(f"the OT pool holds fewer than {n} more sent OTs")
        lo, self._sent_pos = self._sent_pos, self._sent_pos + n
        return self._sent[0][lo:lo + n], self._sent[1][lo:lo + n]

    def take_received(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The next ``n`` OTs in which this party chose: choice bits ``(n,)`` and chosen messages."""
        if self._recv is None or self._recv_pos + n > len(self._recv[0]):
            raise StateError(f"the OT pool holds fewer than {n} more received OTs")
        lo, self._recv_pos = self._recv_pos, self._recv_pos + n
        return self._recv[0][lo:lo + n], self._recv[1][lo:lo + n]


def _triples(pool: OTPool, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """This party's shares ``(a, b, c)`` of ``n`` bit triples (one OT each way per triple)."""
    m0, m1 = pool.take_sent(n)
    c, mc = pool.take_received(n)
    s0, s1, sc = m0[:, 0] & 1, m1[:, 0] & 1, mc[:, 0] & 1
    a = s0 ^ s1
    b = c.astype(np.uint8)
    return a, b, (a & b) ^ s0 ^ sc


class SignBit:
    """XOR shares of ``[x < 0]`` (the top bit) of additively shared ``x mod 2^bits``, one call for a batch.

    Parameters
    ----------
    pool : OTPool
        Set up, and extended for this call by the OTs :meth:`ots_needed` gives for each direction.
    first : bool
        True at exactly one of the two parties.
    shares : array of uint64
        This party's shares ``x_P mod 2^bits``.
    bits : int
        The ring ``2^bits`` (2..64).

    Notes
    -----
    :meth:`message` is the first round's message; then each :meth:`receive` of the peer's message
    returns this party's next one, or None when :attr:`result` (``uint8`` 0/1 per value) is set.
    """

    def __init__(self, pool: OTPool, first: bool, shares: np.ndarray, bits: int) -> None:
        if not isinstance(bits, int) or not 2 <= bits <= 64:
            raise ParameterError("bits must be an int in [2, 64]")
        x = np.asarray(shares)
        if x.ndim != 1 or x.dtype != np.uint64 or x.size == 0:
            raise ParameterError("shares must be a non-empty 1-d uint64 array")
        x = x & _mask(bits)
        self._first = bool(first)
        self._pool = pool
        self.count = int(x.size)
        k = bits - 1
        self._top = ((x >> np.uint64(k)) & np.uint64(1)).astype(np.uint8)
        #: this party's XOR share of the sign bit of each value (set when the protocol has finished)
        self.result: np.ndarray | None = None
        own = ((x[:, None] >> np.arange(k, dtype=np.uint64)[None, :]) & np.uint64(1)).astype(np.uint8)
        self._P = own  # XOR shares of the propagate bits s_i ^ t_i
        self._G: np.ndarray | None = None
        self._and: tuple[Any, ...] | None = None
        # the generate bits s_i t_i (the first party's bit times the second's): one OT each, sent by
        # the first party; it opens f = s ^ a (a = m0 ^ m1), the second e = t ^ c
        n = own.size
        if first:
            m0, m1 = pool.take_sent(n)
            u = (m0[:, 0] & 1).reshape(own.shape)
            self._leaf = (own, u)
            self._msg = _packed(own ^ u ^ (m1[:, 0] & 1).reshape(own.shape))
        else:
            c, mc = pool.take_received(n)
            c = c.astype(np.uint8).reshape(own.shape)
            self._leaf = (c, (mc[:, 0] & 1).reshape(own.shape))
            self._msg = _packed(own ^ c)

    @staticmethod
    def ots_needed(count: int, bits: int) -> tuple[int, int]:
        """OTs one call with ``count`` values in ``2^bits`` takes from the pool: ``(sent by the first
        party, sent by the second)``."""
        width = int(bits) - 1
        tree = int(count) * (and_count(width) - width)
        return int(count) * width + tree, tree

    def message(self) -> bytes:
        """The first round's message."""
        return self._msg

    def _open(self, x: np.ndarray, y: np.ndarray) -> bytes:
        n = x.size
        a, b, c = _triples(self._pool, n)
        self._and = (x.shape, a, b, c, x.reshape(-1) ^ a, y.reshape(-1) ^ b)
        return _packed(np.concatenate([self._and[4], self._and[5]]))

    def _close(self, data: bytes) -> np.ndarray:
        assert self._and is not None
        shape, a, b, c, dx, dy = self._and
        n = a.size
        bits = _unpacked(data, 2 * n, "a comparison round")
        d, e = dx ^ bits[:n], dy ^ bits[n:]
        z = c ^ (d & b) ^ (e & a)
        if self._first:
            z ^= d & e
        return z.reshape(shape)

    def receive(self, data: bytes) -> bytes | None:
        """The peer's message of this round; returns this party's next message, or None when done.

        Raises
        ------
        MalformedInput
            The message does not have this round's length.
        StateError
            The protocol has already finished.
        """
        if self.result is not None:
            raise StateError("the comparison has finished")
        if self._G is None:  # the leaves: shares of the generate bits
            p, q = self._leaf
            other = _unpacked(data, p.size, "the comparison's first round").reshape(p.shape)
            # first: u ^ s e (p = s, q = u); second: m_c ^ f c (p = c, q = m_c)
            self._G = q ^ (p & other)
        else:
            z = self._close(data)
            G, P = self._G, self._P
            h = G.shape[1] // 2
            hi, lo = np.arange(1, 2 * h, 2), np.arange(0, 2 * h, 2)
            newG = G[:, hi] ^ z[:, :h]
            newP = np.concatenate([np.zeros_like(z[:, :1]), z[:, h:]], axis=1)  # group 0's P: unused
            if G.shape[1] % 2:
                newG = np.concatenate([newG, G[:, -1:]], axis=1)
                newP = np.concatenate([newP, P[:, -1:]], axis=1)
            self._G, self._P = newG, newP
        G, P = self._G, self._P
        if G.shape[1] == 1:
            self.result = self._top ^ G[:, 0]
            self._and = None
            return None
        h = G.shape[1] // 2
        hi, lo = np.arange(1, 2 * h, 2), np.arange(0, 2 * h, 2)
        # (G, P)_hi o (G, P)_lo = (G_hi ^ P_hi G_lo, P_hi P_lo), one round per level; the lowest
        # pair's P_hi P_lo is skipped (the carry in is 0: the lowest group's P is never used)
        return self._open(np.concatenate([P[:, hi], P[:, hi[1:]]], axis=1),
                          np.concatenate([G[:, lo], P[:, lo[1:]]], axis=1))


def _packed(bits: np.ndarray) -> bytes:
    return np.packbits(bits.reshape(-1), bitorder="little").tobytes()


def _unpacked(data: bytes, n: int, what: str) -> np.ndarray:
    if len(data) != (n + 7) // 8:
        raise MalformedInput(f"{what} carries {(n + 7) // 8} bytes, not {len(data)}")
    return np.unpackbits(np.frombuffer(bytes(data), np.uint8), count=n, bitorder="little")


def _pads(keys: np.ndarray, nbytes: int) -> np.ndarray:
    """``(n, nbytes)`` pads from ``n`` random 16-byte OT keys: fixed-key AES (:func:`tccr_rows`) of
    each key under its own tweaks, one per 16-byte block (a PRG under the ideal-cipher model)."""
    blocks = -(-nbytes // 16)
    rows = np.repeat(np.ascontiguousarray(keys, dtype=np.uint8), blocks, axis=0)
    return tccr_rows(rows, _PAD_TWEAK).reshape(len(keys), blocks * 16)[:, :nbytes]


class Multiplexer:
    """Integer shares of ``b_i v_i`` from XOR shares of bits ``b`` and integer shares of ``v``.

    Parameters
    ----------
    pool : OTPool
        Extended by at least ``len(bits)`` OTs each way for this call.
    bits : array of 0/1
        This party's XOR shares of the bits.
    values : sequence of int
        This party's integer shares of the values (any sign), each ``|v_P| < 2^value_bits``.
    value_bits : int
        The public bound of the shares ``v_P`` (the masks have :data:`STAT_BITS` more bits).

    Notes
    -----
    Two rounds: :meth:`message` (the choice corrections), :meth:`receive` (the peer's; returns the
    two masked messages per value), :meth:`finish` (the peer's; returns this party's shares).
    The shares are exact integers (no wrap): ``sum = b v``; each is about
    ``value_bits + STAT_BITS + 2`` bits wide.

    Raises
    ------
    ParameterError
        Lengths differ, a bit is not 0/1, or a value is out of its bound.
    """

    def __init__(self, pool: OTPool, bits: np.ndarray, values: Sequence[int], value_bits: int) -> None:
        b = np.asarray(bits, dtype=np.uint8)
        if b.ndim != 1 or b.size == 0 or np.any(b > 1) or len(values) != b.size:
            raise ParameterError("bits: a non-empty 1-d 0/1 array with one value each")
        if not isinstance(value_bits, int) or value_bits < 1:
            raise ParameterError("value_bits must be a positive int")
        self._vals = [int(v) for v in values]
        if any(abs(v) >= (1 << value_bits) for v in self._vals):
            raise ParameterError(f"a value is out of its public bound 2^{value_bits}")
        self._b = b
        self._vb = value_bits
        self._w = value_bits + STAT_BITS + 2
        self._nbytes = (self._w + 7) // 8
        n = b.size
        self._c, self._kc = pool.take_received(n)  # the peer's terms: this party chooses
        self._k0, self._k1 = pool.take_sent(n)  # this party's own terms: it sends
        self._own: list[int] | None = None
        self.count = n

    def message(self) -> bytes:
        """Round 1: ``b_P ^ c`` per value (packed bits)."""
        return np.packbits(self._b ^ self._c, bitorder="little").tobytes()

    def receive(self, peer_message: bytes) -> bytes:
        """Round 2: for the peer's corrections, both masked messages of this party's term per value."""
        n, w = self.count, self._nbytes
        if len(peer_message) != (n + 7) // 8:
            raise MalformedInput(f"the multiplexer's first round carries {(n + 7) // 8} bytes, not {len(peer_message)}")
        if self._own is not None:
            raise StateError("receive was already called")
        e = np.unpackbits(np.frombuffer(bytes(peer_message), np.uint8), count=n, bitorder="little")
        lo, span = 1 << self._vb, (1 << self._w) - (2 << self._vb)
        own, out = [], bytearray()
        for bi, v in zip(self._b.tolist(), self._vals):
            r = lo + secrets.randbelow(span)  # (b ^ j) v + r in [0, 2^w): no wrap, within 2^-STAT_BITS of r
            own.append(-r)
            out += (bi * v + r).to_bytes(w, "little") + ((1 - bi) * v + r).to_bytes(w, "little")
        self._own = own
        # message j is padded with the key of OT message j ^ e (the chooser holds the one of its bit)
        p0, p1 = _pads(self._k0, w), _pads(self._k1, w)
        flip = (e == 1)[:, None]
        pads = np.stack([np.where(flip, p1, p0), np.where(flip, p0, p1)], axis=1)
        return (np.frombuffer(bytes(out), np.uint8).reshape(n, 2, w) ^ pads).tobytes()

    def finish(self, peer_message: bytes) -> list[int]:
        """The peer's round-2 message; returns this party's integer shares of ``b_i v_i``."""
        n, w = self.count, self._nbytes
        if self._own is None:
            raise StateError("finish comes after receive")
        if len(peer_message) != 2 * n * w:
            raise MalformedInput(f"the multiplexer's second round carries {2 * n * w} bytes, not {len(peer_message)}")
        data = np.frombuffer(bytes(peer_message), np.uint8).reshape(n, 2, w)
        opened = (data[np.arange(n), self._b.astype(np.intp)] ^ _pads(self._kc, w)).tobytes()
        shares = [int.from_bytes(opened[i * w:(i + 1) * w], "little") + r for i, r in enumerate(self._own)]
        self._own = []
        return shares

