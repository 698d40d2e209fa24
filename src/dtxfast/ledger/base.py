"""The :class:`Ledger` interface: append, chain, verify, query, subscribe, health.

Everything a ledger does is written once here, over a few private storage methods a backend
implements (:class:`~dtxfast.ledger.memory.MemoryLedger`, :class:`~dtxfast.ledger.sqlite.SQLiteLedger`,
a replicated backend later):

* ``_write()``: a context manager opening one atomic write transaction, yielding a
  :class:`WriteTxn` (state reads and writes for the contract, the chain tip, replay lookup,
  adding a block); leaving it with an exception rolls everything back;
* ``_r_get``, ``_r_keys``, ``_r_all``: read records and index lookups;
* ``_r_height``, ``_r_blocks``: read the chain;
* ``_wait(height, timeout)``: block until the chain is taller than ``height`` (polling by default).

Appending verifies the sender's signature (outside the write lock), refuses a transaction that is
for another chain, too far from the ledger's clock, or already on the chain, runs the contract
(:mod:`dtxfast.ledger.contract`) and writes one block, all in one backend transaction.

Examples
--------
>>> from dtxfast.ledger import MemoryLedger, NodeIdentity, RegisterNode
>>> led = MemoryLedger()
>>> node = NodeIdentity.generate()
>>> r = led.append(led.sign(node, RegisterNode(role="storage", address="127.0.0.1:7001")))
>>> r.height, led.get_node(node.node_id).role
(1, 'storage')
>>> led.verify_chain().blocks
2
"""

from __future__ import annotations

import abc
import collections
import contextlib
import hashlib
import hmac
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, ContextManager, TypeVar

import msgspec

from ..crypto.signatures import verify_batch
from ..errors import (
    DtxError,
    InvalidProof,
    InvalidSignature,
    MalformedInput,
    NotFound,
    ParameterError,
    StateError,
)
from . import contract
from .contract import HOUR_MS, StateView, object_id
from .health import GREEN, RED, FileHealth, HealthPolicy, NodeHealth, best, level_of, worst
from .records import (
    RECORD_TYPES,
    ApplicationRecord,
    ChallengeRecord,
    ChallengeStatus,
    FileRecord,
    HeartbeatBucket,
    MigrationRecord,
    NamespaceRecord,
    NodeRecord,
    Record,
    TaskRecord,
    decode_record,
)
from .tx import SignedTx, TxBody, UnsignedTx, kind_of, sign_tx, signing_message

__all__ = [
    "GENESIS_PREV",
    "Block",
    "BlockHeader",
    "ChainCorrupted",
    "ChainReport",
    "DuplicateTransaction",
    "Entry",
    "Ledger",
    "Receipt",
    "Subscription",
    "WriteTxn",
    "tx_root",
]

R = TypeVar("R", bound=Record)
_DEFAULT_POLICY = HealthPolicy()
GENESIS_PREV = bytes(32)
_BLOCK_DOMAIN = b"dtxfast/ledger/block/v1\x00"
_GENESIS_TAG = b"dtxfast-genesis-v1"


class ChainCorrupted(InvalidProof):
    """:meth:`Ledger.verify_chain` found a bad block; ``height`` is the first bad one."""

    def __init__(self, height: int, reason: str) -> None:
        super().__init__(f"ledger corrupted at height {height}: {reason}")
        self.height = height
        self.reason = reason


class DuplicateTransaction(StateError):
    """The same signed transaction is already on the chain (a replay)."""


