"""The abstract :class:`Ledger`: append, chain, verify; queries, subscriptions and health mixed in.

A ledger is written once over a few private storage methods a backend implements
(:class:`~dtxfast.ledger.memory.MemoryLedger`, :class:`~dtxfast.ledger.sqlite.SQLiteLedger`, a
replicated backend later); :mod:`dtxfast.ledger.backend` lists them. The concerns live in their
own modules:

* :mod:`~dtxfast.ledger.block`: the chain's format (headers, blocks, entries, receipts);
* :mod:`~dtxfast.ledger.backend`: the backend hooks, :class:`WriteTxn`, the in-memory state;
* :mod:`~dtxfast.ledger.sigcheck`: batched signature checks, in a process pool if asked;
* :mod:`~dtxfast.ledger.queries`, :mod:`~dtxfast.ledger.subscription`,
  :mod:`~dtxfast.ledger.health`: the read side, mixed into :class:`Ledger`.

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
import hmac
import operator
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ContextManager

import msgspec

from ..crypto.signatures import check_signatures
from ..errors import (
    DtxError,
    InvalidSignature,
    MalformedInput,
    NotFound,
    ParameterError,
    ProtocolError,
    StateError,
)
from . import contract
from .backend import MemoryState, MemoryTxn, WriteTxn
from .block import (
    GENESIS_PREV,
    Block,
    BlockHeader,
    ChainCorrupted,
    ChainReport,
    DuplicateTransaction,
    Entry,
    Receipt,
    is_genesis,
    make_genesis,
    tx_root,
)
from .health import LedgerHealth
from .records import RECORD_TYPES
from .sigcheck import SignatureChecker
from .statehash import EMPTY_ROOT, STATE_KEY, STATE_KIND, StateHash, StateTracker
from .subscription import LedgerSubscriptions, Subscription
from .tx import SignedTx, TxBody, UnsignedTx, sign_tx, signing_message

__all__ = ["Ledger"]

# The names this module defined before the split, still importable from here for code written
# against ``dtxfast.ledger.base`` (their homes are the modules named in the docstring).
_MOVED = (GENESIS_PREV, Block, BlockHeader, ChainCorrupted, ChainReport, DuplicateTransaction, Entry,
          Receipt, Subscription, WriteTxn, tx_root)


class _Admitted(msgspec.Struct):
    raw: bytes
    tx_id: bytes
    tx: UnsignedTx


class Ledger(LedgerHealth, LedgerSubscriptions):
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

    # --- backend hooks (the read hooks are declared by LedgerReader) --------------------

    @abc.abstractmethod
    def _write(self) -> ContextManager[WriteTxn]:
        """Open one atomic write transaction."""

    def close(self) -> None:
        """Release the backend's resources."""

    def __enter__(self: Any) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- chain --------------------------------------------------------------------------

    def _make_genesis(self, w: WriteTxn) -> None:
        w.add_block(make_genesis(self._clock(), EMPTY_ROOT), [])

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
        """The block at ``height``; NotFound if there is none (also for a height no backend can
        store, such as one beyond 64 bits)."""
        try:
            height = operator.index(height)
        except TypeError:
            raise ParameterError(f"a block height is an int, not {type(height).__name__}") from None
        if not 0 <= height < 1 << 62:
            raise NotFound(f"no block at height {height}")
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
        ok = check_signatures([t.sender for t in txs], [s.signature for s in signed],
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
            acc = StateHash.from_bytes(w.get(STATE_KIND, STATE_KEY))
            tracked = StateTracker(w, acc)
            for a in admitted:
                if a.tx_id in seen or w.has_tx(a.tx_id):
                    raise DuplicateTransaction(
                        f"transaction {a.tx_id.hex()[:16]}… is already on the ledger")
                seen.add(a.tx_id)
                contract.apply(tracked, a.tx, a.tx_id)
            tracked.apply()  # the state hash follows the records this block changed
            w.put(STATE_KIND, STATE_KEY, acc.to_bytes(), ())
            raws = [a.raw for a in admitted]
            header = BlockHeader(height + 1, prev, self._clock(), tx_root(raws), len(raws),
                                 state_root=acc.root())
            bhash = header.hash()
            entries = [Entry(height + 1, i, a.tx_id, a.tx) for i, a in enumerate(admitted)]
            w.add_block(Block(header, bhash, raws), entries)
        return [Receipt(e.tx_id.hex(), e.height, e.index, e.kind, e.object_id, bhash.hex())
                for e in entries]

    # --- verification -------------------------------------------------------------------

    def verify_chain(self, *, start: int = 0, batch: int = 1024, replay: bool = False,
                     workers: int = 1) -> ChainReport:
        """Re-check every block hash, link and signature from genesis, and the records served
        against the tip's state root (so a record changed behind the ledger's back is caught
        without a replay, in the time of one pass over the records).

        Parameters
        ----------
        start : int
            First height to check (links are checked from there on).
        batch : int
            Signatures checked per call of the batch verifier.
        replay : bool
            Also re-run the contract over every entry from genesis (each must be accepted again),
            check each block's state root against the replayed state, and compare that state
            with the backend's records record by record (naming the one that differs). Needs
            ``start=0`` and a ledger nobody appends to meanwhile (without ``replay``, appends by
            other processes during the check are verified too, and do not disturb it).
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
        orphans, first = self._r_orphans()
        if orphans:
            raise ChainCorrupted(first, f"{orphans} stored entries belong to no block (from height "
                                        f"{first}; the chain ends at height {tip}): a block was removed")
        sigs = SignatureChecker(workers)
        served = b""
        try:
            blocks, entries, last, store, root = self._verify_blocks(start, tip, batch, replay, sigs)
            if store is None and root:
                # Other processes may append while we read: compare the records with the root of
                # the block they belong to, read as one consistent (height, records) pair, and
                # verify the blocks appended meanwhile like the others.
                now, served = self._consistent_state()
                if now > tip:
                    more = list(self._r_blocks(tip + 1, tip + 2))
                    if more and not hmac.compare_digest(more[0].header.prev_hash, last):
                        raise ChainCorrupted(tip + 1, "previous-hash link is broken")
                    b2, e2, last, _, root2 = self._verify_blocks(tip + 1, now, batch, False, sigs)
                    blocks, entries, tip, root = blocks + b2, entries + e2, now, root2 or root
            sigs.drain()
        finally:
            sigs.close()
        if store is not None:
            self._compare_state(store, tip)
            served = self.state_hash().root() if root else b""
        if root and not hmac.compare_digest(served, root):
            raise ChainCorrupted(tip, "the records served do not match the tip's state root "
                                      "(state changed behind the ledger's back)")
        return ChainReport(blocks, entries, last.hex(), time.perf_counter() - t0)

    def _consistent_state(self, attempts: int = 100) -> tuple[int, bytes]:
        """``(height, state root of the records served)`` read with no append in between (every
        append adds a block, so an unchanged height before and after means none happened)."""
        for _ in range(attempts):
            h = self._r_height()
            root = self.state_hash().root()
            if self._r_height() == h:
                return h, root
        raise ProtocolError("the ledger changed during every attempt to read its state; verify it again")

    def state_hash(self) -> StateHash:
        """The hash of the records this backend serves, recomputed from all of them (what the
        tip's ``state_root`` must match; see :mod:`~dtxfast.ledger.statehash`)."""
        return StateHash.from_records(r for r in self._r_records() if r[0] != STATE_KIND)

    def _verify_blocks(self, start: int, tip: int, batch: int, replay: bool,
                       sigs: SignatureChecker
                       ) -> tuple[int, int, bytes, MemoryState | None, bytes]:
        def bad(height: int, reason: str) -> ChainCorrupted:
            sigs.drain()  # a bad signature at a lower height is reported first
            return ChainCorrupted(height, reason)

        store = MemoryState() if replay else None
        acc = StateHash()
        root = b""  # the state root of the last block that has one
        replay_ids: set[bytes] = set()
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
                if not is_genesis(b):
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
                if store is not None:
                    tid = stx.tx_id
                    txn = MemoryTxn(store)
                    tracked = StateTracker(txn, acc)
                    try:
                        if tid in replay_ids:
                            raise DuplicateTransaction("the same transaction appears twice")
                        contract.apply(tracked, t, tid)
                    except DtxError as exc:
                        raise bad(h, f"the contract refuses an entry ({exc})") from None
                    tracked.apply()
                    txn.commit()
                    replay_ids.add(tid)
            if b.header.state_root:
                root = b.header.state_root
                if store is not None and not hmac.compare_digest(acc.root(), root):
                    raise bad(h, "the state root does not match the replayed state")
            elif root:
                raise bad(h, "the block has no state root (earlier blocks have one)")
            n_entries += len(b.txs)
            if sigs.pending_count() >= batch:
                sigs.submit()
            expect_prev = b.hash
            last = b.hash
        if expected_height != tip + 1:
            raise bad(expected_height, f"block {expected_height} is missing")
        return expected_height - start, n_entries, last, store, root

    def _compare_state(self, store: MemoryState, tip: int) -> None:
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
