"""SHA-256 Merkle trees over fixed-size chunks, with single-leaf proofs and multi-proofs.

A storage node proves that it still holds a replica by revealing a few chunks and the Merkle
proofs that tie them to the replica's root, recorded in the signed file metadata. Trees are
built streamed (:class:`MerkleBuilder` takes the data piece by piece) by a compiled kernel
that hashes with OpenSSL's SHA-256 outside the GIL, and proofs of many replicas are verified
in one parallel batch (:func:`check_multiproofs`).

Tree shape and domain separation
--------------------------------
The data is cut into chunks of ``chunk_size`` bytes; the last chunk may be shorter (never
empty). With ``||`` for concatenation:

* leaf hash ``= SHA-256(0x00 || chunk)``
* node hash ``= SHA-256(0x01 || left || right)``
* a level with an odd number of nodes promotes its last node unchanged to the next level
  (it is *not* paired with a copy of itself);
* the root is the single node of the top level. No data (zero chunks) has the root
  ``SHA-256(b"")``, for which there are no proofs.

This is exactly the Merkle tree hash of RFC 6962 (Certificate Transparency), which splits at the
largest power of two below the leaf count: promoting unpaired nodes bottom-up builds the same
left-balanced tree, so roots and single-leaf paths agree with RFC 6962 implementations (the tests
check this against pymerkle).

The one-byte prefixes separate the two domains: a leaf hash is never the hash of 65 bytes that
start with ``0x01``, so an inner node can never be passed off as a leaf (the classic second
preimage where a prover presents ``left || right`` as a chunk), and a chunk can never be passed
off as an inner node. Promoting instead of duplicating avoids the other classic ambiguity (a
tree over ``[a, b, c]`` and one over ``[a, b, c, c]`` having the same root). A proof fixes its
leaf positions and the leaf count, and a verifier must take both from its own records (the
metadata), never from the prover: :mod:`dtxfast.protocols.storage` does so.

Multi-proof layout
------------------
A proof for the sorted, distinct leaf indices ``I`` of a tree with ``n`` leaves lists the sibling
hashes that cannot be computed from the revealed chunks, level by level from the leaves up, and
within a level in increasing position. A single-leaf proof (:class:`MerkleProof`) is the case
``|I| = 1``: its path, from the leaf up, skips the levels where the node is promoted.

Examples
--------
>>> from dtxfast.crypto.merkle import MerkleTree
>>> data = bytes(range(256)) * 40                  # 10240 bytes: chunks of 4096, 4096, 2048
>>> tree = MerkleTree.from_bytes(data, chunk_size=4096)
>>> tree.leaf_count
3
>>> proof = tree.prove(2)
>>> proof.verify(tree.root, data[8192:])          # None, or raises InvalidProof
>>> proof.is_valid(tree.root, data[:4096])
False
>>> multi = tree.prove_many([0, 2])
>>> multi.verify(tree.root, [data[:4096], data[8192:]])
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

from .._backend import load_kernel, num_threads
from .._deprecated import renamed as _renamed
from ..errors import InvalidProof, ParameterError

_kernel, _info = load_kernel("_merkle", "dtxfast.crypto._merkle_py")

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "EMPTY_ROOT",
    "HASH_SIZE",
    "LEAF_PREFIX",
    "NODE_PREFIX",
    "MerkleBuilder",
    "MerkleMultiProof",
    "MerkleProof",
    "MerkleTree",
    "check_multiproofs",
    "leaf_hash",
    "merkle_root",
    "node_hash",
]

HASH_SIZE = 32
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()
#: default Merkle chunk (leaf) size in bytes
DEFAULT_CHUNK_SIZE = 4096
#: largest chunk size accepted (a chunk is revealed whole in an answer)
MAX_CHUNK_SIZE = 64 * 1024 * 1024
_STREAM_BLOCK = 4 * 1024 * 1024


def leaf_hash(chunk: bytes) -> bytes:
    """``SHA-256(0x00 || chunk)``, the hash of one leaf."""
    h = hashlib.sha256(LEAF_PREFIX)
    h.update(chunk)
    return h.digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``, the hash of an inner node."""
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def _check_chunk_size(chunk_size: int) -> int:
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or not 1 <= chunk_size <= MAX_CHUNK_SIZE:
        raise ParameterError(f"chunk_size must be an int in [1, {MAX_CHUNK_SIZE}], not {chunk_size!r}")
    return chunk_size


