"""Following a ledger: iterate over entries as blocks arrive, or call back from a thread.

Written once over the backend's read hooks (:class:`~dtxfast.ledger.backend.LedgerReader`) and
mixed into :class:`~dtxfast.ledger.Ledger`: :meth:`LedgerSubscriptions.subscribe` yields entries,
:meth:`LedgerSubscriptions.watch` runs a :class:`Subscription` thread.

Examples
--------
>>> from dtxfast.ledger import MemoryLedger, NodeIdentity, Heartbeat, RegisterNode
>>> led = MemoryLedger(); n = NodeIdentity.generate()
>>> import queue
>>> seen: queue.Queue = queue.Queue()
>>> with led.watch(seen.put, kinds={"heartbeat"}):
...     _ = led.submit(n, RegisterNode(role="storage")); _ = led.submit(n, Heartbeat())
...     seen.get(timeout=10).kind
'heartbeat'
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .backend import LedgerReader
from .block import Entry

__all__ = ["LedgerSubscriptions", "Subscription"]


class Subscription:
    """A running :meth:`Ledger.watch`: a thread calling back for each new entry; ``close()`` stops it."""

    def __init__(self, ledger: LedgerSubscriptions, callback: Callable[[Entry], Any], from_height: int,
                 kinds: Iterable[str] | None, involving: str | None = None) -> None:
        self._stop = threading.Event()
        self.error: BaseException | None = None

        def run() -> None:
            try:
                for entry in ledger.subscribe(from_height, kinds=kinds, involving=involving,
                                              stop=self._stop):
                    callback(entry)
            except BaseException as exc:  # surfaced to the owner through .error
                self.error = exc

        self._thread = threading.Thread(target=run, name="dtx-ledger-watch", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the watcher and wait for its thread."""
        self._stop.set()
        self._thread.join(timeout)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LedgerSubscriptions(LedgerReader):
    """The :meth:`subscribe` / :meth:`watch` methods of :class:`~dtxfast.ledger.Ledger`."""

    def subscribe(
        self,
        from_height: int = 1,
        *,
        kinds: Iterable[str] | None = None,
        involving: str | None = None,
        stop: threading.Event | None = None,
        timeout: float | None = None,
        poll_s: float = 0.25,
    ) -> Iterator[Entry]:
        """Yield every entry from ``from_height`` on, then wait for new ones.

        Parameters
        ----------
        from_height : int
            First block height to deliver.
        kinds : iterable of str, optional
            Only these transaction kinds (e.g. ``{"publish_task", "issue_challenge"}``).
        involving : str, optional
            Only entries that concern this node id (see :meth:`Entry.involves`): an executor
            follows the tasks naming it, a storage node the challenges addressed to it.
        stop : threading.Event, optional
            Ends the iteration when set.
        timeout : float, optional
            End the iteration after this many seconds without a new block (default: wait forever).

        Examples
        --------
        >>> from dtxfast.ledger import MemoryLedger, NodeIdentity, Heartbeat, RegisterNode
        >>> led = MemoryLedger(); n = NodeIdentity.generate()
        >>> _ = led.submit(n, RegisterNode(role="storage")); _ = led.submit(n, Heartbeat())
        >>> [e.kind for e in led.subscribe(1, timeout=0)]
        ['register_node', 'heartbeat']
        """
        wanted = None if kinds is None else set(kinds)
        next_h = max(0, from_height)
        idle_since = time.monotonic()
        while stop is None or not stop.is_set():
            tip = self._r_height()
            if tip >= next_h:
                for b in self._r_blocks(next_h, tip + 1):
                    for e in b.entries():
                        if (wanted is None or e.kind in wanted) and (
                                involving is None or e.involves(involving)):
                            yield e
                    next_h = b.height + 1
                idle_since = time.monotonic()
                continue
            wait = poll_s
            if timeout is not None:
                left = timeout - (time.monotonic() - idle_since)
                if left <= 0:
                    return
                wait = min(wait, left)
            self._wait(tip, wait)

    def watch(self, callback: Callable[[Entry], Any], from_height: int = 1, *,
              kinds: Iterable[str] | None = None, involving: str | None = None) -> Subscription:
        """Call ``callback(entry)`` from a background thread for each entry from ``from_height``
        (filters as for :meth:`subscribe`); an exception of the callback ends the watch and is
        kept in :attr:`Subscription.error`."""
        return Subscription(self, callback, from_height, kinds, involving)
