"""The embedded SQLite ledger backend: one file, WAL mode, one SQLite transaction per append.

* **Crash safety**: an append is acknowledged only after its SQLite transaction committed to the
  write-ahead log; a process killed with SIGKILL mid-append loses at most that unacknowledged
  append, never a torn entry (SQLite rolls back an incomplete transaction on the next open).
  ``durability="normal"`` (the default) survives a crash of the process; ``"full"`` also fsyncs
  every commit, to survive a power loss, at the cost of one disk flush per append.
* **Several processes**: every append takes SQLite's write lock (``BEGIN IMMEDIATE``) before it
  reads the chain tip and the state, so concurrent appenders on one machine serialise and none is
  lost; readers never block.
* Each thread uses its own connection; a forked child opens fresh ones.

Examples
--------
>>> import tempfile, os
>>> from dtxfast.ledger import SQLiteLedger
>>> path = os.path.join(tempfile.mkdtemp(), "ledger.db")
>>> led = SQLiteLedger(path, create=True)
>>> led.height, led.verify_chain().blocks
(0, 1)
>>> led.close()
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import msgspec

from ..errors import MalformedInput, NotFound, ParameterError, StateError
from .backend import WriteTxn
from .base import Ledger
from .block import Block, BlockHeader, Entry

__all__ = ["SCHEMA_VERSION", "SQLiteLedger"]

SCHEMA_VERSION = 1
# entry seq = height * _PER_BLOCK + index: the rowid orders entries and finds a block's entries
_PER_BLOCK = 1 << 20

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS blocks (
    height INTEGER PRIMARY KEY, hash BLOB NOT NULL, header BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY, tx_id BLOB NOT NULL UNIQUE, raw BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS objects (
    kind TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL, terms BLOB NOT NULL,
    PRIMARY KEY (kind, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS terms (
    kind TEXT NOT NULL, attr TEXT NOT NULL, value TEXT NOT NULL, key TEXT NOT NULL,
    PRIMARY KEY (kind, attr, value, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS terms_by_key ON terms (kind, key);
"""


_MISSING = object()
_terms_enc = msgspec.msgpack.Encoder()
_terms_dec = msgspec.msgpack.Decoder(list[tuple[str, str]])


class _SqlTxn(WriteTxn):
    __slots__ = ("_terms", "c")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.c = conn
        self._terms: dict[tuple[str, str], bytes | None] = {}  # index terms as read in this txn

    def get(self, kind: str, key: str) -> bytes | None:
        row = self.c.execute("SELECT value, terms FROM objects WHERE kind=? AND key=?",
                             (kind, key)).fetchone()
        if row is None:
            self._terms[(kind, key)] = None
            return None
        self._terms[(kind, key)] = row[1]
        return row[0]

    def put(self, kind: str, key: str, value: bytes, terms: Sequence[tuple[str, str]]) -> None:
        c = self.c
        new = sorted(set(terms))
        enc = _terms_enc.encode(new)
        old = self._terms.get((kind, key), _MISSING)
        if old is _MISSING:
            row = c.execute("SELECT terms FROM objects WHERE kind=? AND key=?", (kind, key)).fetchone()
            old = None if row is None else row[0]
        c.execute("INSERT OR REPLACE INTO objects (kind, key, value, terms) VALUES (?, ?, ?, ?)",
                  (kind, key, value, enc))
        self._terms[(kind, key)] = enc
        if old == enc:
            return
        have = set() if old is None else set(_terms_dec.decode(old))  # type: ignore[arg-type]
        gone = [t for t in have if t not in set(new)]
        if gone:
            c.executemany("DELETE FROM terms WHERE kind=? AND attr=? AND value=? AND key=?",
                          [(kind, a, v, key) for a, v in gone])
        add = [t for t in new if t not in have]
        if add:
            c.executemany("INSERT OR IGNORE INTO terms (kind, attr, value, key) VALUES (?, ?, ?, ?)",
                          [(kind, a, v, key) for a, v in add])

    def keys(self, kind: str, attr: str, value: str) -> list[str]:
        rows = self.c.execute("SELECT key FROM terms WHERE kind=? AND attr=? AND value=? ORDER BY key",
                              (kind, attr, value)).fetchall()
        return [r[0] for r in rows]

    def tip(self) -> tuple[int, bytes]:
        row = self.c.execute("SELECT height, hash FROM blocks ORDER BY height DESC LIMIT 1").fetchone()
        return (-1, b"") if row is None else (row[0], row[1])

    def has_tx(self, tx_id: bytes) -> bool:
        return self.c.execute("SELECT 1 FROM entries WHERE tx_id=?", (tx_id,)).fetchone() is not None

    def add_block(self, block: Block, entries: Sequence[Entry]) -> None:
        self.c.execute("INSERT INTO blocks (height, hash, header) VALUES (?, ?, ?)",
                       (block.height, block.hash, block.header.encode()))
        if len(entries) > _PER_BLOCK:
            raise ParameterError(f"a block holds at most {_PER_BLOCK} entries")
        base = block.height * _PER_BLOCK
        self.c.executemany(
            "INSERT INTO entries (seq, tx_id, raw) VALUES (?, ?, ?)",
            [(base + e.index, e.tx_id, raw) for e, raw in zip(entries, block.txs)],
        )


