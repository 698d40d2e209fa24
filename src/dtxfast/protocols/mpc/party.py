"""One party of replicated 2-out-of-3 secret sharing over Z_2^64 (ABY3 / Araki et al. style).

A secret ``x`` is split as ``x = s0 + s1 + s2 (mod 2^64)``; party ``i`` holds the pair
``(s_i, s_{i+1})``, so any two parties can reconstruct and any single party sees only uniformly
random values. Boolean sharings are the same with XOR over 64-bit words.

Every operation that talks to the other parties is a *generator*: it yields the name of the peer
it waits for and is resumed with that peer's message (``bytes``); sends go straight to the
:class:`~dtxfast.protocols.channel.Channel`, which never blocks. Compose operations with
``yield from``; run three programs with :func:`dtxfast.protocols.mpc.run_local` (in-process) or
one with :func:`dtxfast.protocols.mpc.run_blocking` (one party per process).

Security (semi-honest, honest majority)
---------------------------------------
The protocol is secure against one *semi-honest* corrupted party (it follows the protocol and
tries to learn from what it sees); it does not detect a cheating party, and two colluding parties
learn everything. Each pair of parties shares an AES-CTR seed, exchanged once in :meth:`setup`
(over the channel, which a deployment must authenticate and encrypt). Every message a party
receives is masked by a PRF stream the receiver does not hold, so it is uniform on Z_2^64
whatever the inputs; only :meth:`MPCParty.reveal` opens a value, to the parties it names.
Truncation (:meth:`MPCParty.trunc`) is exact up to the stochastic rounding of the last bit for
every value below ``2^62`` at the doubled scale: SecureML / ABY3's probabilistic truncation alone
fails with probability ``|x| / 2^64`` per element (about 2^-32 for a product near 1 at 16
fractional bits, far above 2^-40 over a training); here the one wrap it can make is computed from
two local bits with a multiplication triple dealt by party 2 and subtracted (see
:meth:`MPCParty._trunc3`).

Examples
--------
>>> import numpy as np
>>> from dtxfast.transport.channel import InMemoryNetwork
>>> from dtxfast.protocols.mpc import MPCParty, run_local, encode, decode
>>> net = InMemoryNetwork(["P0", "P1", "P2"])
>>> parties = [MPCParty(i, net.channel(n), net.parties) for i, n in enumerate(net.parties)]
>>> def program(p):
...     yield from p.setup()
...     x = yield from p.share_input(0, encode([1.5, -2.0]) if p.index == 0 else None, (2,))
...     y = yield from p.share_input(1, encode([4.0, 0.25]) if p.index == 1 else None, (2,))
...     z = yield from p.mul(x, y)
...     return (yield from p.reveal(z, to=2))
>>> out = run_local([program(p) for p in parties], [p.channel for p in parties])
>>> np.round(decode(out[2]), 3)
array([ 6. , -0.5])
"""

from __future__ import annotations

import math
import os
from collections.abc import Generator, Sequence
from typing import Any

import numpy as np

from ...errors import ParameterError, ProtocolError
from ..channel import Channel
from . import _kernels_ref
from ._select import kernels, set_numba_threads
from .fixedpoint import DEFAULT_FRAC_BITS, check_frac_bits, encode
from .prf import PRFStream

__all__ = ["SIGMOID_KNOTS", "ArithShare", "BoolShare", "MPCParty", "Proto", "ReluGrad"]

#: an MPC operation: yields peer names, receives their messages, returns a value
Proto = Generator[str, bytes, Any]

_U64 = np.uint64
_ONE = np.uint64(1)
_MASK64 = (1 << 64) - 1
#: the exact truncation handles every ``|x| < 2^62`` (at the scale before the shift)
TRUNC_BOUND_BITS = 62

#: below this many elements an operation uses the numpy twin instead of the selected kernels
#: (the compiled element-wise kernels run serially below ``_kernels.PARALLEL_ELEMS``, so they
#: win at every size)
SMALL_WORK = 0
#: the same threshold for matrix products, counted in multiply-adds (the Numba matmul itself
#: uses one thread below ``_kernels.PARALLEL_MATMUL``)
SMALL_MATMUL = 1 << 12

#: daBits made at once when a party's pool runs short (their conversion's round and the Python
#: around it are paid once per this many ReLU elements: every 4 batches of the 64-32-1 epoch;
#: blocks of 2^16-2^18 came out slower in a first version, their arrays leaving the caches)
DABIT_BLOCK = 1 << 15

#: knots of the piecewise-linear sigmoid (interpolates the logistic function, 0 left, 1 right)
SIGMOID_KNOTS = (-6.0, -4.0, -3.0, -2.0, -1.25, -0.5, 0.5, 1.25, 2.0, 3.0, 4.0, 6.0)


