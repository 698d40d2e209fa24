"""An in-memory ledger backend, for tests and single-process simulations.

It keeps exactly what the SQLite backend keeps (blocks, stored entry bytes, encoded records and
their index terms) in dictionaries, behind one lock; a write transaction collects its changes in
an overlay that is merged on success and dropped on error, so a refused transaction leaves no
trace. Nothing survives the process.

Examples
--------
>>> from dtxfast.ledger import MemoryLedger
>>> led = MemoryLedger()
>>> led.height
0
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from .base import Block, Entry, Ledger, WriteTxn

__all__ = ["MemoryLedger"]


class _Store:
    def __init__(self) -> None:
        self.blocks: list[Block] = []
        self.objects: dict[tuple[str, str], bytes] = {}
        self.by_kind: dict[str, set[str]] = {}
        self.terms: dict[tuple[str, str, str], set[str]] = {}
        self.rev: dict[tuple[str, str], tuple[tuple[str, str], ...]] = {}
        self.tx_ids: set[bytes] = set()


class _MemTxn(WriteTxn):
    def __init__(self, store: _Store) -> None:
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


class MemoryLedger(Ledger):
    """A ledger kept in this process's memory (see :class:`~dtxfast.ledger.Ledger`).

    Parameters
    ----------
    clock, max_skew_ms
        As for :class:`~dtxfast.ledger.Ledger`.
    """

    def __init__(self, *, clock: Callable[[], int] | None = None,
                 max_skew_ms: int | None = 600_000) -> None:
        super().__init__(clock=clock, max_skew_ms=max_skew_ms)
        self._s = _Store()
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        with self._write() as w:
            self._make_genesis(w)

    @contextlib.contextmanager
    def _write(self) -> Iterator[WriteTxn]:
        with self._lock:
            txn = _MemTxn(self._s)
            yield txn
            txn.commit()
            self._cond.notify_all()

    def _r_get(self, kind: str, key: str) -> bytes | None:
        with self._lock:
            return self._s.objects.get((kind, key))

    def _r_keys(self, kind: str, attr: str, value: str) -> list[str]:
        with self._lock:
            return sorted(self._s.terms.get((kind, attr, value), ()))

    def _r_all(self, kind: str) -> list[str]:
        with self._lock:
            return sorted(self._s.by_kind.get(kind, ()))

    def _r_height(self) -> int:
        with self._lock:
            return len(self._s.blocks) - 1

    def _r_blocks(self, start: int, stop: int) -> Iterator[Block]:
        with self._lock:
            chunk = self._s.blocks[max(0, start):max(0, stop)]
        return iter(chunk)

    def _wait(self, height: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self._s.blocks) - 1 > height, timeout)

    # test hook: the stored blocks, for tamper tests of the in-memory backend
    def _raw_blocks(self) -> list[Any]:
        return self._s.blocks