@contextlib.contextmanager
def _db_errors(path: Path) -> Iterator[None]:
    """SQLite's errors as dtxfast errors: a damaged file, or one that cannot be used right now."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        raise StateError(f"cannot use the ledger {path}: {exc}") from None
    except sqlite3.DatabaseError as exc:
        raise MalformedInput(f"the ledger file {path} is damaged: {exc}") from None


class SQLiteLedger(Ledger):
    """A ledger in one SQLite file (see :class:`~dtxfast.ledger.Ledger` and the module docs).

    Parameters
    ----------
    path : str or path
        The database file.
    create : bool
        Create the file and its genesis block if missing (default: it must exist).
    durability : {"normal", "full"}
        ``"normal"``: survives a killed process; ``"full"``: also a power loss (fsync per append).
    timeout : float
        Seconds to wait for another process's write lock.
    clock, max_skew_ms
        As for :class:`~dtxfast.ledger.Ledger`.

    Raises
    ------
    NotFound
        No ledger at ``path`` and ``create`` is false.
    MalformedInput
        The file is not a dtxfast ledger of a known schema.
    """

    def __init__(self, path: str | os.PathLike[str], *, create: bool = False,
                 durability: str = "normal", timeout: float = 30.0,
                 clock: Callable[[], int] | None = None, max_skew_ms: int | None = 600_000) -> None:
        super().__init__(clock=clock, max_skew_ms=max_skew_ms)
        if durability not in ("normal", "full"):
            raise ParameterError("durability is 'normal' or 'full'")
        self.path = Path(path)
        self.durability = durability
        self.timeout = timeout
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._thread_lock = threading.Lock()
        if not self.path.exists():
            if not create:
                raise NotFound(
                    f"no ledger at {self.path} (create one with: dtx ledger init -L {self.path})")
            if not self.path.parent.is_dir():
                raise NotFound(f"cannot create the ledger {self.path}: folder {self.path.parent} does not exist")
        elif self.path.is_dir():
            raise ParameterError(f"{self.path} is a directory, not a ledger file")
        else:
            # look before SQLite does: it would turn an empty or foreign file into a database
            with open(self.path, "rb") as fh:
                head = fh.read(16)
            if head != b"SQLite format 3\x00" and (head or not create):
                raise MalformedInput(f"{self.path} is not a dtxfast ledger "
                                     f"({'an empty file' if not head else 'not an SQLite file'})")
        conn = self._conn()
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        except sqlite3.OperationalError as exc:
            raise StateError(f"cannot open the ledger {self.path}: {exc}") from None
        except sqlite3.DatabaseError as exc:
            raise MalformedInput(f"{self.path} is not a dtxfast ledger ({exc})") from None
        if str(mode).lower() != "wal":
            raise StateError(f"cannot put {self.path} in WAL mode (got {mode})")
        self._init_schema(create)

    # --- connections --------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        loc = self._local
        conn = getattr(loc, "conn", None)
        if conn is not None and loc.pid == os.getpid():
            return conn
        conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None,
                               check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout={int(self.timeout * 1000)}")
            conn.execute(f"PRAGMA synchronous={'FULL' if self.durability == 'full' else 'NORMAL'}")
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise MalformedInput(f"{self.path} is not a dtxfast ledger ({exc})") from None
        loc.conn, loc.pid = conn, os.getpid()
        with self._conns_lock:
            self._conns.append(conn)
        return conn

    def close(self) -> None:
        """Close every connection this object opened (checkpointing the WAL when last out)."""
        with self._conns_lock:
            conns, self._conns = self._conns, []
        for c in conns:
            with contextlib.suppress(sqlite3.Error):
                c.close()
        self._local = threading.local()

    def _init_schema(self, create: bool) -> None:
        with _db_errors(self.path):
            self._init_schema_unchecked(create)

    def _init_schema_unchecked(self, create: bool) -> None:
        c = self._conn()
        try:
            c.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise StateError(f"cannot open the ledger {self.path}: {exc}") from None
        except sqlite3.DatabaseError as exc:
            raise MalformedInput(f"{self.path} is not a dtxfast ledger ({exc})") from None
        try:
            has_meta = c.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
            if not has_meta:
                other = c.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
                if other or not create:
                    raise MalformedInput(f"{self.path} is not a dtxfast ledger")
                for stmt in _SCHEMA.split(";"):
                    if stmt.strip():
                        c.execute(stmt)
                c.execute("INSERT INTO meta (key, value) VALUES ('schema', ?)", (SCHEMA_VERSION,))
            else:
                row = c.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
                if row is None or row[0] != SCHEMA_VERSION:
                    raise MalformedInput(f"{self.path}: unknown ledger schema {row and row[0]}")
            if c.execute("SELECT 1 FROM blocks WHERE height=0").fetchone() is None:
                self._make_genesis(_SqlTxn(c))
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise

    # --- backend hooks ------------------------------------------------------------------

    @contextlib.contextmanager
    def _write(self) -> Iterator[WriteTxn]:
        # threads of this process queue here rather than in SQLite's sleeping busy handler
        with self._thread_lock:
            yield from self._write_locked()

    def _write_locked(self) -> Iterator[WriteTxn]:
        c = self._conn()
        try:
            c.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:  # locked past the timeout, read-only file, ...
            raise StateError(f"cannot write to the ledger {self.path}: {exc}") from None
        except sqlite3.DatabaseError as exc:
            raise MalformedInput(f"the ledger file {self.path} is damaged: {exc}") from None
        try:
            with _db_errors(self.path):
                yield _SqlTxn(c)
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                c.execute("ROLLBACK")
            raise
        try:
            c.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            with contextlib.suppress(sqlite3.Error):
                c.execute("ROLLBACK")
            raise StateError(f"cannot commit to the ledger {self.path}: {exc}") from None

    def _r_get(self, kind: str, key: str) -> bytes | None:
        with _db_errors(self.path):
            row = self._conn().execute("SELECT value FROM objects WHERE kind=? AND key=?",
                                       (kind, key)).fetchone()
        return None if row is None else row[0]

    def _r_keys(self, kind: str, attr: str, value: str) -> list[str]:
        with _db_errors(self.path):
            return _SqlTxn(self._conn()).keys(kind, attr, value)

    def _r_records(self) -> Iterator[tuple[str, str, bytes]]:
        with _db_errors(self.path):
            rows = self._conn().execute("SELECT kind, key, value FROM objects").fetchall()
        return iter(rows)

    def _r_all(self, kind: str) -> list[str]:
        with _db_errors(self.path):
            rows = self._conn().execute("SELECT key FROM objects WHERE kind=? ORDER BY key",
                                        (kind,)).fetchall()
        return [r[0] for r in rows]

    def _r_height(self) -> int:
        with _db_errors(self.path):
            row = self._conn().execute("SELECT max(height) FROM blocks").fetchone()
        return -1 if row[0] is None else int(row[0])

    def _r_orphans(self) -> tuple[int, int]:
        with _db_errors(self.path):
            row = self._conn().execute(
                f"SELECT count(*), min(seq / {_PER_BLOCK}) FROM entries "
                f"WHERE seq / {_PER_BLOCK} NOT IN (SELECT height FROM blocks)").fetchone()
        return (0, -1) if not row[0] else (int(row[0]), int(row[1]))

    def _r_blocks(self, start: int, stop: int, chunk: int = 2048) -> Iterator[Block]:
        c = self._conn()
        lo = max(0, start)
        while lo < stop:
            hi = min(stop, lo + chunk)
            with _db_errors(self.path):
                c.execute("BEGIN")  # one snapshot for the headers and entries of this chunk
                try:
                    heads = c.execute("SELECT height, hash, header FROM blocks WHERE height >= ? "
                                      "AND height < ? ORDER BY height", (lo, hi)).fetchall()
                    rows = c.execute("SELECT seq, raw FROM entries WHERE seq >= ? AND seq < ? "
                                     "ORDER BY seq", (lo * _PER_BLOCK, hi * _PER_BLOCK)).fetchall()
                finally:
                    c.execute("COMMIT")
            by_h: dict[int, list[bytes]] = {}
            for seq, raw in rows:
                by_h.setdefault(seq // _PER_BLOCK, []).append(raw)
            for h, bhash, header in heads:
                try:
                    hdr = BlockHeader.decode(header)
                except Exception:  # a corrupted header still yields a block for verify_chain
                    hdr = BlockHeader(h, b"", 0, b"", -1, b"corrupt")
                yield Block(hdr, bhash, by_h.get(h, []))
            if not heads:
                return
            lo = hi
