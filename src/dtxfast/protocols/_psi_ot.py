"""The two halves of OT-mode PSI (KKRT16), used by :mod:`dtxfast.protocols.psi` (private).

Bodies in and out, no message framing: :class:`~dtxfast.protocols.psi.PSISigner` and
:class:`~dtxfast.protocols.psi.PSIRequester` wrap them in PSI messages and check their order.
The protocol and its leakage are described in :mod:`dtxfast.protocols.psi`.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Iterator

import numpy as np

from .._backend import load_kernel, num_threads
from ..crypto.blind_rsa import IdBatch, Rng
from ..crypto.ot import (
    CODE_BITS,
    KAPPA,
    POINT_BYTES,
    BaseOTReceiver,
    BaseOTSender,
    IKNPReceiver,
    IKNPSender,
    KKRTReceiver,
    KKRTSender,
    OPRFKey,
    bits_of,
)
from ..errors import MalformedInput, ProtocolError, StateError

__all__: list[str] = []

_ot, _ = load_kernel("_ot", "dtxfast.crypto._ot_py")
_psi, _ = load_kernel("_psi", "dtxfast.crypto._psi_py")

SEED = 16
#: the signer's HELLO carries its seed and the base-OT sender's point after the counts
HELLO_EXTRA = SEED + POINT_BYTES
#: the requester's SETUP: its seed and 128 base-OT receiver points
SETUP_SIZE = SEED + KAPPA * POINT_BYTES
#: the signer's EXT: IKNP's matrix, 512 rows of 16 bytes
EXT_ROWS, EXT_WIDTH = CODE_BITS, KAPPA // 8
#: rows of U computed per kernel call (messages are cut from these)
BLOCK_ROWS = 1 << 15
#: cuckoo bins per requester id (3 hash functions)
LOAD = 1.27
#: statistical security of the match: false positives at most 2^-40 per run
STAT_BITS = 40
MAX_KICKS = 500
#: most ids per party: KKRT16's 512-bit code gives 128-bit security up to 2^24 OPRF inputs
MAX_IDS = 1 << 24
MAX_REHASH = 64
_ID_DOMAIN = b"dtxfast/psi/ot/id/v1\x00"
_DUMMY_TAG = 3


def table_rows(n_requester: int) -> int:
    """Cuckoo bins (= KKRT rows) for a requester of ``n`` ids: ``1.27 n + 1`` rounded up to 128."""
    need = math.ceil(LOAD * n_requester) + 1
    return (need + 127) // 128 * 128


def value_width(n_requester: int, n_signer: int) -> int:
    """Bytes of an OPRF value on the wire: ``40 + log2(3 n_r n_s)`` bits, 8..16 bytes."""
    bits = STAT_BITS + math.log2(max(2, 3 * n_requester * n_signer))
    return min(16, max(8, math.ceil(bits / 8)))


def check_size(n: int, who: str) -> None:
    if n > MAX_IDS:
        raise ProtocolError(f"{who} holds {n} ids; OT-mode PSI takes at most 2^24 per party")


def _derive(tag: bytes, seed_s: bytes, seed_r: bytes) -> bytes:
    return hashlib.sha256(b"dtxfast/psi/ot/" + tag + b"/v1\x00" + seed_s + seed_r).digest()[:16]


def hash_ids(ids: IdBatch, hash_key: bytes, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """``(items (n, 16), bins (n, 3) uint32)``: a keyed SHA-256 of each id; its first 16 bytes
    are the OPRF input, the next three 32-bit words pick the bins (``w * rows >> 32``)."""
    n = len(ids)
    h = np.zeros((n, 32), np.uint8)
    if n:
        prefix = np.frombuffer(_ID_DOMAIN + hash_key, np.uint8)
        _psi.hash_to_u(ids.buffer, ids.offsets, prefix, h, num_threads())
    words = np.ascontiguousarray(h[:, 16:28]).view("<u4").astype(np.uint64)
    bins = ((words * np.uint64(rows)) >> np.uint64(32)).astype(np.uint32)
    return np.ascontiguousarray(h[:, :16]), np.ascontiguousarray(bins)


def _tagged(items: np.ndarray, h: int | np.ndarray) -> np.ndarray:
    out = items.copy()
    out[:, 15] = (out[:, 15] & 0xF0) | (np.asarray(h, dtype=np.uint8) << 2)
    return out


class RequesterSide:
    """The requester (OPRF receiver, cuckoo hashing) of one OT-mode run."""

    def __init__(self, ids: IdBatch, signer_count: int, extra: bytes, rng: Rng) -> None:
        if len(extra) != HELLO_EXTRA:
            raise MalformedInput("an OT-mode HELLO carries a 16-byte seed and a 64-byte point")
        check_size(len(ids), "this requester")
        check_size(signer_count, "the signer")
        self.ids = ids
        self._rng = rng
        self.seed_s = bytes(extra[:SEED])
        self._a_msg = bytes(extra[SEED:])
        self.rows = table_rows(len(ids))
        self.width = value_width(len(ids), signer_count)
        self.signer_count = signer_count
        self._setup: bytes | None = None
        self._oprf: KKRTReceiver | None = None
        self._mine = np.zeros((self.rows, 16), np.uint8)
        self._theirs: list[np.ndarray] = []
        self._nvalues = 0
        self.result: np.ndarray | None = None

    def setup(self) -> bytes:
        """Cuckoo-hash the ids (a fresh seed on failure) and answer the base OTs: the SETUP body."""
        if self._setup is not None:
            return self._setup
        for _ in range(MAX_REHASH):
            seed_r = self._rng(SEED)
            items, bins = hash_ids(self.ids, _derive(b"hash", self.seed_s, seed_r), self.rows)
            table = np.full(self.rows, -1, np.int64)
            which = np.full(self.rows, -1, np.int8)
            dup = np.zeros(len(self.ids), np.uint8)
            st = int.from_bytes(self._rng(8), "little")
            if _ot.cuckoo_insert(bins, items, table, which, dup, st, MAX_KICKS) == -1:
                break
        else:  # pragma: no cover - probability below 2^-40 per try for large sets
            raise ProtocolError("cuckoo hashing failed after 64 seeds")
        self.table = table
        self.code_key = _derive(b"code", self.seed_s, seed_r)
        valid = table >= 0
        self.valid = valid.astype(np.uint8)
        inputs = np.zeros((self.rows, 16), np.uint8)
        inputs[:, 15] = _DUMMY_TAG << 2
        inputs[valid] = _tagged(items[table[valid]], which[valid])
        self._inputs = inputs
        self._delta = np.frombuffer(self._rng(KAPPA // 8), np.uint8)
        self._base = BaseOTReceiver(bits_of(self._delta, KAPPA), self._a_msg, self._rng)
        self._setup = seed_r + self._base.message()
        return self._setup

    def on_ext(self, body: bytes) -> None:
        """The signer's IKNP matrix: this side's 512 random-OT pairs, the KKRT seeds."""
        if self._setup is None or self._oprf is not None:
            raise ProtocolError("an EXT message out of turn")
        m0, m1 = IKNPSender(self._delta, self._base.keys()).receive(body)
        if m0.shape[0] != CODE_BITS:
            raise MalformedInput("the EXT message must hold 512 rows")
        self._oprf = KKRTReceiver(m0, m1, self.code_key)

    def u_blocks(self) -> Iterator[tuple[int, np.ndarray]]:
        """``(lo, U rows)`` blocks of :data:`BLOCK_ROWS` rows (the last may be shorter)."""
        if self._oprf is None:
            raise StateError("no EXT message from the signer yet")
        for lo in range(0, self.rows, BLOCK_ROWS):
            hi = min(lo + BLOCK_ROWS, self.rows)
            u, vals = self._oprf.encode(self._inputs[lo:hi], lo)
            self._mine[lo:hi] = vals
            yield lo, u

    def on_values(self, values: np.ndarray, last: bool) -> None:
        """A chunk of the signer's OPRF values; after the last one, the intersection."""
        if self.result is not None:
            raise ProtocolError("OPRF values after the last chunk")
        if values.shape[0] and values.shape[1] != self.width:
            raise MalformedInput(f"OPRF values must be {self.width} bytes")
        self._nvalues += values.shape[0]
        if self._nvalues > 3 * self.signer_count:
            raise ProtocolError("the signer sent more OPRF values than 3 per id it announced")
        self._theirs.append(values.reshape(-1, self.width).copy())
        if last:
            theirs = np.concatenate(self._theirs) if self._theirs else np.zeros((0, self.width), np.uint8)
            self._theirs = []
            hit = np.zeros(self.rows, np.uint8)
            _ot.match_values(self._mine, self.valid, np.ascontiguousarray(theirs), hit, num_threads())
            self.result = np.sort(self.table[hit.astype(bool)]).astype(np.int64)