def _sigmoid_coeffs(knots: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(knots, dtype=np.float64)
    v = 1.0 / (1.0 + np.exp(-t))
    v[0], v[-1] = 0.0, 1.0
    slopes = np.diff(v) / np.diff(t)  # slope between knot k and k+1
    slopes = np.concatenate([[0.0], slopes, [0.0]])
    return t, np.diff(slopes)  # f(x) = sum_k a_k relu(x - t_k)


class _Share:
    """Common part of the two share types: one party's pair of components ``(s_i, s_{i+1})``."""

    __slots__ = ("a", "b")

    def __init__(self, a: np.ndarray, b: np.ndarray) -> None:
        self.a = a
        self.b = b

    @property
    def shape(self) -> tuple[int, ...]:
        return self.a.shape

    @property
    def size(self) -> int:
        return int(self.a.size)

    def __len__(self) -> int:
        return len(self.a)

    def __getitem__(self, idx: Any) -> Any:
        return type(self)(self.a[idx], self.b[idx])

    @property
    def T(self) -> Any:
        return type(self)(self.a.T, self.b.T)

    def reshape(self, *shape: Any) -> Any:
        return type(self)(self.a.reshape(*shape), self.b.reshape(*shape))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(shape={self.shape})"


class ArithShare(_Share):
    """One party's components of an additive replicated sharing over Z_2^64.

    Addition, subtraction and negation of shares are local; see :class:`MPCParty` for the rest.
    """

    __slots__ = ()

    def __add__(self, other: ArithShare) -> ArithShare:
        return ArithShare(self.a + other.a, self.b + other.b)

    def __sub__(self, other: ArithShare) -> ArithShare:
        return ArithShare(self.a - other.a, self.b - other.b)

    def __neg__(self) -> ArithShare:
        return ArithShare(_U64(0) - self.a, _U64(0) - self.b)

    def mul_int(self, k: int) -> ArithShare:
        """Multiply by a public integer (local, no truncation)."""
        c = np.array(k, dtype=np.int64).view(np.uint64)
        return ArithShare(self.a * c, self.b * c)

    def sum(self, axis: int | None = None) -> ArithShare:
        """Sum of elements along ``axis`` (local)."""
        return ArithShare(self.a.sum(axis=axis, dtype=np.uint64), self.b.sum(axis=axis, dtype=np.uint64))


class BoolShare(_Share):
    """One party's components of an XOR replicated sharing of 64-bit words."""

    __slots__ = ()

    def __xor__(self, other: BoolShare) -> BoolShare:
        return BoolShare(self.a ^ other.a, self.b ^ other.b)

    def __lshift__(self, s: int) -> BoolShare:
        return BoolShare(self.a << _U64(s), self.b << _U64(s))

    def __rshift__(self, s: int) -> BoolShare:
        return BoolShare(self.a >> _U64(s), self.b >> _U64(s))

    def mask(self, m: int) -> BoolShare:
        """AND with a public word (local)."""
        w = _U64(m)
        return BoolShare(self.a & w, self.b & w)


_DT64 = np.dtype(np.uint64)


class ReluGrad:
    """What a ReLU layer keeps for back-propagation (:meth:`MPCParty.relu_layer`).

    ``c`` is the public, uniformly random ``d ^ r`` that the ReLU opened (packed: element ``k`` of
    the flattened layer in bit ``k % 64`` of word ``k // 64``), ``d`` the arithmetic sharing of the
    derivative ``1[x >= 0]``, and ``q`` the sharing of ``r[b, j] * W[j, o]`` (shape
    ``(batch, h, m)``) for the daBits ``r`` and the next layer's weights ``W`` (``h x m``), with
    which :meth:`MPCParty.backprop_relu` applies ``d`` without a round of its own.
    """

    __slots__ = ("c", "d", "q")

    def __init__(self, c: np.ndarray, d: ArithShare, q: ArithShare) -> None:
        self.c = c
        self.d = d
        self.q = q


def _flat(x: np.ndarray) -> np.ndarray:
    if x.dtype is _DT64 and x.flags.c_contiguous:  # the usual case, without numpy's dtype parsing
        return x.reshape(-1)
    return np.ascontiguousarray(x, dtype=np.uint64).reshape(-1)


def _stack(shares: Sequence[BoolShare]) -> BoolShare:
    """The sharings' rows one after the other (axis 0)."""
    return BoolShare(np.concatenate([s.a for s in shares]), np.concatenate([s.b for s in shares]))


def _unpack_bits(plane: np.ndarray, n: int) -> np.ndarray:
    """Bit ``r`` of ``plane[b]`` as word ``64 b + r`` (0 or 1), the first ``n`` of them."""
    return np.unpackbits(plane.view(np.uint8), bitorder="little")[:n].astype(np.uint64)


def _cat(shares: Sequence[_Share]) -> tuple[np.ndarray, np.ndarray]:
    return (np.concatenate([_flat(s.a) for s in shares]), np.concatenate([_flat(s.b) for s in shares]))


class MPCParty:
    """Party ``index`` (0, 1 or 2) of the three-party replicated-sharing protocol.

    Parameters
    ----------
    index : int
        This party's position; party ``i`` holds components ``i`` and ``i+1`` of every sharing.
    channel : Channel
        This party's endpoint; messages go to ``parties[j]``.
    parties : sequence of 3 str
        The channel names of parties 0, 1 and 2.
    frac_bits : int, default 16
        Fractional bits of the fixed-point format.
    kernel_module : module, optional
        Force the kernels (``dtxfast.protocols.mpc._kernels`` or ``._kernels_ref``); default: the
        backend chosen by ``DTXFAST_BACKEND``.
    """

    def __init__(
        self,
        index: int,
        channel: Channel,
        parties: Sequence[str],
        *,
        frac_bits: int = DEFAULT_FRAC_BITS,
        kernel_module: Any = None,
    ) -> None:
        if index not in (0, 1, 2):
            raise ParameterError(f"party index must be 0, 1 or 2, not {index!r}")
        if len(parties) != 3 or len(set(parties)) != 3:
            raise ParameterError("three distinct party names are needed")
        self.index = index
        self.channel = channel
        self.parties = tuple(parties)
        self.frac_bits = check_frac_bits(frac_bits)
        self.k = kernel_module if kernel_module is not None else kernels()
        #: set to 0 to send even tiny operations to the selected kernels (tests do)
        self.small_work = SMALL_WORK
        self.small_matmul = SMALL_MATMUL
        self._next = (index + 1) % 3
        self._prev = (index + 2) % 3
        self._prf_next: PRFStream | None = None  # seed shared with the next party
        self._prf_prev: PRFStream | None = None  # seed shared with the previous party
        #: number of message rounds this party waited for
        self.rounds = 0
        # daBits not used yet: packed boolean components (bit r of word w is daBit 64 w + r) and
        # the arithmetic components of the same bits (64 per word, in the same order)
        self._dab_bool = BoolShare(np.empty(0, np.uint64), np.empty(0, np.uint64))
        self._dab_arith = ArithShare(np.empty(0, np.uint64), np.empty(0, np.uint64))

    # -- plumbing -------------------------------------------------------------------------------
    def _kern(self, work: int, limit: int | None = None) -> Any:
        if work < (self.small_work if limit is None else limit):
            return _kernels_ref
        set_numba_threads()
        return self.k

    def _send(self, j: int, arr: np.ndarray) -> None:
        """Send a copy of ``arr`` (the caller may go on using it: a share it reveals)."""
        self.channel.send(self.parties[j], _flat(arr).data)

    def _hand(self, j: int, arr: np.ndarray) -> None:
        """Send ``arr``, an array this protocol made for the message, without a copy where the
        channel allows (:meth:`~dtxfast.protocols.channel.Channel.send_owned`): it and the arrays
        it views are made read-only first, so nothing can write into a message in flight (a
        write raises instead)."""
        arr.flags.writeable = False  # views made from it from now on are read-only too
        if isinstance(arr.base, np.ndarray):  # the array that owns the memory (numpy skips views)
            arr.base.flags.writeable = False
        self.channel.send_owned(self.parties[j], _flat(arr).data)

    def _recv(self, j: int, n: int, *, new_round: bool = True) -> Proto:
        data = yield self.parties[j]
        self.rounds += new_round
        if len(data) != 8 * n:
            raise ProtocolError(
                f"party {self.index}: expected {8 * n} bytes from {self.parties[j]}, got {len(data)}"
            )
        # a read-only view of the message (no copy): nothing writes into a received array, and
        # the transcript a test records keeps seeing exactly what was sent
        return np.frombuffer(data, dtype=np.uint64)

    def _prfs(self) -> tuple[PRFStream, PRFStream]:
        if self._prf_next is None or self._prf_prev is None:
            raise ProtocolError("MPCParty.setup() must run before any operation")
        return self._prf_next, self._prf_prev

    def _zero_arith(self, n: int) -> np.ndarray:
        nxt, prv = self._prfs()
        return nxt.draw_sub(prv, n)  # nxt.draw(n) - prv.draw(n), one pass

    # -- setup ----------------------------------------------------------------------------------
    def setup(self, seed: bytes | None = None) -> Proto:
        """Agree on the pairwise PRF seeds: send a fresh seed to the next party, receive one.

        ``seed`` (16 bytes) makes the run reproducible (tests); by default ``os.urandom``.
        """
        if seed is not None and len(seed) != 16:
            raise ParameterError("a setup seed must be 16 bytes")
        mine = bytes(seed) if seed is not None else os.urandom(16)
        self.channel.send(self.parties[self._next], mine)
        theirs = yield self.parties[self._prev]
        self.rounds += 1
        if len(theirs) != 16:
            raise ProtocolError("a PRF seed must be 16 bytes")
        self._prf_next = PRFStream(mine)
        self._prf_prev = PRFStream(theirs)

    # -- sharing and reconstruction -------------------------------------------------------------
    def share_input(self, owner: int, value: np.ndarray | None, shape: Sequence[int] | int) -> Proto:
        """Secret-share ``value`` (a ``uint64`` array, e.g. from :func:`encode`) held by ``owner``.

        Every party calls this with the same ``owner`` and ``shape``; only the owner passes the
        value (the others pass ``None``). One round, two messages from the owner.
        """
        shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
        n = int(np.prod(shape, dtype=np.int64))
        nxt, prv = self._prfs()
        if self.index == owner:
            if value is None:
                raise ParameterError("the owner must pass the value it shares")
            v = _flat(value)
            if v.size != n:
                raise ParameterError(f"value has {v.size} elements, shape {shape} needs {n}")
            s_own = prv.draw(n)
            s_next = nxt.draw(n)
            last = v - s_own - s_next
            self._hand(self._next, last)  # the same buffer for both receivers
            self._hand(self._prev, last)
            a, b = s_own, s_next
        elif self.index == (owner + 1) % 3:
            a = prv.draw(n)
            b = yield from self._recv(owner, n)
        else:
            a = yield from self._recv(owner, n)
            b = nxt.draw(n)
        return ArithShare(a.reshape(shape), b.reshape(shape))

    def share_public(self, value: np.ndarray) -> ArithShare:
        """A (non-random) sharing of a public ``uint64`` array: component 0 holds it (local)."""
        v = np.ascontiguousarray(value, dtype=np.uint64)
        z = np.zeros_like(v)
        if self.index == 0:
            return ArithShare(v, z)
        if self.index == 2:
            return ArithShare(z, v.copy())
        return ArithShare(z, z.copy())

    def add_public(self, x: ArithShare, value: np.ndarray | float) -> ArithShare:
        """``x + value`` for a public ``uint64`` value or array (local)."""
        v = np.asarray(value, dtype=np.uint64)
        if self.index == 0:
            return ArithShare(x.a + v, x.b.copy())
        if self.index == 2:
            return ArithShare(x.a.copy(), x.b + v)
        return ArithShare(x.a.copy(), x.b.copy())

    def reveal(self, x: ArithShare, to: int | None = None) -> Proto:
        """Reconstruct ``x`` for party ``to`` (``None``: for everybody); others get ``None``."""
        n = x.size
        if to is None:
            self._send(self._prev, x.b)
            c = yield from self._recv(self._next, n)
            return (x.a + x.b + c.reshape(x.shape))
        if self.index == (to + 1) % 3:
            self._send(to, x.b)
        if self.index == to:
            c = yield from self._recv(self._next, n)
            return x.a + x.b + c.reshape(x.shape)
        return None

    # -- multiplication -------------------------------------------------------------------------
    def _reshare(self, z: np.ndarray, shape: tuple[int, ...]) -> Proto:
        """3-out-of-3 share ``z`` (already masked by a zero sharing) to a replicated sharing."""
        self._hand(self._prev, z)
        zn = yield from self._recv(self._next, z.size)
        return ArithShare(z.reshape(shape), zn.reshape(shape))

    def _trunc3(self, z: np.ndarray, shape: tuple[int, ...], shift: int) -> Proto:
        """Replicated sharing of ``x / 2^shift`` from a 3-out-of-3 share ``z`` of ``x``; exact.

        Party 2 sends its component to party 1, so parties 0 and 1 hold ``x`` as two additive
        parts ``v = z0 + 2^62`` and ``w = z1 + z2`` of ``u = x + 2^62``. Party 0 floors
        ``v / 2^shift``, party 1 takes the ceiling of ``w / 2^shift``: their sum is ``u / 2^shift``
        rounded up with probability equal to the dropped fraction (unbiased), plus
        ``wrap * 2^(64 - shift)`` where ``wrap = 1[v + w >= 2^64]`` as integers. For
        ``|x| < 2^62`` (so ``0 <= u < 2^63``), ``v + w`` does not wrap exactly when both parts are
        below ``2^63``: ``wrap = 1 - alpha * beta`` with party 0's bit ``alpha = 1[v < 2^63]`` and
        party 1's bit ``beta = 1[w < 2^63]``. The product ``alpha * beta`` is computed with a
        multiplication triple that party 2 deals (``r0 * r1``; ``r0`` from the seed of parties
        2 and 0, ``r1`` from the seed of parties 1 and 2), and the wrap is subtracted. So the
        result is never off by more than one unit in the last place for any ``|x| < 2^62``: the
        probabilistic truncation of SecureML / ABY3 (floor and ceiling alone) is off by
        ``2^(64 - shift)`` with probability ``|x| / 2^64`` per element, which at 16 fractional
        bits and activations near 1 is about 2^-32 per element and, over the millions of
        elements a training truncates, far above 2^-40 per training.

        Every message is masked by a PRF stream its receiver does not hold: party 1 gets
        ``z2`` (masked by the zero sharing), ``alpha - r0`` and ``r0 * r1 - m`` (``m`` from the
        seed of parties 2 and 0); party 0 gets ``beta - r1`` and its new component (masked by
        ``r``); party 2 gets party 0's new component (masked by ``m'`` of parties 0 and 1).
        Three hops (2 -> 1, 1 -> 0, 0 -> 2); each party waits for messages once.
        """
        n = z.size
        k = self._kern(n)
        z = _flat(z)
        nxt, prv = self._prfs()
        if self.index == 0:
            r0 = prv.draw(n)  # seed of parties 2 and 0
            m = prv.draw(n)
            self._hand(1, k.trunc_p0_open(z, r0))  # alpha - r0
            got = yield from self._recv(1, 2 * n)
            y1, e1 = got[:n], got[n:]  # e1 = beta - r1
            # alpha e1 + m is party 0's additive part of alpha beta; mask m' from the seed of 0, 1
            y0 = k.trunc_p0_close(z, e1, m, nxt.draw(n), shift)
            self._hand(2, y0)
            a, b = y0, y1
        elif self.index == 1:
            got = yield from self._recv(2, 2 * n)
            e0 = yield from self._recv(0, n, new_round=False)  # sent in the same round
            z2, cm = got[:n], got[n:]
            r1 = nxt.draw(n)  # seed of parties 1 and 2
            r = nxt.draw(n)
            mp = prv.draw(n)  # seed of parties 0 and 1
            out = k.trunc_p1(z, z2, cm, e0, r1, r, mp, shift)  # e0 r1 + cm: party 1's part of alpha beta
            self._hand(0, out)
            a, b = out[:n], r
        else:
            r0 = nxt.draw(n)  # seed of parties 2 and 0
            m = nxt.draw(n)
            r1 = prv.draw(n)  # seed of parties 1 and 2
            self._hand(1, k.trunc_p2(z, r0, r1, m))  # z2 and r0 r1 - m
            r = prv.draw(n)
            y0 = yield from self._recv(0, n)
            a, b = r, y0
        return ArithShare(a.reshape(shape), b.reshape(shape))

    def trunc(self, x: ArithShare, shift: int | None = None) -> Proto:
        """Divide a sharing by ``2^shift`` (default: ``frac_bits``), rounding stochastically.

        The result is ``floor(x / 2^shift)`` or that plus one, the latter with probability equal
        to the dropped fraction (unbiased), for every ``|x| < 2^62``; never anything else.
        """
        s = self.frac_bits if shift is None else int(shift)
        if not 0 <= s <= 60:
            raise ParameterError(f"a truncation shift must be in 0..60, not {s}")
        z = _flat(x.a) + self._zero_arith(x.size)  # 3-out-of-3, re-randomised
        return (yield from self._trunc3(z, x.shape, s))

    def mul(self, x: ArithShare, y: ArithShare, *, fixed: bool = True) -> Proto:
        """Element-wise product; ``fixed=False`` for an integer factor (no truncation)."""
        if x.shape != y.shape:
            raise ParameterError(f"shapes differ: {x.shape} and {y.shape}")
        n = x.size
        nxt, prv = self._prfs()
        z = self._kern(n).mul_local(_flat(x.a), _flat(x.b), _flat(y.a), _flat(y.b), nxt.draw(n), prv.draw(n))
        if fixed:
            return (yield from self._trunc3(z, x.shape, self.frac_bits))
        return (yield from self._reshare(z, x.shape))

    def _matmul_local(self, x: ArithShare, y: ArithShare) -> np.ndarray:
        """This party's 3-out-of-3 share of ``x @ y``, masked by a zero sharing (local)."""
        if len(x.shape) != 2 or len(y.shape) != 2 or x.shape[1] != y.shape[0]:
            raise ParameterError(f"cannot multiply shapes {x.shape} and {y.shape}")
        n, m = x.shape[0], y.shape[1]
        alpha = self._zero_arith(n * m).reshape(n, m)
        # transposed views go as they are: each kernel copies what its product needs contiguous
        return self._kern(n * m * x.shape[1], self.small_matmul).matmul_local(
            x.a, x.b, y.a, y.b, alpha, role=self.index)

    def matmul(self, x: ArithShare, y: ArithShare, *, fixed: bool = True) -> Proto:
        """Matrix product of 2-D sharings (local products, one reshare with truncation).

        The three parties split the nine products of the components between them so that they
        compute five ring products in all (party 0 one, parties 1 and 2 two each; ABY3 has each
        party compute two), see :func:`~dtxfast.protocols.mpc._kernels_ref.matmul_terms`. Large
        products run on float64 BLAS through exact limb products (:mod:`._ring_ref`).
        """
        z = self._matmul_local(x, y)
        if fixed:
            return (yield from self._trunc3(z, z.shape, self.frac_bits))
        return (yield from self._reshare(_flat(z), z.shape))

    def matmul_many(self, pairs: Sequence[tuple[ArithShare, ArithShare]]) -> Proto:
        """``[x @ y for x, y in pairs]`` (fixed point) with one truncation for all: one round
        where :meth:`matmul` takes one per product (for products that do not depend on each other)."""
        return (yield from self._trunc_many([self._matmul_local(x, y) for x, y in pairs]))

    def _trunc_many(self, zs: Sequence[np.ndarray]) -> Proto:
        """Replicated sharings of ``z / 2^frac_bits`` for 3-out-of-3 shares ``zs`` (each masked by
        a zero sharing), all in one :meth:`_trunc3` round; each result has its ``z``'s shape."""
        out = yield from self._trunc3(np.concatenate([z.reshape(-1) for z in zs]), (sum(z.size for z in zs),),
                                      self.frac_bits)
        res, at = [], 0
        for z in zs:
            res.append(out[at:at + z.size].reshape(z.shape))
            at += z.size
        return res

    def mul_public(self, x: ArithShare, c: float) -> Proto:
        """``x * c`` for a public real ``c`` (encoded with ~15 significant bits, one truncation)."""
        if not math.isfinite(c):
            raise ParameterError("public factor must be finite")
        if c == 0:
            return ArithShare(np.zeros_like(x.a), np.zeros_like(x.b))
        e = int(min(40, max(0, 15 - math.floor(math.log2(abs(c))))))
        ci = np.array(round(c * (1 << e)), dtype=np.int64).view(np.uint64)
        scaled = ArithShare(x.a * ci, x.b * ci)
        if e == 0:
            return scaled
        return (yield from self.trunc(scaled, e))

    def mul_public_many(self, terms: Sequence[tuple[ArithShare, float]]) -> Proto:
        """``[x * c for x, c in terms]`` for public reals ``c``, with one truncation (one round) for all.

        The factors share one fixed-point scale, the one :meth:`mul_public` would choose for the
        largest ``|c|`` (~15 significant bits for it; a much smaller factor keeps fewer).
        """
        if any(not math.isfinite(c) for _, c in terms):
            raise ParameterError("public factors must be finite")
        big = max((abs(c) for _, c in terms), default=0.0)
        if big == 0:
            return [ArithShare(np.zeros_like(x.a), np.zeros_like(x.b)) for x, _ in terms]
        e = int(min(40, max(0, 15 - math.floor(math.log2(big)))))
        total = sum(x.size for x, _ in terms)
        a, b = np.empty(total, dtype=np.uint64), np.empty(total, dtype=np.uint64)
        at = 0
        for x, c in terms:  # each product straight into its place in the joined operand
            ci = _U64(round(c * (1 << e)) & _MASK64)  # two's complement of a negative factor
            np.multiply(_flat(x.a), ci, out=a[at:at + x.size])
            np.multiply(_flat(x.b), ci, out=b[at:at + x.size])
            at += x.size
        both = ArithShare(a, b)
        if e:
            both = yield from self.trunc(both, e)
        out, at = [], 0
        for x, _ in terms:
            out.append(both[at:at + x.size].reshape(x.shape))
            at += x.size
        return out

    # -- boolean circuits -----------------------------------------------------------------------
    def and_(self, x: BoolShare, y: BoolShare) -> Proto:
        """Bitwise AND of two boolean sharings (one round)."""
        n = x.size
        nxt, prv = self._prfs()
        z = self._kern(n).and_local(_flat(x.a), _flat(x.b), _flat(y.a), _flat(y.b), nxt.draw(n), prv.draw(n))
        return (yield from self._reshare_bool(z, x.shape))

    def _recv_after_send(self, z: np.ndarray, n: int) -> Proto:
        """Send ``z`` to the previous party, return the ``n`` words of the next one (one round)."""
        self._hand(self._prev, z)
        return (yield from self._recv(self._next, n))

    def _reshare_bool(self, z: np.ndarray, shape: tuple[int, ...]) -> Proto:
        self._hand(self._prev, z)
        zn = yield from self._recv(self._next, z.size)
        return BoolShare(z.reshape(shape), zn.reshape(shape))

    def _component(self, x: ArithShare, j: int) -> BoolShare:
        """Boolean sharing whose only non-zero component is component ``j`` of ``x`` (local)."""
        a = x.a if self.index == j else np.zeros_like(x.a)
        b = x.b if self._next == j else np.zeros_like(x.b)
        return BoolShare(a, b)

    def _gen_prop(self, x: ArithShare, fused: tuple[ArithShare, ArithShare, np.ndarray, np.ndarray] | None) -> Proto:
        """Boolean sharings of the generate and propagate planes of ``w + s2`` (one round).

        ``x = w + s2`` with ``w = s0 + s1`` known to party 0 and ``s2`` to parties 1 and 2 (the
        components of ``x`` they hold). Per bit, ``g = w & s2`` and ``p = w ^ s2``; returns
        ``(G, P, prod)``, planes ``(64, ceil(n / 64))`` as :func:`._kernels_ref.bit_planes`, and
        the products of ``fused`` (see :meth:`_sign_planes`), whose reshare rides in the same
        messages.

        Party 0 sends ``W ^ mu`` to party 1 and ``W ^ mu'`` to party 2 (``W`` the planes of ``w``;
        ``mu``, ``t0`` from the seed of parties 2 and 0, ``mu'``, ``t1`` from that of 0 and 1);
        party 2 sends ``(mu & S) ^ t0`` to party 1 and party 1 sends ``(mu' & S) ^ t1`` to party
        2 (``S`` the planes of ``s2``). Then ``g = (t0, t1, g2)`` with
        ``g2 = ((W ^ mu) & S) ^ (mu & S) ^ t0 ^ t1`` at party 1 (the primed terms at party 2), and
        ``p = (mu, mu', W ^ S ^ mu ^ mu')``: the components ``0, 1, 2`` of replicated sharings.

        Security: party 0 receives nothing here. Party 1 receives ``W ^ mu`` and
        ``(mu & S) ^ t0``, masked by ``mu`` and ``t0``, two words of a seed it never holds: two
        independent uniform words whatever ``W``; likewise party 2 with ``mu'`` and ``t1``. What
        each then holds of ``g`` and ``p`` is a function of what it received, its own
        components and its seeds (party 1's ``g2 ^ t1`` and ``p2 ^ mu'`` are ``(W ^ mu) & S``
        and ``W ^ mu ^ S``), so it learns nothing more; the components hidden from a party
        (``t0`` and ``mu`` from party 1) are never sent in the clear later, as every AND of the
        carry tree masks its message with a fresh zero sharing. Where the carry-save form
        ``s0 + s1 + s2 -> t + 2 maj`` needs two rounds of ANDs (maj, then the generate bits),
        this takes one, 8 PRF words per plane word (12 there) and one bit transpose per party.
        """
        a, b = _flat(x.a), _flat(x.b)
        n = a.size
        k = self._kern(n)
        nxt, prv = self._prfs()
        prod = None
        zm = None
        if fused is not None:  # the products' 3-out-of-3 shares, reshared in the same messages
            fx, fr, wa, wb = fused
            q = fx.size * (1 + wa.shape[1])
            zm = self._kern(q).relu_products(fx.a, fx.b, fr.a, fr.b, wa, wb, self._zero_arith(q))
        if self.index == 0:
            W = k.bit_planes(a + b)
            M = W.size
            m2 = prv.draw(2 * M).reshape(2, *W.shape)  # mu, t0 (seed of parties 2 and 0)
            m1 = nxt.draw(2 * M).reshape(2, *W.shape)  # mu', t1 (seed of parties 0 and 1)
            self._hand(1, W ^ m2[0])
            if zm is None:
                self._hand(2, W ^ m1[0])
            else:
                self._hand(2, np.concatenate([(W ^ m1[0]).reshape(-1), zm]))
                got = yield from self._recv(1, zm.size)
                prod = ArithShare(zm, got)
            return BoolShare(m2[1], m1[1]), BoolShare(m2[0], m1[0]), prod
        if self.index == 1:
            S = k.bit_planes(b)
            M = S.size
            m1 = prv.draw(2 * M).reshape(2, *S.shape)  # mu', t1 (seed of parties 0 and 1)
            self._hand(2, (m1[0] & S) ^ m1[1])
            if zm is not None:
                self._hand(0, zm)
            masked = (yield from self._recv(0, M)).reshape(S.shape)  # W ^ mu
            got = yield from self._recv(2, M + (0 if zm is None else zm.size), new_round=False)
            x2 = got[:M].reshape(S.shape)  # (mu & S) ^ t0
            if zm is not None:
                prod = ArithShare(zm, got[M:])
            g2 = (masked & S) ^ x2 ^ m1[1]
            p2 = masked ^ S ^ m1[0]
            return BoolShare(m1[1], g2), BoolShare(m1[0], p2), prod
        S = k.bit_planes(a)
        M = S.size
        m2 = nxt.draw(2 * M).reshape(2, *S.shape)  # mu, t0 (seed of parties 2 and 0)
        if zm is None:
            self._hand(1, (m2[0] & S) ^ m2[1])
        else:
            self._hand(1, np.concatenate([((m2[0] & S) ^ m2[1]).reshape(-1), zm]))
        got = yield from self._recv(0, M + (0 if zm is None else zm.size))
        masked = got[:M].reshape(S.shape)  # W ^ mu'
        if zm is not None:
            prod = ArithShare(zm, got[M:])
        x1 = (yield from self._recv(1, M, new_round=False)).reshape(S.shape)  # (mu' & S) ^ t1
        g2 = (masked & S) ^ x1 ^ m2[1]
        p2 = masked ^ S ^ m2[0]
        return BoolShare(g2, m2[1]), BoolShare(p2, m2[0]), prod

    def _sign_planes(self, x: ArithShare, fused: tuple[ArithShare, ArithShare, np.ndarray, np.ndarray] | None = None,
                     open_mask: BoolShare | None = None) -> Proto:
        """The sign circuit of :meth:`msb` on packed bits: returns ``(sign, prod)``.

        ``sign`` is a boolean sharing of ``ceil(n / 64)`` words, the sign of element ``64 w + r``
        in bit ``r`` of word ``w``. With ``open_mask`` (a boolean sharing of as many words) it is
        instead the public words ``(1 ^ sign) ^ open_mask``, opened to all three parties in the
        round of the last tree level (see :meth:`drelu`). With ``fused = (x, r, wa, wb)`` the
        integer products ``x r`` and ``r w`` of :func:`._kernels_ref.relu_products` (as
        :meth:`mul` with ``fixed=False``, flat) travel in the messages of the first round and
        are returned as ``prod`` (else ``None``).
        """
        n = x.size
        k = self._kern(n)
        nxt, prv = self._prfs()
        Gp, Pp, prod = yield from self._gen_prop(x, fused)
        G, P = Gp[:63], Pp[:63]
        while G.shape[0] > 1:  # groups of positions, lowest first; pair 2j + 1 (high) with 2j
            # a pair generates if its high group does, or propagates and the low one generates;
            # it propagates if both do (not needed for the lowest group: nothing lies below it)
            size = (G.shape[0] // 2 * 2 - 1) * G.shape[1]
            z = k.tree_level(G.a, G.b, P.a, P.b, nxt.draw(size), prv.draw(size))
            if open_mask is not None and G.shape[0] == 2:
                # the last level's one AND, p[1] & g[0], is left 3-out-of-3 shared (z) and opened
                # at once, masked by the daBits, instead of reshared and opened in a second round
                own = Pp.a[63] ^ G.a[1] ^ z[0] ^ open_mask.a
                if self.index == 0:
                    own = ~own  # drelu = 1 ^ sign
                self._hand(self._next, own)
                self._hand(self._prev, own)
                from_next = yield from self._recv(self._next, own.size)
                from_prev = yield from self._recv(self._prev, own.size, new_round=False)
                return own ^ from_next ^ from_prev, prod
            r = yield from self._reshare_bool(z, z.shape)
            ga, pa = k.tree_join(G.a, P.a, r.a)
            gb, pb = k.tree_join(G.b, P.b, r.b)
            G, P = BoolShare(ga, gb), BoolShare(pa, pb)
        sign = Pp[63] ^ G[0]  # bit 63 of w + s2: its propagate bit and the carry into it
        return sign, prod

    def msb(self, x: ArithShare) -> Proto:
        """Boolean sharing of the sign bit of ``x`` (in bit 0 of each word); exact.

        Bit decomposition of ``x = w + s2`` on bit-sliced words, where party 0 knows
        ``w = s0 + s1`` and parties 1 and 2 know ``s2``: each party transposes the one addend it
        knows in blocks of 64 values (:func:`._kernels_ref.bit_planes`: plane ``k`` holds bit
        ``k`` of 64 values). One round turns the two addends' planes into boolean sharings of
        their generate and propagate bits (:meth:`_gen_prop`); a binary tree of (generate,
        propagate) pairs over the 63 low positions then yields the carry into bit 63 in six
        levels, each with half the planes of the one before. 7 rounds; every AND of the tree is
        the protocol's (a fresh zero sharing masks each message), so the transcript stays
        uniform.
        """
        n = x.size
        sign, _ = yield from self._sign_planes(x)
        return BoolShare(_unpack_bits(sign.a, n), _unpack_bits(sign.b, n)).reshape(x.shape)

    def b2a(self, bits: BoolShare) -> Proto:
        """Arithmetic sharing (integers 0/1) of boolean-shared bits (bit 0 of each word)."""
        n = bits.size
        shape = bits.shape
        flat = BoolShare(_flat(bits.a) & _ONE, _flat(bits.b) & _ONE)
        # party 0 holds components 0 and 1, so it can input their XOR; component 2 is local
        own = (flat.a ^ flat.b) if self.index == 0 else None
        c = yield from self.share_input(0, own, (n,))
        z = np.zeros(n, dtype=np.uint64)
        if self.index == 1:
            b2 = ArithShare(z, flat.b)
        elif self.index == 2:
            b2 = ArithShare(flat.a, z)
        else:
            b2 = ArithShare(z, z.copy())
        prod = yield from self.mul(c, b2, fixed=False)
        out = c + b2 - prod.mul_int(2)  # c xor b2
        return out.reshape(shape)

    def _dabit_arith(self, bits: BoolShare) -> Proto:
        """Arithmetic sharing (integers 0/1, ``64 nw`` of them) of random packed bits ``bits``
        (``nw`` words, from the PRF streams); one round, four messages, no multiplication.

        ``r = u ^ r2`` with ``u = r0 ^ r1`` known to party 0 and ``r2`` to parties 1 and 2, so
        ``r = s u + r2`` with the sign ``s = 1 - 2 r2``. The new components are ``alpha`` (seed of
        parties 2 and 0), ``beta`` (seed of 0 and 1) and ``s2 = r - alpha - beta`` for parties 1
        and 2, who get ``s u`` without learning ``u``: party 0 sends ``u - m`` to party 1 and
        ``u - m'`` to party 2 (``m`` from the seed of 2 and 0, ``m'`` from that of 0 and 1), party 2
        sends ``s m - alpha`` to party 1 and party 1 sends ``s m' - beta`` to party 2; then
        ``s2 = s (u - m) + (s m - alpha) + r2 - beta`` at party 1 and the same sum with the primed
        terms at party 2.

        Security: party 0 receives nothing. Party 1 receives ``u - m`` and ``s m - alpha``, masked
        by ``m`` and ``alpha``, two words of the seed of parties 2 and 0 that it never sees: two
        independent uniform words, whatever ``u``; likewise party 2 with ``m'`` and ``beta``. The
        result is the replicated sharing ``(alpha, beta, s2)``: party 1's ``s2`` is masked by
        ``alpha``, party 2's by ``beta``, and the bit ``r`` itself stays hidden from each party
        by the component of ``r0 ^ r1 ^ r2`` it does not hold.
        """
        nw = bits.size
        n = 64 * nw
        nxt, prv = self._prfs()
        k = self._kern(n)
        if self.index == 0:
            ma, mb = prv.draw(2 * n), nxt.draw(2 * n)  # (m, alpha) with party 2, (m', beta) with party 1
            w, wp = k.dabit_p0(_flat(bits.a), _flat(bits.b), ma[:n], mb[:n])
            self._hand(1, w)
            self._hand(2, wp)
            return ArithShare(ma[n:], mb[n:])
        if self.index == 1:
            mb = prv.draw(2 * n)  # (m', beta) with party 0
            r2 = _flat(bits.b)
            self._hand(2, k.dabit_mask(r2, mb[:n], mb[n:]))
            w = yield from self._recv(0, n)
            x = yield from self._recv(2, n, new_round=False)
            return ArithShare(mb[n:], k.dabit_close(r2, w, x, mb[n:]))
        ma = nxt.draw(2 * n)  # (m, alpha) with party 0
        r2 = _flat(bits.a)
        self._hand(1, k.dabit_mask(r2, ma[:n], ma[n:]))
        w = yield from self._recv(0, n)
        x = yield from self._recv(1, n, new_round=False)
        return ArithShare(k.dabit_close(r2, w, x, ma[n:]), ma[n:])

    def _dabits(self, n: int) -> Proto:
        """``ceil(n / 64)`` words of fresh daBits: ``(bool, arith)``, the same random bits shared
        in XOR form (packed, bit ``r`` of word ``w`` is bit ``64 w + r``) and as integers 0/1.

        Served from a pool that is refilled :data:`DABIT_BLOCK` bits at a time: every party draws
        its two components of the packed bits from the pairwise PRF streams (no message: bit
        ``r = r0 ^ r1 ^ r2`` where party ``i`` holds ``r_i`` and ``r_{i+1}``, so no single party
        knows ``r``), and :meth:`_dabit_arith` converts them (one round per refill). Each bit is
        handed out once. All parties ask for the same sizes in the same order, so their pools agree.
        """
        nw = (n + 63) // 64
        have = self._dab_bool.size
        if have < nw:
            fresh = max(nw - have, DABIT_BLOCK // 64)
            nxt, prv = self._prfs()
            bits = BoolShare(prv.draw(fresh), nxt.draw(fresh))  # components index, index + 1
            arith = yield from self._dabit_arith(bits)
            self._dab_bool = BoolShare(np.concatenate([self._dab_bool.a, bits.a]),
                                       np.concatenate([self._dab_bool.b, bits.b]))
            self._dab_arith = ArithShare(np.concatenate([self._dab_arith.a, arith.a]),
                                         np.concatenate([self._dab_arith.b, arith.b]))
        rb, ra = self._dab_bool[:nw], self._dab_arith[:64 * nw]
        self._dab_bool, self._dab_arith = self._dab_bool[nw:], self._dab_arith[64 * nw:]
        return rb, ra

    def drelu(self, x: ArithShare) -> Proto:
        """Arithmetic sharing of ``1[x >= 0]`` (integers 0/1); 7 rounds, as :meth:`msb`.

        With a daBit ``r`` per element (:meth:`_dabits`), the boolean ``d = 1[x >= 0]`` of the
        sign circuit is opened masked, ``c = d ^ r``, in the round of the carry tree's last level,
        and ``d = c + r - 2 c r`` is then local in arithmetic form (no :meth:`b2a`: two rounds
        fewer).

        Security: every party holds two of the three components of ``r``; the third comes from
        the PRF seed of the other two, so to each party ``r`` is uniform and independent of
        everything else it sees, and so is ``c = d ^ r``, whatever ``x``. Each party sends its
        3-out-of-3 share ``c_i`` of ``c`` to both others; that share contains the last level's
        zero-sharing mask, whose part unknown to a receiver ``j`` is the same PRF word in the two
        shares ``j`` receives, so ``j``'s view of the round is two uniform words with XOR
        ``c ^ c_j``: simulatable from ``c`` alone, which is uniform. ``r`` is used for nothing
        else but ``d`` (and :meth:`relu`'s ``x r``, which opens nothing).
        """
        n = x.size
        rb, ra = yield from self._dabits(n)
        c, _ = yield from self._sign_planes(x, open_mask=rb)
        da, db = self._kern(n).open_drelu(c, ra.a[:n], ra.b[:n], self.index)
        return ArithShare(da.reshape(x.shape), db.reshape(x.shape))

    def relu(self, x: ArithShare) -> Proto:
        """``(max(x, 0), 1[x >= 0])`` as sharings; the second is the derivative for backprop.

        7 rounds (the sign circuit's). As :meth:`drelu`, with ``d = c ^ r`` opened as ``c``; the
        product ``x r`` with the daBit's arithmetic form does not depend on ``c``, so it travels
        in the messages of the circuit's first round, and ``x d = c x + (1 - 2 c) x r`` is local
        once ``c`` is public. ``x r`` is a multiplication of the protocol (its message masked by
        a fresh zero sharing); nothing about ``x`` or ``r`` is opened.
        """
        y, grad = yield from self._relu(x, None)
        return y, grad.d

    def relu_layer(self, x: ArithShare, weights: ArithShare) -> Proto:
        """``(max(x, 0), grad)`` for a hidden layer ``x`` (``batch x h``) whose output feeds
        ``weights`` (``h x m``); ``grad`` (:class:`ReluGrad`) is what :meth:`backprop_relu` needs.

        As :meth:`relu` (7 rounds), and the products ``q[b, j, o] = r[b, j] W[j, o]`` of the daBits
        with the weights (integers times fixed point: no truncation) travel in the same first
        round as ``x r``: a multiplication of the protocol, opened nowhere.
        """
        if len(x.shape) != 2 or len(weights.shape) != 2 or x.shape[1] != weights.shape[0]:
            raise ParameterError(f"a ReLU layer of shape {x.shape} cannot feed weights of shape {weights.shape}")
        return (yield from self._relu(x, weights))

    def _relu(self, x: ArithShare, weights: ArithShare | None) -> Proto:
        n = x.size
        rb, ra = yield from self._dabits(n)
        flat = ArithShare(_flat(x.a), _flat(x.b))
        rn = ra[:n]
        if weights is None:
            wa = wb = np.empty((1, 0), dtype=np.uint64)
        else:
            rows, h, m = x.shape[0], x.shape[1], weights.shape[1]
            wa, wb = np.ascontiguousarray(weights.a), np.ascontiguousarray(weights.b)
        c, prod = yield from self._sign_planes(flat, fused=(flat, rn, wa, wb), open_mask=rb)
        ya, yb, da, db = self._kern(n).open_relu(c, flat.a, flat.b, prod.a[:n], prod.b[:n], rn.a, rn.b, self.index)
        y = ArithShare(ya.reshape(x.shape), yb.reshape(x.shape))
        d = ArithShare(da.reshape(x.shape), db.reshape(x.shape))
        if weights is None:
            return y, ReluGrad(c, d, ArithShare(np.empty(0, np.uint64), np.empty(0, np.uint64)))
        q = prod[n:].reshape(rows, h, m)
        return y, ReluGrad(c, d, q)

    def backprop_relu(self, pairs: Sequence[tuple[ArithShare, ArithShare]], delta: ArithShare, weights: ArithShare,
                      grad: ReluGrad) -> Proto:
        """``([x @ y for x, y in pairs], (delta @ weights.T) * d)`` (fixed point) in one truncation
        round; ``d`` is the derivative kept in ``grad`` by :meth:`relu_layer` (with these ``weights``).

        :meth:`mul` by ``d`` would take a round of its own after the truncation of ``delta @ W.T``.
        With the public ``c = d ^ r`` and ``d = c + r - 2 c r``,
        ``(delta W^T) d = c (delta W^T) + (1 - 2 c) sum_o delta[b, o] q[b, j, o]``, where
        ``q = r W`` was made in the ReLU's first round: both terms are local 3-out-of-3 products
        of replicated sharings, combined with public coefficients, so the result joins the other
        products' truncation. Security: the second term carries a fresh zero sharing, scaled by
        the public ``+-1`` per element, so the combined 3-out-of-3 share is masked per element as
        :meth:`_trunc3` needs; nothing is opened.
        """
        rows, m = delta.shape
        h = weights.shape[0]
        if weights.shape[1] != m or grad.q.shape != (rows, h, m):
            raise ParameterError(f"delta {delta.shape}, weights {weights.shape} and the ReLU layer do not match")
        zs = [self._matmul_local(x, y) for x, y in pairs]
        zb = self._matmul_local(delta, weights.T)
        c = np.ascontiguousarray
        zs.append(self._kern(rows * h).backprop_mask(grad.c, zb, c(delta.a), c(delta.b), grad.q.a, grad.q.b,
                                                     self._zero_arith(rows * h)))
        res = yield from self._trunc_many(zs)
        return res[:-1], res[-1]

    def sigmoid(self, x: ArithShare, knots: Sequence[float] = SIGMOID_KNOTS) -> Proto:
        """Piecewise-linear logistic function: a public combination of ReLUs at ``knots``.

        Interpolates ``1/(1+exp(-x))`` at the knots, is 0 left of the first and 1 right of the
        last (max. error ~0.01 with the default knots); costs one batched ReLU per knot.
        """
        t, coef = _sigmoid_coeffs(knots)
        e = 16
        shifted = [self.add_public(x, encode(-tk, self.frac_bits)) for tk in t]
        a, b = _cat(shifted)
        r, _ = yield from self.relu(ArithShare(a, b))
        n = x.size
        acc_a = np.zeros(n, dtype=np.uint64)
        acc_b = np.zeros(n, dtype=np.uint64)
        for kk, ck in enumerate(coef):
            ci = np.array(round(ck * (1 << e)), dtype=np.int64).view(np.uint64)
            acc_a += r.a[kk * n:(kk + 1) * n] * ci
            acc_b += r.b[kk * n:(kk + 1) * n] * ci
        out = yield from self.trunc(ArithShare(acc_a, acc_b), e)
        return out.reshape(x.shape)
