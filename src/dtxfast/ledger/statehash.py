"""The state commitment of block headers: a homomorphic hash of every contract record.

Each block header carries ``state_root``, the hash of the whole contract state (every record, as
``(kind, key, value)``) after the block. It is computed incrementally, so an append costs the
records it changes, not the size of the state: the state's hash is an **LtHash** (Bellare and
Micciancio's additive multiset hash over a lattice, in the parameters of Lewi, Kim, Maykov and
Weis, *Securing Update Propagation with Homomorphic Hashing*, 2019: 1024 lanes of 16 bits),
the lane-wise sum modulo 2^16 of SHAKE128 expansions of each record to 2048 bytes (SHAKE128
rather than SHAKE256: half the cost per changed record, and 128-bit security, the level of the
Ed25519 signatures beside it). Adding a
record adds its expansion, replacing one subtracts the old and adds the new; the root is
SHA-256 of the 2048-byte sum. Finding two different states with the same sum is the
short-vector problem the paper bounds at about 200 bits of security.

The running sum is stored beside the records under the reserved kind :data:`STATE_KIND` (it is
not itself part of the state), written in the same backend transaction as the block. An auditor
never trusts it: :meth:`Ledger.verify_chain <dtxfast.ledger.Ledger.verify_chain>` recomputes the
sum from the records a backend (or one etcd member) serves and compares the root with the tip's
header, so a record edited behind the ledger's back is caught without a replay.

Examples
--------
>>> a = StateHash()
>>> a.update("node", "n1", None, b"v1")
>>> a.update("node", "n2", None, b"v2")
>>> b = StateHash.from_records([("node", "n2", b"v2"), ("node", "n1", b"v1")])
>>> a.root() == b.root()  # order does not matter
True
>>> a.update("node", "n1", b"v1", b"v1'")
>>> a.root() == b.root()
False
>>> a.update("node", "n1", b"v1'", b"v1")  # undoing a change restores the root
>>> a.root() == b.root(), a.root() == StateHash.from_bytes(a.to_bytes()).root()
(True, True)
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

import msgspec
import numpy as np

from ..errors import MalformedInput
from .contract import StateView

__all__ = ["EMPTY_ROOT", "LANES", "STATE_KEY", "STATE_KIND", "StateHash", "StateTracker"]

#: lanes of 16 bits (2048 bytes)
LANES = 1024
#: the reserved record kind and key under which backends keep the running sum
STATE_KIND = "~state"
STATE_KEY = "lthash"
_ELEM_DOMAIN = b"dtxfast/ledger/state-elem/v1\x00"
_ROOT_DOMAIN = b"dtxfast/ledger/state-root/v1\x00"
_enc = msgspec.msgpack.Encoder()


def _expand(kind: str, key: str, value: bytes) -> np.ndarray:
    data = _ELEM_DOMAIN + _enc.encode((kind, key, value))
    return np.frombuffer(hashlib.shake_128(data).digest(2 * LANES), dtype="<u2")


class StateHash:
    """A running LtHash of a set of records (see the module docs)."""

    __slots__ = ("acc",)

    def __init__(self) -> None:
        self.acc = np.zeros(LANES, dtype="<u2")

    @classmethod
    def from_bytes(cls, data: bytes | None) -> StateHash:
        """The sum stored by :meth:`to_bytes` (None or empty: the empty state)."""
        s = cls()
        if data:
            if len(data) != 2 * LANES:
                raise MalformedInput(f"a state hash is {2 * LANES} bytes, not {len(data)}")
            s.acc = np.frombuffer(data, dtype="<u2").copy()
        return s

    @classmethod
    def from_records(cls, records: Iterable[tuple[str, str, bytes]], chunk: int = 4096) -> StateHash:
        """The hash of a whole state, from ``(kind, key, value)`` triples in any order."""
        s = cls()
        buf: list[np.ndarray] = []
        for kind, key, value in records:
            buf.append(_expand(kind, key, value))
            if len(buf) >= chunk:
                s.acc += np.sum(np.stack(buf), axis=0, dtype="<u2")
                buf.clear()
        if buf:
            s.acc += np.sum(np.stack(buf), axis=0, dtype="<u2")
        return s

    def update(self, kind: str, key: str, old: bytes | None, new: bytes | None) -> None:
        """Replace the record ``(kind, key)``: ``old`` (None: absent) becomes ``new``."""
        if old == new:
            return
        if old is None:
            self.acc += _expand(kind, key, new)  # type: ignore[arg-type]
        elif new is None:
            self.acc -= _expand(kind, key, old)
        else:
            self.acc += _expand(kind, key, new) - _expand(kind, key, old)

    def to_bytes(self) -> bytes:
        """The 2048-byte running sum (what backends store)."""
        return self.acc.astype("<u2", copy=False).tobytes()

    def root(self) -> bytes:
        """The 32-byte commitment a block header carries."""
        return hashlib.sha256(_ROOT_DOMAIN + self.to_bytes()).digest()


#: the root of the empty state (a new chain's genesis block carries it)
EMPTY_ROOT = StateHash().root()


class StateTracker:
    """A :class:`~dtxfast.ledger.contract.StateView` over another one that remembers, for each
    record written, its value before the first write; :meth:`apply` then moves a
    :class:`StateHash` from the old values to the new ones (only what changed is hashed).

    Examples
    --------
    >>> from dtxfast.ledger.backend import MemoryState, MemoryTxn
    >>> txn = MemoryTxn(MemoryState()); acc = StateHash()
    >>> t = StateTracker(txn, acc)
    >>> t.put("node", "n1", b"v1", [("role", "storage")])
    >>> t.apply(); acc.root() == StateHash.from_records([("node", "n1", b"v1")]).root()
    True
    """

    __slots__ = ("acc", "new", "old", "view")

    def __init__(self, view: StateView, acc: StateHash) -> None:
        self.view = view
        self.acc = acc
        self.old: dict[tuple[str, str], bytes | None] = {}
        self.new: dict[tuple[str, str], bytes] = {}

    def get(self, kind: str, key: str) -> bytes | None:
        value = self.view.get(kind, key)
        k = (kind, key)
        if k not in self.old:  # the first read of a record is its value before this block
            self.old[k] = value
        return value

    def put(self, kind: str, key: str, value: bytes, terms: Sequence[tuple[str, str]]) -> None:
        k = (kind, key)
        if k not in self.old:
            self.old[k] = self.view.get(kind, key)
        self.view.put(kind, key, value, terms)
        self.new[k] = bytes(value)

    def keys(self, kind: str, attr: str, value: str) -> list[str]:
        return self.view.keys(kind, attr, value)

    def apply(self) -> None:
        """Add the changes written so far to the hash (and forget them)."""
        for (kind, key), value in self.new.items():
            self.acc.update(kind, key, self.old[(kind, key)], value)
        self.old.clear()
        self.new.clear()