class MerkleBuilder:
    """Build a :class:`MerkleTree` from data given piece by piece (never all in memory).

    Parameters
    ----------
    chunk_size : int, default 4096
        Leaf size in bytes.
    threads : int, optional
        Threads of the leaf-hashing kernel (default :func:`dtxfast.num_threads`).

    Examples
    --------
    >>> b = MerkleBuilder(chunk_size=4)
    >>> b.update(b"abcdef"); b.update(b"gh"); b.update(b"i")
    >>> tree = b.finalize()
    >>> tree.leaf_count, tree.size
    (3, 9)
    >>> tree.root == MerkleTree.from_bytes(b"abcdefghi", chunk_size=4).root
    True
    """

    __slots__ = ("_chunk_size", "_done", "_leaves", "_pending", "_size", "_threads")

    def __init__(self, chunk_size: int = DEFAULT_CHUNK_SIZE, threads: int | None = None) -> None:
        self._chunk_size = _check_chunk_size(chunk_size)
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise ParameterError("threads must be a positive int")
        self._threads = threads
        self._leaves = bytearray()
        self._pending = bytearray()
        self._size = 0
        self._done = False

    def _hash_full(self, buf: Any) -> None:
        n = len(buf) // self._chunk_size
        out = bytearray(n * HASH_SIZE)
        threads = (self._threads or num_threads()) if n > 1 else 1
        _kernel.hash_leaves(buf, self._chunk_size, out, threads)
        self._leaves += out

    def update(self, data: bytes | bytearray | memoryview) -> None:
        """Append ``data`` (any length) to the data being committed to."""
        if self._done:
            raise ParameterError("update() after finalize()")
        mv = memoryview(data).cast("B")
        self._size += len(mv)
        cs = self._chunk_size
        if self._pending:
            take = min(cs - len(self._pending), len(mv))
            self._pending += mv[:take]
            mv = mv[take:]
            if len(self._pending) == cs:
                self._hash_full(self._pending)
                self._pending = bytearray()
        full = (len(mv) // cs) * cs
        if full:
            self._hash_full(mv[:full])
        if full < len(mv):
            self._pending += mv[full:]

    def finalize(self) -> MerkleTree:
        """Hash the last (short) chunk and the inner levels; returns the tree."""
        if self._done:
            raise ParameterError("finalize() called twice")
        self._done = True
        if self._pending:
            out = bytearray(HASH_SIZE)
            _kernel.hash_leaves(self._pending, self._chunk_size, out, 1)
            self._leaves += out
            self._pending = bytearray()
        return MerkleTree._from_leaves(bytes(self._leaves), self._chunk_size, self._size, self._threads)


class MerkleTree:
    """A Merkle tree kept as its levels of hashes (32 bytes per leaf and per inner node).

    Build one with :meth:`from_bytes`, :meth:`from_stream` or :class:`MerkleBuilder`; the data
    itself is not kept, so a prover reveals chunks from its own storage.

    Attributes
    ----------
    root : bytes
        The 32-byte root.
    leaf_count : int
        Number of chunks.
    chunk_size : int
        Leaf size in bytes.
    size : int
        Length of the data in bytes.
    """

    __slots__ = ("_levels", "chunk_size", "size")
    _levels: list[bytes]
    chunk_size: int
    size: int

    def __init__(self) -> None:  # pragma: no cover - use the constructors
        raise TypeError("use MerkleTree.from_bytes / from_stream / MerkleBuilder")

    @classmethod
    def _from_leaves(cls, leaves: bytes, chunk_size: int, size: int, threads: int | None = None) -> MerkleTree:
        self = object.__new__(cls)
        self.chunk_size = chunk_size
        self.size = size
        levels = [leaves]
        while len(levels[-1]) > HASH_SIZE:
            prev = levels[-1]
            m = len(prev) // HASH_SIZE
            out = bytearray(((m + 1) // 2) * HASH_SIZE)
            _kernel.hash_level(prev, out, (threads or num_threads()) if m >= 256 else 1)
            levels.append(bytes(out))
        self._levels = levels
        return self

    @classmethod
    def from_bytes(
        cls, data: bytes | bytearray | memoryview, chunk_size: int = DEFAULT_CHUNK_SIZE, threads: int | None = None
    ) -> MerkleTree:
        """Tree over ``data`` held in memory."""
        builder = MerkleBuilder(chunk_size, threads)
        builder.update(data)
        return builder.finalize()

    @classmethod
    def from_stream(
        cls, stream: IO[bytes], chunk_size: int = DEFAULT_CHUNK_SIZE, block_size: int = _STREAM_BLOCK,
        threads: int | None = None,
    ) -> MerkleTree:
        """Tree over everything read from a binary stream, ``block_size`` bytes at a time."""
        builder = MerkleBuilder(chunk_size, threads)
        while True:
            block = stream.read(block_size)
            if not block:
                break
            builder.update(block)
        return builder.finalize()

    @property
    def root(self) -> bytes:
        if not self._levels[0]:
            return EMPTY_ROOT
        return self._levels[-1]

    @property
    def leaf_count(self) -> int:
        return len(self._levels[0]) // HASH_SIZE

    @property
    def depth(self) -> int:
        """Number of levels above the leaves."""
        return len(self._levels) - 1

    def leaf(self, index: int) -> bytes:
        """The hash of leaf ``index``."""
        self._check_index(index)
        return self._levels[0][index * HASH_SIZE : (index + 1) * HASH_SIZE]

    def chunk_length(self, index: int) -> int:
        """Length in bytes of chunk ``index`` (the last one may be short)."""
        self._check_index(index)
        return min(self.chunk_size, self.size - index * self.chunk_size)

    def _check_index(self, index: int) -> None:
        if not isinstance(index, (int, np.integer)) or not 0 <= index < self.leaf_count:
            raise ParameterError(f"leaf index {index!r} out of range [0, {self.leaf_count})")

    def prove(self, index: int) -> MerkleProof:
        """Proof that chunk ``index`` is a leaf of this tree."""
        multi = self.prove_many([index])
        return MerkleProof(int(index), self.leaf_count, multi.hashes)

    def prove_many(self, indices: Iterable[int]) -> MerkleMultiProof:
        """One proof for several chunks (indices are sorted and de-duplicated)."""
        idx = sorted({int(i) for i in indices})
        if not idx:
            raise ParameterError("a multi-proof needs at least one leaf index")
        for i in (idx[0], idx[-1]):
            self._check_index(i)
        out: list[bytes] = []
        pos = idx
        for level in self._levels[:-1]:
            m = len(level) // HASH_SIZE
            nxt: list[int] = []
            j = 0
            c = len(pos)
            while j < c:
                p = pos[j]
                if p & 1 == 0:
                    if p + 1 < m:
                        if j + 1 < c and pos[j + 1] == p + 1:
                            j += 1
                        else:
                            out.append(level[(p + 1) * HASH_SIZE : (p + 2) * HASH_SIZE])
                else:
                    out.append(level[(p - 1) * HASH_SIZE : p * HASH_SIZE])
                j += 1
                nxt.append(p >> 1)
            pos = nxt
        return MerkleMultiProof(tuple(idx), self.leaf_count, tuple(out))

    def __repr__(self) -> str:
        return f"MerkleTree(leaves={self.leaf_count}, chunk_size={self.chunk_size}, root={self.root.hex()[:16]}…)"


def merkle_root(data: bytes | bytearray | memoryview, chunk_size: int = DEFAULT_CHUNK_SIZE) -> bytes:
    """Root of the tree over ``data`` (see the module docstring for the rules)."""
    return MerkleTree.from_bytes(data, chunk_size).root


@dataclass(frozen=True)
class MerkleMultiProof:
    """Proof that several chunks sit at ``indices`` of a tree of ``leaf_count`` leaves.

    Attributes
    ----------
    indices : tuple of int
        Sorted, distinct leaf indices.
    leaf_count : int
        Number of leaves of the tree (take it from your records when verifying).
    hashes : tuple of bytes
        The sibling hashes, in the order of the module docstring.
    """

    indices: tuple[int, ...]
    leaf_count: int
    hashes: tuple[bytes, ...]

    def verify(self, root: bytes, chunks: Sequence[bytes]) -> None:
        """Return None if ``chunks`` (in index order) and this proof give ``root``, else raise InvalidProof."""
        ok = check_multiproofs([(root, self, chunks)])
        if not ok[0]:
            raise InvalidProof(_explain(root, self, chunks))

    def is_valid(self, root: bytes, chunks: Sequence[bytes]) -> bool:
        """True if :meth:`verify` would pass."""
        return bool(check_multiproofs([(root, self, chunks)])[0])


@dataclass(frozen=True)
class MerkleProof:
    """Proof that one chunk sits at ``index`` of a tree of ``leaf_count`` leaves.

    ``path`` lists the sibling hashes from the leaf up (levels where the node is promoted have
    no sibling and are skipped).
    """

    index: int
    leaf_count: int
    path: tuple[bytes, ...]

    def as_multi(self) -> MerkleMultiProof:
        """The same proof as a one-leaf :class:`MerkleMultiProof`."""
        return MerkleMultiProof((self.index,), self.leaf_count, self.path)

    def verify(self, root: bytes, chunk: bytes) -> None:
        """Return None if ``chunk`` and this proof give ``root``, else raise InvalidProof."""
        self.as_multi().verify(root, [chunk])

    def is_valid(self, root: bytes, chunk: bytes) -> bool:
        """True if :meth:`verify` would pass."""
        return self.as_multi().is_valid(root, [chunk])


_Item = tuple[bytes, MerkleMultiProof | MerkleProof, Sequence[bytes] | bytes | bytearray | memoryview]


def _structure_error(root: Any, proof: MerkleMultiProof, chunks: Sequence[Any]) -> str | None:
    """Why an item cannot verify without hashing anything (None if it may)."""
    if not isinstance(root, (bytes, bytearray)) or len(root) != HASH_SIZE:
        return "the root is not 32 bytes"
    n = proof.leaf_count
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or not 1 <= n < 2**62:
        return "the proof's leaf count is not a positive int"
    idx = proof.indices
    if not idx:
        return "the proof covers no leaf"
    if len(chunks) != len(idx):
        return f"{len(chunks)} chunks for {len(idx)} indices"
    prev = -1
    for i in idx:
        if not isinstance(i, (int, np.integer)) or isinstance(i, bool):
            return "a leaf index is not an int"
        if i <= prev:
            return "leaf indices are not sorted and distinct"
        prev = i
    if prev >= n:
        return f"leaf index {prev} out of range [0, {n})"
    for c in chunks:
        if not isinstance(c, (bytes, bytearray, memoryview)) or not 0 < len(c) <= MAX_CHUNK_SIZE:
            return "a chunk is empty, oversized or not bytes"
    for h in proof.hashes:
        if not isinstance(h, (bytes, bytearray)) or len(h) != HASH_SIZE:
            return "a proof hash is not 32 bytes"
    return None


def _explain(root: Any, proof: MerkleMultiProof, chunks: Sequence[Any]) -> str:
    return _structure_error(root, proof, chunks) or "the chunks and proof do not hash to the root"


def check_multiproofs(items: Sequence[_Item]) -> list[bool]:
    """Verify many Merkle proofs in one compiled, parallel batch.

    Parameters
    ----------
    items : sequence of (root, proof, chunks)
        ``proof`` is a :class:`MerkleMultiProof` with ``chunks`` in index order, or a
        :class:`MerkleProof` with ``chunks`` a single chunk.

    Returns
    -------
    list of bool
        One verdict per item (structurally malformed items are False, never an exception).
    """
    P = len(items)
    if P == 0:
        return []
    roots: list[Any] = []
    ns: list[Any] = []
    chunks_all: list[Any] = []
    idx_all: list[Any] = []
    leaf_start = [0]
    hashes_all: list[Any] = []
    hash_start = [0]
    shape_ok = np.ones(P, dtype=bool)
    for p, (root, proof, chunks) in enumerate(items):
        if isinstance(proof, MerkleProof):
            idx_all.append(proof.index)
            chunks_all.append(chunks)
            hashes_all.extend(proof.path)
        elif isinstance(proof, MerkleMultiProof):
            ind = proof.indices
            if isinstance(chunks, (bytes, bytearray, memoryview)):
                chunks = [chunks]  # type: ignore[list-item]
            if not ind or len(chunks) != len(ind):
                shape_ok[p] = False
            else:
                idx_all.extend(ind)
                chunks_all.extend(chunks)
            hashes_all.extend(proof.hashes)
        else:
            raise ParameterError(f"not a Merkle proof: {type(proof).__name__}")
        roots.append(root)
        ns.append(proof.leaf_count)
        leaf_start.append(len(idx_all))
        hash_start.append(len(hashes_all))
    try:
        return _verify_flat(P, roots, ns, chunks_all, idx_all, leaf_start, hashes_all, hash_start, shape_ok)
    except (TypeError, OverflowError, ValueError):
        # something is not bytes / not an int / out of int64: sort it out item by item (rare)
        return _verify_slow(items)


def _bad_per_segment(bad: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """For segments ``starts[p]:starts[p+1]`` of ``bad``, whether any element is set."""
    c = np.zeros(len(bad) + 1, dtype=np.int64)
    np.cumsum(bad, out=c[1:])
    return (c[starts[1:]] - c[starts[:-1]]) > 0


def _verify_flat(
    P: int, roots: list[Any], ns: list[Any], chunks_all: list[Any], idx_all: list[Any], leaf_start: list[int],
    hashes_all: list[Any], hash_start: list[int], shape_ok: np.ndarray,
) -> list[bool]:
    for seq in (ns, idx_all):
        for v in seq:
            if type(v) is not int:
                raise TypeError("not an int")
    lstart = np.asarray(leaf_start, dtype=np.int64)
    hstart = np.asarray(hash_start, dtype=np.int64)
    n = np.asarray(ns, dtype=np.int64)  # OverflowError beyond int64: handled by the caller
    idx = np.asarray(idx_all, dtype=np.int64)
    valid = shape_ok & (n >= 1) & (n < 2**62) & (lstart[1:] > lstart[:-1])
    # roots: 32 bytes each
    rlen = np.fromiter(map(len, roots), dtype=np.int64, count=P)
    bad_root = rlen != HASH_SIZE
    if bad_root.any():
        valid &= ~bad_root
        roots = [r if len(r) == HASH_SIZE else bytes(HASH_SIZE) for r in roots]
    # proof hashes: 32 bytes each, packed into one buffer (a wrong one spoils only its proof)
    packed = np.empty(len(hashes_all) * HASH_SIZE, dtype=np.uint8)
    bad_hash = np.empty(len(hashes_all), dtype=np.uint8)
    if _kernel.pack_digests(hashes_all, packed, bad_hash):  # any 32-byte buffer is accepted
        valid &= ~_bad_per_segment(bad_hash.view(bool), hstart)
    # chunks: non-empty, bounded
    clen = np.fromiter(map(len, chunks_all), dtype=np.int64, count=len(chunks_all))
    bad_chunk = (clen < 1) | (clen > MAX_CHUNK_SIZE)
    # indices: sorted, distinct, in [0, n)
    counts = lstart[1:] - lstart[:-1]
    n_of_leaf = np.repeat(n, counts)
    bad_idx = (idx < 0) | (idx >= n_of_leaf) | bad_chunk
    if len(idx) > 1:
        not_increasing = np.zeros(len(idx), dtype=bool)
        not_increasing[1:] = idx[1:] <= idx[:-1]
        not_increasing[lstart[:-1][counts > 0]] = False  # a segment's first leaf has no predecessor
        bad_idx |= not_increasing
    valid &= ~_bad_per_segment(bad_idx, lstart)
    n = np.where(valid, n, 0)  # the kernel answers 0 at once for leaf count 0
    chunks_all = [c if type(c) is bytes else bytes(c) for c in chunks_all]
    out = bytearray(P)
    total = len(idx_all)
    _kernel.verify_multiproofs(
        chunks_all, idx, lstart, n, packed, hstart, b"".join(roots), out,
        np.empty(total, dtype=np.int64), bytearray(total * HASH_SIZE), num_threads() if P > 1 else 1,
    )
    return [v == 1 for v in out]


def _verify_slow(items: Sequence[_Item]) -> list[bool]:
    verdict = []
    for root, proof, chunks in items:
        multi = proof.as_multi() if isinstance(proof, MerkleProof) else proof
        if isinstance(proof, MerkleProof) or isinstance(chunks, (bytes, bytearray, memoryview)):
            chunks = [chunks]  # type: ignore[list-item]
        if _structure_error(root, multi, chunks) is not None:
            verdict.append(False)
            continue
        clean = MerkleMultiProof(tuple(int(i) for i in multi.indices), int(multi.leaf_count),
                                 tuple(bytes(h) for h in multi.hashes))
        verdict.append(check_multiproofs([(bytes(root), clean, [bytes(c) for c in chunks])])[0])
    return verdict


# names before the house rename (issue 14): importable with a DeprecationWarning
__getattr__ = _renamed("dtxfast.crypto.merkle", {'verify_multiproofs': 'check_multiproofs'}, globals())