class BlockHeader(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    """What a block's hash covers: height, previous hash, time, the hash of its entries."""

    height: int
    prev_hash: bytes
    time_ms: int
    tx_root: bytes
    n: int
    extra: bytes = b""

    def encode(self) -> bytes:
        """Canonical bytes."""
        return _hdr_encoder.encode(self)

    def hash(self) -> bytes:
        """SHA-256 over a domain prefix and the canonical bytes."""
        return hashlib.sha256(_BLOCK_DOMAIN + self.encode()).digest()


_hdr_encoder = msgspec.msgpack.Encoder()
_hdr_decoder = msgspec.msgpack.Decoder(BlockHeader)


def tx_root(raws: Sequence[bytes]) -> bytes:
    """SHA-256 over the SHA-256 of each stored entry, in order."""
    h = hashlib.sha256()
    for raw in raws:
        h.update(hashlib.sha256(raw).digest())
    return h.digest()


class Block(msgspec.Struct, frozen=True):
    """A block: its header, its hash, and the stored bytes of its entries (signed transactions)."""

    header: BlockHeader
    hash: bytes
    txs: list[bytes]

    @property
    def height(self) -> int:
        """The block's height (genesis is 0)."""
        return self.header.height

    def entries(self) -> list[Entry]:
        """The block's entries, decoded (signatures not re-checked)."""
        out = []
        for i, raw in enumerate(self.txs):
            stx = SignedTx.decode(raw)
            out.append(Entry(self.height, i, stx.tx_id, stx.unsigned()))
        return out


class Entry(msgspec.Struct, frozen=True):
    """One appended transaction, where it sits on the chain (what a subscription yields)."""

    height: int
    index: int
    tx_id: bytes
    tx: UnsignedTx

    @property
    def kind(self) -> str:
        """The transaction kind."""
        return self.tx.kind

    @property
    def sender(self) -> str:
        """The sender's node id."""
        return self.tx.sender_id

    @property
    def object_id(self) -> str:
        """The id of the object this entry created (file, task, application, challenge)."""
        return object_id(self.tx_id)

    def involves(self, node_id: str) -> bool:
        """True if ``node_id`` sent this entry or is named in it (an executor of a task, the node
        of a challenge, a slice holder, a migration's source or target)."""
        if self.tx.sender_id == node_id:
            return True
        return _names(msgspec.to_builtins(self.tx.body, builtin_types=(bytes,)), node_id)


def _names(value: Any, node_id: str) -> bool:
    if isinstance(value, str):
        return value == node_id
    if isinstance(value, dict):
        return any(_names(v, node_id) for v in value.values())
    if isinstance(value, list):
        return any(_names(v, node_id) for v in value)
    return False


class Receipt(msgspec.Struct, frozen=True):
    """What :meth:`Ledger.append` acknowledges: the entry is durable at this height."""

    tx_id: str
    height: int
    index: int
    kind: str
    object_id: str
    block_hash: str


class ChainReport(msgspec.Struct, frozen=True):
    """Result of a successful :meth:`Ledger.verify_chain`."""

    blocks: int
    entries: int
    tip_hash: str
    seconds: float


class _Admitted(msgspec.Struct):
    raw: bytes
    tx_id: bytes
    tx: UnsignedTx


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


class Subscription:
    """A running :meth:`Ledger.watch`: a thread calling back for each new entry; ``close()`` stops it."""

    def __init__(self, ledger: Ledger, callback: Callable[[Entry], Any], from_height: int,
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


_SORT = {
    NodeRecord: lambda r: (r.registered_ms, r.node_id),
    NamespaceRecord: lambda r: (r.created_ms, r.ns_id),
    FileRecord: lambda r: (r.published_ms, r.file_id),
    ApplicationRecord: lambda r: (r.applied_ms, r.application_id),
    TaskRecord: lambda r: (r.published_ms, r.task_id),
    ChallengeRecord: lambda r: (r.issued_ms, r.challenge_id),
    MigrationRecord: lambda r: (r.at_ms, r.migration_id),
}


def _verify_chunk(keys: list[bytes], sigs: list[bytes], msgs: list[bytes]) -> list[bool]:
    return verify_batch(keys, sigs, msgs)


class _SignatureChecker:
    """Checks signatures in batches, here or in worker processes, reporting failures in order."""

    def __init__(self, workers: int) -> None:
        self.heights: list[int] = []
        self.keys: list[bytes] = []
        self.sigs: list[bytes] = []
        self.msgs: list[bytes] = []
        self.inflight: collections.deque[tuple[list[int], Any]] = collections.deque()
        self.workers = workers
        self.pool: Any = None
        if workers > 1:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            self.pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))

    def add(self, height: int, key: bytes, sig: bytes, msg: bytes) -> None:
        self.heights.append(height)
        self.keys.append(key)
        self.sigs.append(sig)
        self.msgs.append(msg)

    def pending_count(self) -> int:
        return len(self.heights)

    @staticmethod
    def _check(heights: list[int], ok: list[bool]) -> None:
        for h, good in zip(heights, ok):
            if not good:
                raise ChainCorrupted(h, "a signature does not verify")

    def submit(self) -> None:
        if not self.heights:
            return
        heights, keys, sigs, msgs = self.heights, self.keys, self.sigs, self.msgs
        self.heights, self.keys, self.sigs, self.msgs = [], [], [], []
        if self.pool is None:
            self._check(heights, verify_batch(keys, sigs, msgs))
            return
        self.inflight.append((heights, self.pool.submit(_verify_chunk, keys, sigs, msgs)))
        while len(self.inflight) > 2 * self.workers:  # bound memory; check the oldest first
            done_heights, fut = self.inflight.popleft()
            self._check(done_heights, fut.result())

    def drain(self) -> None:
        self.submit()
        while self.inflight:
            heights, fut = self.inflight.popleft()
            self._check(heights, fut.result())

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None