class SignerSide:
    """The signer (OPRF sender) of one OT-mode run."""

    def __init__(self, key: OPRFKey, ids: IdBatch, rng: Rng = os.urandom) -> None:
        self.key = key
        self.ids = ids
        self._rng = rng
        self.seed_s = rng(SEED)
        self._base = BaseOTSender(KAPPA, rng)
        self._oprf: KKRTSender | None = None
        self.rows = 0
        self.width = 0

    def hello_extra(self) -> bytes:
        return self.seed_s + self._base.message()

    def on_setup(self, body: bytes, requester_count: int) -> bytes:
        """The requester's SETUP: base-OT keys, IKNP with choice bits ``s``; the EXT body."""
        if self._oprf is not None:
            raise ProtocolError("a second SETUP")
        if len(body) != SETUP_SIZE:
            raise MalformedInput(f"a SETUP body is {SETUP_SIZE} bytes")
        check_size(requester_count, "the requester")
        check_size(len(self.ids), "this signer")
        seed_r = bytes(body[:SEED])
        k0, k1 = self._base.keys(bytes(body[SEED:]))
        ext = IKNPReceiver(np.stack([k0, k1], axis=1), bits_of(self.key.bits, CODE_BITS))
        self.rows = table_rows(requester_count)
        self.width = value_width(requester_count, len(self.ids))
        self.hash_key = _derive(b"hash", self.seed_s, seed_r)
        self._oprf = KKRTSender(self.key, ext.outputs(), _derive(b"code", self.seed_s, seed_r), self.rows)
        self._pending: list[np.ndarray] = []
        self._pending_rows = 0
        self._lo = 0
        return ext.message()

    @property
    def complete(self) -> bool:
        return self._oprf is not None and self._oprf.complete

    def on_u(self, u: np.ndarray) -> None:
        """Rows of U, in order (buffered to whole blocks of 128 rows)."""
        if self._oprf is None:
            raise ProtocolError("REQUEST before SETUP")
        if self._lo + self._pending_rows + u.shape[0] > self.rows:
            raise ProtocolError("more rows of U than the requester's table holds")
        self._pending.append(u)
        self._pending_rows += u.shape[0]
        if self._pending_rows >= BLOCK_ROWS or self._lo + self._pending_rows == self.rows:
            block = np.concatenate(self._pending) if len(self._pending) > 1 else self._pending[0]
            take = block.shape[0] // 128 * 128 if self._lo + block.shape[0] < self.rows else block.shape[0]
            self._oprf.receive(block[:take], self._lo)
            self._lo += take
            rest = block[take:]
            self._pending = [rest] if rest.shape[0] else []
            self._pending_rows = rest.shape[0]

    def values(self) -> np.ndarray:
        """3 OPRF values per distinct own id (one per hash function), shuffled: ``(3 n', width)``."""
        if not self.complete:
            raise StateError("not every row of U was received")
        assert self._oprf is not None
        items, bins = hash_ids(self.ids, self.hash_key, self.rows)
        first = np.zeros(len(self.ids), np.uint8)
        _ot.first_occurrence(items, first)
        if not first.all():
            keep = first.astype(bool)
            items, bins = np.ascontiguousarray(items[keep]), np.ascontiguousarray(bins[keep])
        out = self._oprf.evaluate_ids(bins, items, self.width)
        _ot.shuffle_rows(out, np.frombuffer(self._rng(16), np.uint8))
        return out
