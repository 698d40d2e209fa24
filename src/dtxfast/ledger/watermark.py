"""The highest block a node has seen, so it refuses a ledger that went back (issue 15).

A hash-chained ledger proves its own history, but not that it is the whole history: a SQLite file
restored from yesterday's backup, or a rewritten tail, still verifies. A node therefore keeps, in
its data directory, the chain id, the highest height it has seen and that block's hash, and
before it uses the ledger again checks that the ledger has the same chain id, is at least that
high, and still has that block with that hash. A ledger that went back (or forked at or below the
mark) is refused with :class:`~dtxfast.errors.StateError`; otherwise the mark moves up.

Who keeps a mark, and why
-------------------------
* **Nodes** (storage, DataOwner, executor): in their data directory, checked at registration and
  at every heartbeat (:meth:`HighWaterMark.check`): they act on the ledger unattended.
* **CLI commands that act on the ledger with the user's key**: ``dtx file upload|download|extend|
  approve|reject|revoke``, ``dtx monitor``, ``dtx task publish|start|result``. Each appends a
  transaction, or acts on what the ledger says (fetches, decrypts, challenges, repairs): on a
  ledger that went back it would, say, re-approve an application revoked since, or repair a file
  whose deletion was rolled back. The mark is kept beside the key, in ``<key>.marks/<chain id>.json``
  (:meth:`HighWaterMark.for_key`, one per chain, so a user of several ledgers keeps one mark each);
  the command checks it before it acts (:meth:`verify`, read-only) and moves it up only when it
  succeeded (:meth:`observe` then :meth:`record`), so a refused or failed command writes nothing.
  ``dtx monitor``, which runs until stopped, also checks and moves it before every round, as
  nodes do at every heartbeat.
* **Not** the views (``dtx file list|show|applications``, ``dtx ledger info|show``, ``dtx nodes
  list``, ``dtx task list|show``) nor ``dtx ledger verify``: they take no key or only read, and
  looking at (or auditing) an old copy on purpose is what they are for; nothing acts on it.

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

    def __init__(self, path: str | os.PathLike[str], *, who: str = "this node") -> None:
        self.path = Path(path)
        #: who saw the mark, as error messages name it
        self.who = who
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

    @classmethod
    def for_key(cls, key_path: str | os.PathLike[str], chain_id: bytes) -> HighWaterMark:
        """The mark a user of key file ``key_path`` keeps for chain ``chain_id``:
        ``<key_path>.marks/<chain id hex>.json`` (see the module documentation)."""
        key = Path(key_path)
        return cls(key.with_name(key.name + ".marks") / f"{bytes(chain_id).hex()}.json", who=f"key {key.name}")

    def check(self, ledger: Ledger) -> int:
        """Refuse ``ledger`` if it went back below the mark or differs at it; move the mark up.

        Returns the ledger's height. Raises :class:`~dtxfast.errors.StateError` when the ledger
        is another chain, lower than the mark, or has another block at the mark's height.
        """
        height = self.verify(ledger)
        self.record(*self.observe(ledger))
        return height

    @staticmethod
    def observe(ledger: Ledger) -> tuple[bytes, int, bytes]:
        """``(chain id, height, tip hash)`` of ``ledger`` now (what :meth:`record` takes)."""
        height = ledger.height
        return ledger.chain_id, height, ledger.block(height).hash

    def record(self, chain_id: bytes, height: int, block_hash: bytes) -> None:
        """Move the mark up to ``height`` (written atomically; nothing written if it is not higher)."""
        if height > self.height or self.chain_id is None:
            self.chain_id, self.height, self.hash = chain_id, height, block_hash
            doc = {"chain_id": chain_id.hex(), "height": height, "hash": block_hash.hex()}
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_output(self.path, "w", encoding="utf-8") as fh:
                json.dump(doc, fh)

    def verify(self, ledger: Ledger) -> int:
        """Like :meth:`check`, without moving the mark (writes nothing); returns the height."""
        chain = ledger.chain_id
        height = ledger.height
        if self.chain_id is not None:
            if not hmac.compare_digest(chain, self.chain_id):
                raise StateError(f"the ledger is another chain ({chain.hex()[:16]}…) than the one {self.who} "
                                 f"saw ({self.chain_id.hex()[:16]}…; {self.path})")
            if height < self.height:
                raise StateError(f"the ledger went back: its height is {height}, {self.who} saw {self.height} "
                                 f"({self.path}); refusing a ledger restored from an older copy")
            try:
                seen = ledger.block(self.height).hash
            except NotFound:
                seen = b""
            if not hmac.compare_digest(seen, self.hash):
                raise StateError(f"the ledger was rewritten: block {self.height} is not the one {self.who} saw "
                                 f"({self.path})")
        return height
