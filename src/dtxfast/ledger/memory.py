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
from collections.abc import Callable, Iterator
from typing import Any

from .backend import MemoryState, MemoryTxn, WriteTxn
from .base import Ledger
from .block import Block

__all__ = ["MemoryLedger"]


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
        self._s = MemoryState()
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        with self._write() as w:
            self._make_genesis(w)

    @contextlib.contextmanager
    def _write(self) -> Iterator[WriteTxn]:
        with self._lock:
            txn = MemoryTxn(self._s)
            yield txn
            txn.commit()
            self._cond.notify_all()

    def _r_get(self, kind: str, key: str) -> bytes | None:
        with self._lock:
            return self._s.objects.get((kind, key))

    def _r_keys(self, kind: str, attr: str, value: str) -> list[str]:
        with self._lock:
            return sorted(self._s.terms.get((kind, attr, value), ()))

    def _r_records(self) -> Iterator[tuple[str, str, bytes]]:
        with self._lock:
            items = [(k, key, v) for (k, key), v in self._s.objects.items()]
        return iter(items)

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
