"""What a ledger backend implements: read hooks, one write transaction, and the in-memory state.

A backend (:class:`~dtxfast.ledger.MemoryLedger`, :class:`~dtxfast.ledger.SQLiteLedger`, a
replicated one) subclasses :class:`~dtxfast.ledger.Ledger` and provides

* ``_write()``: a context manager opening one atomic write transaction, yielding a
  :class:`WriteTxn` (state reads and writes for the contract, the chain tip, replay lookup,
  adding a block); leaving it with an exception rolls everything back;
* the read hooks of :class:`LedgerReader`: ``_r_get``, ``_r_keys``, ``_r_all``, ``_r_records``
  (records and index lookups), ``_r_height``, ``_r_blocks`` (the chain) and optionally ``_wait(height,
  timeout)`` (block until the chain is taller than ``height``; polling by default).

:class:`MemoryState` and :class:`MemoryTxn` keep a ledger's state in dictionaries: the in-memory
backend stores everything in them, and :meth:`Ledger.verify_chain` replays the chain into a fresh
one to compare with what a backend holds.

Examples
--------
>>> state = MemoryState()
>>> txn = MemoryTxn(state)
>>> txn.put("node", "n1", b"record", [("role", "storage")])
>>> txn.keys("node", "role", "storage"), state.objects  # not visible before the commit
(['n1'], {})
>>> txn.commit()
>>> state.objects[("node", "n1")], sorted(state.terms)
(b'record', [('node', 'role', 'storage')])
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable, Iterator, Sequence

from .block import Block, Entry
from .contract import StateView

__all__ = ["LedgerReader", "MemoryState", "MemoryTxn", "WriteTxn"]


class WriteTxn(StateView, abc.ABC):
    """One open write transaction of a backend (a :class:`~dtxfast.ledger.contract.StateView`)."""

    @abc.abstractmethod
    def tip(self) -> tuple[int, bytes]:
        """Height and hash of the last block."""

    @abc.abstractmethod
    def has_tx(self, tx_id: bytes) -> bool:
        """True if a transaction with this id is on the chain."""

    @abc.abstractmethod
    def add_block(self, block: Block, entries: Sequence[Entry]) -> None:
        """Append a block (its header, hash, entries); visible once the transaction commits."""


class LedgerReader(abc.ABC):
    """The read hooks every backend implements, and the ledger's clock.

    The queries (:mod:`~dtxfast.ledger.queries`), the health reports
    (:mod:`~dtxfast.ledger.health`) and the subscriptions (:mod:`~dtxfast.ledger.subscription`)
    are written once over these hooks.
    """

    _clock: Callable[[], int]

    @abc.abstractmethod
    def _r_get(self, kind: str, key: str) -> bytes | None:
        """Read one record."""

    @abc.abstractmethod
    def _r_keys(self, kind: str, attr: str, value: str) -> list[str]:
        """Keys with an index term."""

    @abc.abstractmethod
    def _r_all(self, kind: str) -> list[str]:
        """All keys of a kind."""

    @abc.abstractmethod
    def _r_height(self) -> int:
        """Height of the last block (-1 if there is no genesis yet)."""

    @abc.abstractmethod
    def _r_records(self) -> Iterator[tuple[str, str, bytes]]:
        """Every stored record as ``(kind, key, value)``, any order (for the state hash)."""

    @abc.abstractmethod
    def _r_blocks(self, start: int, stop: int) -> Iterator[Block]:
        """Blocks ``start <= height < stop`` in order."""

    def _r_orphans(self) -> tuple[int, int]:
        """``(count, first height)`` of stored entries that belong to no block (``(0, -1)`` when
        none). A block removed behind the ledger's back leaves behind whatever was stored apart
        from it: SQLite's ``entries`` rows, etcd's ``x/<tx_id>`` index keys (both override this).
        The in-memory ledger keeps each block's entries inside the block object, in this
        process only: nothing outside the process can remove a block, and removing one from
        the list leaves no entry behind to find (its records still disagree with the tip's state
        root, which :meth:`~dtxfast.ledger.Ledger.verify_chain` checks on every backend)."""
        return 0, -1

    def _wait(self, height: int, timeout: float) -> bool:
        """Wait until the chain is taller than ``height``; True if it is."""
        deadline = time.monotonic() + timeout
        while True:
            if self._r_height() > height:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(0.02, left))


class MemoryState:
    """A ledger's blocks, records and index terms, in dictionaries (not thread-safe by itself)."""

    def __init__(self) -> None:
        self.blocks: list[Block] = []
        self.objects: dict[tuple[str, str], bytes] = {}
        self.by_kind: dict[str, set[str]] = {}
        self.terms: dict[tuple[str, str, str], set[str]] = {}
        self.rev: dict[tuple[str, str], tuple[tuple[str, str], ...]] = {}
        self.tx_ids: set[bytes] = set()


class MemoryTxn(WriteTxn):
    """A write transaction over a :class:`MemoryState`: an overlay merged by :meth:`commit`.

    Dropping the object without calling :meth:`commit` leaves the state untouched.
    """

    def __init__(self, store: MemoryState) -> None:
        self.s = store
        self.objects: dict[tuple[str, str], bytes] = {}
        self.terms: dict[tuple[str, str], tuple[tuple[str, str], ...]] = {}
        self.blocks: list[Block] = []
        self.tx_ids: set[bytes] = set()

    def get(self, kind: str, key: str) -> bytes | None:
        k = (kind, key)
        return self.objects[k] if k in self.objects else self.s.objects.get(k)

    def put(self, kind: str, key: str, value: bytes, terms: Sequence[tuple[str, str]]) -> None:
        self.objects[(kind, key)] = bytes(value)
        self.terms[(kind, key)] = tuple(terms)

    def keys(self, kind: str, attr: str, value: str) -> list[str]:
        found = set(self.s.terms.get((kind, attr, value), ()))
        for (k, key), terms in self.terms.items():
            if k == kind:
                if (attr, value) in terms:
                    found.add(key)
                else:
                    found.discard(key)
        return sorted(found)

    def tip(self) -> tuple[int, bytes]:
        last = self.blocks[-1] if self.blocks else (self.s.blocks[-1] if self.s.blocks else None)
        return (-1, b"") if last is None else (last.height, last.hash)

    def has_tx(self, tx_id: bytes) -> bool:
        return tx_id in self.tx_ids or tx_id in self.s.tx_ids

    def add_block(self, block: Block, entries: Sequence[Entry]) -> None:
        self.blocks.append(block)
        self.tx_ids.update(e.tx_id for e in entries)

    def commit(self) -> None:
        """Merge the overlay into the state."""
        s = self.s
        for (kind, key), value in self.objects.items():
            s.objects[(kind, key)] = value
            s.by_kind.setdefault(kind, set()).add(key)
            for attr, val in s.rev.get((kind, key), ()):
                s.terms.get((kind, attr, val), set()).discard(key)
            new = self.terms[(kind, key)]
            for attr, val in new:
                s.terms.setdefault((kind, attr, val), set()).add(key)
            s.rev[(kind, key)] = new
        s.blocks.extend(self.blocks)
        s.tx_ids.update(self.tx_ids)
