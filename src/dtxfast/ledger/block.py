"""The chain's format: block headers, blocks, entries, receipts, and the chain's error types.

A block header covers its height, the previous block's hash, a time stamp, the root over its
entries (:func:`tx_root`: SHA-256 over the SHA-256 of each stored entry, in order) and their
count; the block's hash is SHA-256 over a domain prefix and the header's canonical msgpack bytes.
The genesis block (height 0) links to :data:`GENESIS_PREV`, holds no entries and carries
:data:`GENESIS_TAG` plus 16 random bytes, so every ledger has its own chain id (the genesis hash).

Examples
--------
>>> h = BlockHeader(1, GENESIS_PREV, 1_700_000_000_000, tx_root([b"tx"]), 1)
>>> BlockHeader.decode(h.encode()) == h, len(h.hash())
(True, 32)
>>> genesis = make_genesis(1_700_000_000_000)
>>> genesis.height, genesis.header.prev_hash == GENESIS_PREV, is_genesis(genesis)
(0, True, True)
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from typing import Any

import msgspec

from ..errors import InvalidProof, StateError
from .contract import object_id
from .tx import SignedTx, UnsignedTx

__all__ = [
    "GENESIS_PREV",
    "GENESIS_TAG",
    "Block",
    "BlockHeader",
    "ChainCorrupted",
    "ChainReport",
    "DuplicateTransaction",
    "Entry",
    "Receipt",
    "is_genesis",
    "make_genesis",
    "tx_root",
]

#: ``prev_hash`` of the genesis block
GENESIS_PREV = bytes(32)
#: prefix of the genesis block's ``extra`` field
GENESIS_TAG = b"dtxfast-genesis-v1"
_BLOCK_DOMAIN = b"dtxfast/ledger/block/v1\x00"


class ChainCorrupted(InvalidProof):
    """:meth:`Ledger.verify_chain` found a bad block; ``height`` is the first bad one."""

    def __init__(self, height: int, reason: str) -> None:
        super().__init__(f"ledger corrupted at height {height}: {reason}")
        self.height = height
        self.reason = reason


class DuplicateTransaction(StateError):
    """The same signed transaction is already on the chain (a replay)."""


class BlockHeader(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    """What a block's hash covers: height, previous hash, time, the hash of its entries, and
    ``state_root``, the hash of the whole contract state after the block
    (:mod:`~dtxfast.ledger.statehash`; empty in blocks written before headers carried it)."""

    height: int
    prev_hash: bytes
    time_ms: int
    tx_root: bytes
    n: int
    extra: bytes = b""
    state_root: bytes = b""

    def encode(self) -> bytes:
        """Canonical bytes (a header without a state root encodes as it did before the field
        existed, so older chains keep their hashes)."""
        if not self.state_root:
            return _hdr_encoder.encode((self.height, self.prev_hash, self.time_ms, self.tx_root,
                                        self.n, self.extra))
        return _hdr_encoder.encode(self)

    @classmethod
    def decode(cls, data: bytes) -> BlockHeader:
        """The header whose canonical bytes are ``data`` (msgspec's errors if they are not)."""
        return _hdr_decoder.decode(data)

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


def make_genesis(time_ms: int, state_root: bytes = b"") -> Block:
    """A fresh genesis block stamped ``time_ms`` (its random tag makes the chain id unique),
    committing to ``state_root`` (that of the empty state)."""
    header = BlockHeader(0, GENESIS_PREV, time_ms, tx_root([]), 0, GENESIS_TAG + os.urandom(16),
                         state_root)
    return Block(header, header.hash(), [])


def is_genesis(block: Block) -> bool:
    """True if ``block`` has the form of a genesis block (its hash is checked separately)."""
    return (block.header.prev_hash == GENESIS_PREV and not block.txs
            and block.header.extra.startswith(GENESIS_TAG))


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