class Ledger(abc.ABC):
    """A signed, hash-chained ledger with the dtxfast contract; see the module docs.

    Parameters
    ----------
    clock : callable, optional
        Returns the time in milliseconds (default: the system clock); stamps blocks and bounds
        transaction timestamps.
    max_skew_ms : int or None
        Refuse transactions whose timestamp is further than this from ``clock()`` (default 10
        minutes; None disables the check, e.g. to import history).
    """

    def __init__(self, *, clock: Callable[[], int] | None = None,
                 max_skew_ms: int | None = 600_000) -> None:
        self._clock = clock or (lambda: int(time.time() * 1000))
        self.max_skew_ms = max_skew_ms
        self._chain_id: bytes | None = None

    # --- backend hooks ------------------------------------------------------------------

    @abc.abstractmethod
    def _write(self) -> ContextManager[WriteTxn]:
        """Open one atomic write transaction."""

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
    def _r_blocks(self, start: int, stop: int) -> Iterator[Block]:
        """Blocks ``start <= height < stop`` in order."""

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

    def close(self) -> None:
        """Release the backend's resources."""

    def __enter__(self: Any) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- chain --------------------------------------------------------------------------

    def _make_genesis(self, w: WriteTxn) -> None:
        header = BlockHeader(0, GENESIS_PREV, self._clock(), tx_root([]), 0,
                             _GENESIS_TAG + os.urandom(16))
        w.add_block(Block(header, header.hash(), []), [])

    @property
    def chain_id(self) -> bytes:
        """The ledger's id: the hash of its genesis block (every transaction names it)."""
        if self._chain_id is None:
            genesis = self.block(0)
            self._chain_id = genesis.hash
        return self._chain_id

    @property
    def height(self) -> int:
        """Height of the last block (genesis is 0)."""
        return self._r_height()

    def block(self, height: int) -> Block:
        """The block at ``height``; NotFound if there is none."""
        for b in self._r_blocks(height, height + 1):
            return b
        raise NotFound(f"no block at height {height}")

    def blocks(self, start: int = 0, stop: int | None = None) -> Iterator[Block]:
        """Blocks from ``start`` up to (excluding) ``stop`` (default: the tip)."""
        end = self._r_height() + 1 if stop is None else stop
        return self._r_blocks(start, end)

    def entries(self, start: int = 1, stop: int | None = None) -> Iterator[Entry]:
        """Decoded entries of blocks ``start <= height < stop``."""
        for b in self.blocks(start, stop):
            yield from b.entries()

    def now_ms(self) -> int:
        """The ledger's clock (milliseconds)."""
        return self._clock()

    # --- append -------------------------------------------------------------------------

    def sign(self, identity: Any, body: TxBody, *, ts_ms: int | None = None) -> SignedTx:
        """Sign ``body`` by ``identity`` for this ledger (its chain id, its clock)."""
        return sign_tx(identity, body, chain_id=self.chain_id,
                       ts_ms=self._clock() if ts_ms is None else ts_ms)

    def submit(self, identity: Any, body: TxBody, *, ts_ms: int | None = None) -> Receipt:
        """Sign and append in one call."""
        return self.append(self.sign(identity, body, ts_ms=ts_ms))

    def _admit(self, items: Sequence[SignedTx | bytes]) -> list[_Admitted]:
        signed = [SignedTx.decode(t) if isinstance(t, (bytes, bytearray, memoryview)) else t
                  for t in items]
        txs = []
        for s in signed:
            if not isinstance(s, SignedTx):
                raise ParameterError("append takes SignedTx objects or their bytes")
            txs.append(s.unsigned())
        ok = verify_batch([t.sender for t in txs], [s.signature for s in signed],
                          [signing_message(s.payload) for s in signed])
        chain = self.chain_id
        now = self._clock()
        out = []
        for s, t, good in zip(signed, txs, ok):
            if not good:
                raise InvalidSignature(f"signature of a {t.kind} transaction does not verify")
            if not hmac.compare_digest(t.chain_id, chain):
                raise InvalidSignature("transaction was signed for another ledger (chain id)")
            if self.max_skew_ms is not None and abs(t.ts_ms - now) > self.max_skew_ms:
                raise StateError(f"transaction timestamp is more than {self.max_skew_ms} ms "
                                 "from the ledger's clock")
            out.append(_Admitted(s.encode(), s.tx_id, t))
        return out

    def append(self, tx: SignedTx | bytes) -> Receipt:
        """Check one signed transaction against the contract and append it as one block.

        Returns
        -------
        Receipt
            Once returned, the entry is durable (it survives a crash of this process).

        Raises
        ------
        InvalidSignature
            Bad signature, or signed for another ledger.
        DuplicateTransaction
            The same transaction is already on the chain.
        Unauthorized, StateError, NotFound, ParameterError, MalformedInput
            Refused by the contract or ill-formed; nothing is appended.
        """
        return self.append_many([tx])[0]

    def append_many(self, txs: Sequence[SignedTx | bytes]) -> list[Receipt]:
        """Append several transactions as one block, all or nothing (in order: later ones see
        the effects of earlier ones)."""
        if not txs:
            raise ParameterError("append_many needs at least one transaction")
        admitted = self._admit(txs)
        seen: set[bytes] = set()
        with self._write() as w:
            height, prev = w.tip()
            for a in admitted:
                if a.tx_id in seen or w.has_tx(a.tx_id):
                    raise DuplicateTransaction(
                        f"transaction {a.tx_id.hex()[:16]}… is already on the ledger")
                seen.add(a.tx_id)
                contract.apply(w, a.tx, a.tx_id)
            raws = [a.raw for a in admitted]
            header = BlockHeader(height + 1, prev, self._clock(), tx_root(raws), len(raws))
            bhash = header.hash()
            entries = [Entry(height + 1, i, a.tx_id, a.tx) for i, a in enumerate(admitted)]
            w.add_block(Block(header, bhash, raws), entries)
        return [Receipt(e.tx_id.hex(), e.height, e.index, e.kind, e.object_id, bhash.hex())
                for e in entries]

    # --- verification -------------------------------------------------------------------

    def verify_chain(self, *, start: int = 0, batch: int = 1024, replay: bool = False,
                     workers: int = 1) -> ChainReport:
        """Re-check every block hash, link and signature from genesis.

        Parameters
        ----------
        start : int
            First height to check (links are checked from there on).
        batch : int
            Signatures checked per call of the batch verifier.
        replay : bool
            Also re-run the contract over every entry from genesis (each must be accepted again)
            and compare the resulting state with the backend's records, so a record changed
            behind the ledger's back is found too. Needs ``start=0``.
        workers : int
            Processes that check signatures in parallel (1: all in this process). Worth it from
            some ten thousand entries on; the result, and the first bad height, are the same.

        Returns
        -------
        ChainReport

        Raises
        ------
        ChainCorrupted
            With ``.height`` the first bad block and ``.reason``.

        Examples
        --------
        >>> from dtxfast.ledger import MemoryLedger
        >>> MemoryLedger().verify_chain().entries
        0
        """
        t0 = time.perf_counter()
        if replay and start != 0:
            raise ParameterError("a replay starts from genesis (start=0)")
        if workers < 1 or batch < 1:
            raise ParameterError("workers and batch must be at least 1")
        tip = self._r_height()
        if tip < 0:
            raise ChainCorrupted(0, "no genesis block")
        sigs = _SignatureChecker(workers)
        try:
            blocks, entries, last, store = self._verify_blocks(start, tip, batch, replay, sigs)
            sigs.drain()
        finally:
            sigs.close()
        if replay:
            self._compare_state(store, tip)
        return ChainReport(blocks, entries, last.hex(), time.perf_counter() - t0)

    def _verify_blocks(self, start: int, tip: int, batch: int, replay: bool,
                       sigs: _SignatureChecker) -> tuple[int, int, bytes, Any]:
        def bad(height: int, reason: str) -> ChainCorrupted:
            sigs.drain()  # a bad signature at a lower height is reported first
            return ChainCorrupted(height, reason)

        store: Any = None
        replay_ids: set[bytes] = set()
        if replay:
            from .memory import _MemTxn, _Store

            store = _Store()
        chain = None if start == 0 else self.chain_id
        expect_prev = None
        n_entries = 0
        last = b""
        expected_height = start
        for b in self._r_blocks(start, tip + 1):
            h = b.header.height
            if h != expected_height:
                raise bad(expected_height, f"block {expected_height} is missing")
            expected_height += 1
            if not hmac.compare_digest(b.header.hash(), b.hash):
                raise bad(h, "block hash does not match its header")
            if h == 0:
                if (b.header.prev_hash != GENESIS_PREV or b.txs
                        or not b.header.extra.startswith(_GENESIS_TAG)):
                    raise bad(0, "not a genesis block")
                chain = b.hash
            elif expect_prev is not None and not hmac.compare_digest(b.header.prev_hash, expect_prev):
                raise bad(h, "previous-hash link is broken")
            if b.header.n != len(b.txs) or not hmac.compare_digest(tx_root(b.txs), b.header.tx_root):
                raise bad(h, "entries do not match the block's hash")
            for raw in b.txs:
                try:
                    stx = SignedTx.decode(raw)
                    t = stx.unsigned()
                except MalformedInput as exc:
                    raise bad(h, f"an entry does not decode ({exc})") from None
                if t.chain_id != chain:
                    raise bad(h, "an entry names another chain")
                sigs.add(h, t.sender, stx.signature, signing_message(stx.payload))
                if replay:
                    tid = stx.tx_id
                    txn = _MemTxn(store)
                    try:
                        if tid in replay_ids:
                            raise DuplicateTransaction("the same transaction appears twice")
                        contract.apply(txn, t, tid)
                    except DtxError as exc:
                        raise bad(h, f"the contract refuses an entry ({exc})") from None
                    txn.commit()
                    replay_ids.add(tid)
            n_entries += len(b.txs)
            if sigs.pending_count() >= batch:
                sigs.submit()
            expect_prev = b.hash
            last = b.hash
        if expected_height != tip + 1:
            raise bad(expected_height, f"block {expected_height} is missing")
        return expected_height - start, n_entries, last, store

    def _compare_state(self, store: Any, tip: int) -> None:
        for kind in RECORD_TYPES:
            mine = set(self._r_all(kind))
            theirs = store.by_kind.get(kind, set())
            if mine != theirs:
                extra, missing = sorted(mine - theirs), sorted(theirs - mine)
                raise ChainCorrupted(tip, f"{kind} records differ from the chain's "
                                          f"(not on the chain: {extra[:3]}, missing: {missing[:3]})")
            for key in sorted(mine):
                if self._r_get(kind, key) != store.objects[(kind, key)]:
                    raise ChainCorrupted(tip, f"{kind} {key} differs from the chain's")

    # --- subscription -------------------------------------------------------------------

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

    # --- queries ------------------------------------------------------------------------

    def _load(self, cls: type[R], key: str) -> R | None:
        data = self._r_get(cls.KIND, key)
        return None if data is None else decode_record(cls, data)

    def _need(self, cls: type[R], key: str, what: str) -> R:
        rec = self._load(cls, key)
        if rec is None:
            raise NotFound(f"{what} {key} does not exist")
        return rec

    def _query(self, cls: type[R], **terms: str | None) -> list[R]:
        keys: set[str] | None = None
        for attr, value in terms.items():
            if value is None:
                continue
            found = set(self._r_keys(cls.KIND, attr, value))
            keys = found if keys is None else keys & found
        if keys is None:
            keys = set(self._r_all(cls.KIND))
        recs = [r for r in (self._load(cls, k) for k in keys) if r is not None]
        return sorted(recs, key=_SORT[cls])

    def get_node(self, node_id: str) -> NodeRecord:
        """A registered node; NotFound otherwise."""
        return self._need(NodeRecord, node_id, "node")

    def get_namespace(self, ns_id: str) -> NamespaceRecord:
        """A namespace by ``owner/name``."""
        return self._need(NamespaceRecord, ns_id, "namespace")

    def get_file(self, file_id: str) -> FileRecord:
        """A file's metadata."""
        return self._need(FileRecord, file_id, "file")

    def get_application(self, application_id: str) -> ApplicationRecord:
        """An executor's application to use a file."""
        return self._need(ApplicationRecord, application_id, "application")

    def get_task(self, task_id: str) -> TaskRecord:
        """A task."""
        return self._need(TaskRecord, task_id, "task")

    def get_challenge(self, challenge_id: str) -> ChallengeRecord:
        """A storage challenge."""
        return self._need(ChallengeRecord, challenge_id, "challenge")

    def list_nodes(self, *, role: str | None = None) -> list[NodeRecord]:
        """Registered nodes (with their last heartbeat), by registration time."""
        return self._query(NodeRecord, role=role)

    def list_namespaces(self, *, owner: str | None = None) -> list[NamespaceRecord]:
        """Namespaces, optionally of one owner."""
        return self._query(NamespaceRecord, owner=owner)

    def list_files(self, *, owner: str | None = None, namespace: str | None = None,
                   node: str | None = None) -> list[FileRecord]:
        """Files by owner, namespace (``owner/name``) and/or a node holding a replica."""
        return self._query(FileRecord, owner=owner, namespace=namespace, node=node)

    def list_applications(self, *, file_id: str | None = None, executor: str | None = None,
                          owner: str | None = None, status: str | None = None
                          ) -> list[ApplicationRecord]:
        """Applications to use files, filtered."""
        return self._query(ApplicationRecord, file=file_id, executor=executor, owner=owner,
                           status=status)

    def list_tasks(self, *, status: str | None = None, executor: str | None = None,
                   requester: str | None = None) -> list[TaskRecord]:
        """Tasks by status, named executor and/or requester, by publication time."""
        return self._query(TaskRecord, status=status, executor=executor, requester=requester)

    def list_challenges(self, *, node: str | None = None, file_id: str | None = None,
                        status: str | None = None) -> list[ChallengeRecord]:
        """Storage challenges, filtered."""
        return self._query(ChallengeRecord, node=node, file=file_id, status=status)

    def list_migrations(self, *, file_id: str | None = None) -> list[MigrationRecord]:
        """Slice migrations, optionally of one file."""
        return self._query(MigrationRecord, file=file_id)

    # --- health -------------------------------------------------------------------------

    def node_health(self, node_id: str, *, now_ms: int | None = None,
                    policy: HealthPolicy = _DEFAULT_POLICY) -> NodeHealth:
        """A node's health over the trailing window (see :mod:`dtxfast.ledger.health`)."""
        node = self.get_node(node_id)
        now = self._clock() if now_ms is None else now_ms
        start = now - policy.window_ms
        proved = failed = 0
        for key in self._r_keys(ChallengeRecord.KIND, "node", node_id):
            ch = self._load(ChallengeRecord, key)
            if ch is None or not (start < ch.resolved_ms <= now):
                continue
            if ch.status == ChallengeStatus.PROVED:
                proved += 1
            elif ch.status == ChallengeStatus.FAILED:
                failed += 1
        first_hour = max(start, node.registered_ms) // HOUR_MS
        last_hour = now // HOUR_MS
        expected = max(1, last_hour - first_hour + 1)
        beats = 0
        for hour in range(first_hour, last_hour + 1):
            if self._r_get(HeartbeatBucket.KIND, f"{node_id}:{hour}") is not None:
                beats += 1
        ch_ratio = proved / (proved + failed) if proved + failed else 1.0
        hb_ratio = min(1.0, beats / expected)
        score = policy.challenge_weight * ch_ratio + policy.heartbeat_weight * hb_ratio
        level = level_of(score, policy) if node.online else RED
        return NodeHealth(node_id, level, round(score, 6), proved, failed, beats, expected, node.online)

    def file_health(self, file_id: str, *, now_ms: int | None = None,
                    policy: HealthPolicy = _DEFAULT_POLICY) -> FileHealth:
        """A file's health: each slice as its best replica node, the file as its worst slice."""
        f = self.get_file(file_id)
        now = self._clock() if now_ms is None else now_ms
        cache: dict[str, str] = {}

        def level(n: str) -> str:
            if n not in cache:
                try:
                    cache[n] = self.node_health(n, now_ms=now, policy=policy).level
                except NotFound:
                    cache[n] = RED
            return cache[n]

        slices = {s.slice_id: best([level(n) for n in s.nodes]) for s in f.slices}
        overall = worst(list(slices.values())) if f.is_live(now) else RED
        return FileHealth(file_id, overall, slices)


_unused = (contextlib, GREEN, kind_of)
