"""The highest block a node has seen, so it refuses a ledger that went back (issue 15).

A hash-chained ledger proves its own history, but not that it is the whole history: a SQLite file
restored from yesterday's backup, or a rewritten tail, still verifies. A node therefore keeps, in
its data directory, the chain id, the highest height it has seen and that block's hash, and
before it uses the ledger again checks that the ledger has the same chain id, is at least that
high, and still has that block with that hash. A ledger that went back (or forked at or below the
mark) is refused with :class:`~dtxfast.errors.StateError`; otherwise the mark moves up.

Examples
--------
>>> import pathlib, tempfile
>>> from dtxfast.ledger import MemoryLedger
>>> led = MemoryLedger()
>>> mark = HighWaterMark(pathlib.Path(tempfile.mkdtemp()) / "ledger-mark.json")
>>> mark.check(led)
0
>>> mark.height
0
"""

from __future__ import annotations

import hmac
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from .._fs import atomic_output
from ..errors import MalformedInput, NotFound, StateError

if TYPE_CHECKING:
    from .base import Ledger

__all__ = ["HighWaterMark"]


class HighWaterMark:
    """The highest block seen on one ledger, kept in a small JSON file (written atomically).

    Parameters
    ----------
    path : path-like
        The file (a node keeps it in its data directory); created on the first :meth:`check`.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.chain_id: bytes | None = None
        self.height = -1
        self.hash = b""
        if self.path.exists():
            try:
                doc = json.loads(self.path.read_text(encoding="utf-8"))
                self.chain_id = bytes.fromhex(doc["chain_id"])
                self.height = int(doc["height"])
                self.hash = bytes.fromhex(doc["hash"])
            except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
                raise MalformedInput(f"{self.path}: not a ledger mark ({exc})") from None

    def check(self, ledger: Ledger) -> int:
        """Refuse ``ledger`` if it went back below the mark or differs at it; move the mark up.

        Returns the ledger's height. Raises :class:`~dtxfast.errors.StateError` when the ledger
        is another chain, lower than the mark, or has another block at the mark's height.
        """
        chain = ledger.chain_id
        height = ledger.height
        if self.chain_id is not None:
            if not hmac.compare_digest(chain, self.chain_id):
                raise StateError(f"the ledger is another chain ({chain.hex()[:16]}…) than the one this node "
                                 f"saw ({self.chain_id.hex()[:16]}…; {self.path})")
            if height < self.height:
                raise StateError(f"the ledger went back: its height is {height}, this node saw {self.height} "
                                 f"({self.path}); refusing a ledger restored from an older copy")
            try:
                seen = ledger.block(self.height).hash
            except NotFound:
                seen = b""
            if not hmac.compare_digest(seen, self.hash):
                raise StateError(f"the ledger was rewritten: block {self.height} is not the one this node saw "
                                 f"({self.path})")
        if height > self.height or self.chain_id is None:
            self.chain_id, self.height, self.hash = chain, height, ledger.block(height).hash
            doc = {"chain_id": chain.hex(), "height": height, "hash": self.hash.hex()}
            with atomic_output(self.path, "w", encoding="utf-8") as fh:
                json.dump(doc, fh)
        return height
