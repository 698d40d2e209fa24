"""Proof of storage: challenge → answer → verify, over the Merkle roots of encrypted replicas.

A storage node holds encrypted replicas; the file metadata signed by the owner records the
Merkle root of each (see :mod:`dtxfast.crypto.merkle` for the tree and its domain separation).
Anyone holding the metadata can check that a node still has a replica:

1. The verifier (:class:`StorageVerifier`) draws a :class:`Challenge` for a replica: a fresh
   32-byte nonce. The ``k`` distinct chunk indices in ``[0, n)`` are derived from the nonce
   (:func:`derive_indices`: a SHAKE-256 stream drives a partial Fisher–Yates shuffle), so
   neither side picks them and both compute the same set.
2. The node (:class:`StorageProver`) answers with those chunks and one Merkle multi-proof, and
   echoes the nonce, replica id and indices (:class:`Answer`).
3. The verifier checks the echo against its pending challenge (an old answer carries another
   nonce and other indices, so it cannot be replayed), each chunk's length against the recorded
   replica size, and the chunks and proof against the recorded root; it passes or raises
   :class:`~dtxfast.errors.InvalidProof` with the reason. A pending challenge is consumed by
   its first answer.

These are pure state objects (L2): they take and return messages (``to_bytes`` /
``from_bytes``), and never touch a socket or a path.

Detection probability
---------------------
Let a replica have ``n`` chunks, of which a node silently lost ``L = f·n`` (a fraction ``f``).
Without a chunk the node can only guess bytes whose leaf hash matches the root, which needs a
SHA-256 second preimage, so it passes a challenge only if all ``k`` distinct indices fall among
the ``n − L`` chunks it kept::

    P[pass] = C(n − L, k) / C(n, k) = ∏_{j<k} (n − L − j) / (n − j)  ≤  (1 − f)^k

(:func:`pass_probability` computes the exact value). The default ``k`` is the smallest ``k``
with ``(1 − f)^k ≤ 1 %`` at ``f = 10 %``: ``0.9^43 ≈ 1.08 %``, ``0.9^44 ≈ 0.97 %``, so
:data:`DEFAULT_CHALLENGE_SIZE` ``= 44`` (:func:`challenge_size_for`). A node that lost 10 % of a
replica thus fails one default challenge with probability ≥ 99.03 %; ``t`` independent
challenges it passes with probability ≤ ``0.9^(44 t)``. Smaller losses need more rounds (at
``f = 1 %`` one challenge detects with ≥ 35.7 %, ten with ≥ 98.8 %). When ``n ≤ k`` every chunk
is asked and any loss is detected.

Examples
--------
>>> import os
>>> from dtxfast.protocols.storage import ReplicaId, StorageProver, StorageVerifier
>>> replica = os.urandom(10_000)
>>> rid = ReplicaId(b"f" * 16, 0, 0)
>>> prover = StorageProver(rid, replica, chunk_size=256)
>>> verifier = StorageVerifier([prover.commitment()], k=8)
>>> challenge = verifier.challenge(rid)
>>> answer = prover.answer(Challenge.from_bytes(challenge.to_bytes()))
>>> verifier.verify(Answer.from_bytes(answer.to_bytes()))      # None, or raises InvalidProof
>>> round(pass_probability(1025, 103, 44), 4)                   # kept 90 % of a 4 MiB replica
0.0085
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import struct
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import IO, Any

import msgspec

from .._deprecated import renamed as _renamed
from ..crypto.merkle import (
    HASH_SIZE,
    MAX_CHUNK_SIZE,
    MerkleMultiProof,
    MerkleTree,
    check_multiproofs,
)
from ..errors import InvalidProof, MalformedInput, ParameterError, ProtocolError

__all__ = [
    "DEFAULT_CHALLENGE_SIZE",
    "MAX_CHALLENGE_SIZE",
    "NONCE_SIZE",
    "Answer",
    "Challenge",
    "ReplicaCommitment",
    "ReplicaId",
    "StorageProver",
    "StorageVerifier",
    "challenge_size_for",
    "check_answers",
    "derive_indices",
    "detection_probability",
    "pass_probability",
    "verify_answer",
]

NONCE_SIZE = 32
#: chunks asked per challenge: detects a 10 % loss with probability ≥ 99 % (module docstring)
DEFAULT_CHALLENGE_SIZE = 44
#: largest k accepted in a message
MAX_CHALLENGE_SIZE = 4096
#: default bound on a serialized answer
DEFAULT_MAX_ANSWER_SIZE = 256 * 1024 * 1024
_VERSION = 1
_INDEX_DOMAIN = b"dtxfast/por-indices/v1\x00"


# ------------------------------------------------------------------ detection probability


def pass_probability(leaf_count: int, lost: int, k: int = DEFAULT_CHALLENGE_SIZE) -> float:
    """Exact chance that a node missing ``lost`` of ``leaf_count`` chunks passes one challenge of ``k``.

    ``C(n − L, k) / C(n, k)`` with ``k`` capped at ``n``.
    """
    n, L = int(leaf_count), int(lost)
    if n < 1 or not 0 <= L <= n or k < 1:
        raise ParameterError("need leaf_count ≥ 1, 0 ≤ lost ≤ leaf_count, k ≥ 1")
    k = min(k, n)
    if n - L < k:
        return 0.0
    p = 1.0
    for j in range(k):
        p *= (n - L - j) / (n - j)
    return p


def detection_probability(lost_fraction: float, k: int = DEFAULT_CHALLENGE_SIZE,
                          leaf_count: int | None = None) -> float:
    """Chance that one challenge of ``k`` chunks catches a node that lost ``lost_fraction`` of a replica.

    Without ``leaf_count`` this is the bound ``1 − (1 − f)^k`` (sampling with replacement; the
    exact value for a finite replica is at least as large).
    """
    if not 0.0 <= lost_fraction <= 1.0:
        raise ParameterError("lost_fraction must be in [0, 1]")
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ParameterError(f"k (chunks per challenge) must be a positive int, not {k!r}")
    if leaf_count is not None and leaf_count < 1:
        raise ParameterError(f"leaf_count must be positive, not {leaf_count!r}")
    if leaf_count is None:
        return 1.0 - (1.0 - lost_fraction) ** k
    return 1.0 - pass_probability(leaf_count, math.ceil(lost_fraction * leaf_count), k)


def challenge_size_for(lost_fraction: float, miss_probability: float) -> int:
    """Smallest ``k`` with ``(1 − f)^k ≤ miss_probability``; ``challenge_size_for(0.1, 0.01) == 44``."""
    if not 0.0 < lost_fraction < 1.0 or not 0.0 < miss_probability < 1.0:
        raise ParameterError("lost_fraction and miss_probability must be in (0, 1)")
    k = math.ceil(math.log(miss_probability) / math.log(1.0 - lost_fraction))
    while k > 1 and (1.0 - lost_fraction) ** (k - 1) <= miss_probability:  # float safety
        k -= 1
    while (1.0 - lost_fraction) ** k > miss_probability:
        k += 1
    return k


# ------------------------------------------------------------------ identities and commitments


@dataclass(frozen=True)
class ReplicaId:
    """Which replica: ``(file id, slice index, replica index)``."""

    file_id: bytes
    slice_index: int
    replica_index: int

    def __post_init__(self) -> None:
        if not isinstance(self.file_id, bytes) or not 1 <= len(self.file_id) <= 64:
            raise ParameterError("file_id must be 1 to 64 bytes")
        for v, top in ((self.slice_index, 2**64), (self.replica_index, 2**32)):
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < top:
                raise ParameterError("slice / replica index out of range")

    def __str__(self) -> str:
        """What a user reads: ``<file id hex> slice S replica R`` (``repr`` stays the dataclass's)."""
        return f"{self.file_id.hex()} slice {self.slice_index} replica {self.replica_index}"

    def encode(self) -> bytes:
        """Canonical bytes (used in the index derivation)."""
        return bytes([len(self.file_id)]) + self.file_id + struct.pack(">QI", self.slice_index, self.replica_index)


@dataclass(frozen=True)
class ReplicaCommitment:
    """What a verifier knows of a replica: its id, Merkle root, byte size and chunk size."""

    replica: ReplicaId
    root: bytes
    size: int
    chunk_size: int

    def __post_init__(self) -> None:
        if not isinstance(self.root, bytes) or len(self.root) != HASH_SIZE:
            raise ParameterError("a Merkle root is 32 bytes")
        if not isinstance(self.size, int) or self.size < 1:
            raise ParameterError("a replica has at least one byte")
        if not isinstance(self.chunk_size, int) or not 1 <= self.chunk_size <= MAX_CHUNK_SIZE:
            raise ParameterError("chunk_size out of range")

    @property
    def leaf_count(self) -> int:
        return -(-self.size // self.chunk_size)

    def chunk_length(self, index: int) -> int:
        return min(self.chunk_size, self.size - index * self.chunk_size)


def derive_indices(replica: ReplicaId, nonce: bytes, leaf_count: int, k: int) -> tuple[int, ...]:
    """The sorted ``min(k, leaf_count)`` distinct chunk indices a nonce selects (deterministic).

    A partial Fisher–Yates shuffle of ``range(n)`` driven by the SHAKE-256 stream of
    ``SHA-256(domain || nonce || replica id || n || k)``, read as big-endian 64-bit words with
    rejection sampling (no modulo bias); the first ``k`` positions of the shuffle are the indices.
    """
    n = int(leaf_count)
    k = min(int(k), n)
    if k >= n:
        return tuple(range(n))
    seed = hashlib.sha256(_INDEX_DOMAIN + nonce + replica.encode() + struct.pack(">QI", n, k)).digest()
    words = k + 8
    values = struct.unpack(f">{words}Q", hashlib.shake_256(seed).digest(8 * words))
    pos = 0
    moved: dict[int, int] = {}
    out: list[int] = []
    for i in range(k):
        bound = n - i
        limit = (1 << 64) - ((1 << 64) % bound)
        while True:
            if pos == len(values):  # a longer read of the same stream keeps its prefix
                words *= 2
                values = struct.unpack(f">{words}Q", hashlib.shake_256(seed).digest(8 * words))
            x = values[pos]
            pos += 1
            if x < limit:
                break
        j = i + x % bound
        out.append(moved.get(j, j))
        moved[j] = moved.get(i, i)
    out.sort()
    return tuple(out)


# ------------------------------------------------------------------ messages


class _ChallengeWire(msgspec.Struct, array_like=True, forbid_unknown_fields=True):
    version: int
    file_id: bytes
    slice_index: int
    replica_index: int
    nonce: bytes
    leaf_count: int
    k: int


class _AnswerWire(msgspec.Struct, array_like=True, forbid_unknown_fields=True):
    version: int
    file_id: bytes
    slice_index: int
    replica_index: int
    nonce: bytes
    indices: list[int]
    chunks: list[bytes]
    hashes: list[bytes]


def _decode(data: bytes, wire: type, max_size: int, what: str) -> Any:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise MalformedInput(f"{what} must be bytes")
    if len(data) > max_size:
        raise MalformedInput(f"{what} is {len(data)} bytes, more than the limit {max_size}")
    try:
        raw = msgspec.msgpack.decode(data)
    except (msgspec.DecodeError, ValueError, RecursionError, OverflowError) as exc:
        raise MalformedInput(f"{what} is not valid msgpack ({exc})") from None
    if not isinstance(raw, list) or not raw or raw[0] != _VERSION:
        raise MalformedInput(f"{what} has an unknown version or layout")
    try:
        return msgspec.convert(raw, type=wire)
    except (msgspec.ValidationError, ValueError, OverflowError) as exc:
        raise MalformedInput(f"{what} is malformed ({exc})") from None


def _replica(file_id: bytes, slice_index: int, replica_index: int, what: str) -> ReplicaId:
    try:
        return ReplicaId(file_id, slice_index, replica_index)
    except ParameterError as exc:
        raise MalformedInput(f"{what}: {exc}") from None


@dataclass(frozen=True)
class Challenge:
    """A challenge for one replica: a nonce, the replica's chunk count and ``k``.

    The chunk indices asked are :attr:`indices`, derived from the nonce.
    """

    replica: ReplicaId
    nonce: bytes
    leaf_count: int
    k: int = DEFAULT_CHALLENGE_SIZE

    def __post_init__(self) -> None:
        if not isinstance(self.nonce, bytes) or len(self.nonce) != NONCE_SIZE:
            raise ParameterError(f"a challenge nonce is {NONCE_SIZE} bytes")
        if not isinstance(self.leaf_count, int) or not 1 <= self.leaf_count < 2**62:
            raise ParameterError("leaf_count out of range")
        if not isinstance(self.k, int) or not 1 <= self.k <= MAX_CHALLENGE_SIZE:
            raise ParameterError(f"k must be in [1, {MAX_CHALLENGE_SIZE}]")

    @functools.cached_property
    def indices(self) -> tuple[int, ...]:
        """The chunk indices this challenge asks for (sorted, distinct)."""
        return derive_indices(self.replica, self.nonce, self.leaf_count, self.k)

    def to_bytes(self) -> bytes:
        r = self.replica
        return msgspec.msgpack.encode(
            _ChallengeWire(_VERSION, r.file_id, r.slice_index, r.replica_index, self.nonce, self.leaf_count, self.k)
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Challenge:
        """Parse a challenge; raises MalformedInput."""
        w = _decode(data, _ChallengeWire, 1024, "challenge")
        rid = _replica(w.file_id, w.slice_index, w.replica_index, "challenge")
        try:
            return cls(rid, w.nonce, w.leaf_count, w.k)
        except ParameterError as exc:
            raise MalformedInput(f"challenge: {exc}") from None


@dataclass(frozen=True)
class Answer:
    """A node's answer: the challenged chunks (in index order) and their Merkle multi-proof."""

    replica: ReplicaId
    nonce: bytes
    indices: tuple[int, ...]
    chunks: tuple[bytes, ...]
    hashes: tuple[bytes, ...]

    def to_bytes(self) -> bytes:
        r = self.replica
        return msgspec.msgpack.encode(
            _AnswerWire(_VERSION, r.file_id, r.slice_index, r.replica_index, self.nonce,
                        list(self.indices), list(self.chunks), list(self.hashes))
        )

    @classmethod
    def from_bytes(cls, data: bytes, max_size: int = DEFAULT_MAX_ANSWER_SIZE) -> Answer:
        """Parse an answer of at most ``max_size`` bytes; raises MalformedInput."""
        w = _decode(data, _AnswerWire, max_size, "answer")
        rid = _replica(w.file_id, w.slice_index, w.replica_index, "answer")
        if len(w.nonce) != NONCE_SIZE:
            raise MalformedInput("answer: the nonce is not 32 bytes")
        if len(w.indices) > MAX_CHALLENGE_SIZE or len(w.chunks) > MAX_CHALLENGE_SIZE:
            raise MalformedInput(f"answer: more than {MAX_CHALLENGE_SIZE} chunks")
        if len(w.hashes) > 64 * MAX_CHALLENGE_SIZE:
            raise MalformedInput("answer: too many proof hashes")
        if any(len(h) != HASH_SIZE for h in w.hashes):
            raise MalformedInput("answer: a proof hash is not 32 bytes")
        if any(not 0 <= i < 2**62 for i in w.indices):
            raise MalformedInput("answer: a chunk index is out of range")
        return cls(rid, w.nonce, tuple(w.indices), tuple(w.chunks), tuple(w.hashes))


# ------------------------------------------------------------------ verification


def _precheck(commitment: ReplicaCommitment, challenge: Challenge, answer: Answer) -> str | None:
    """Why ``answer`` fails without hashing (None if only the Merkle check remains)."""
    if not isinstance(answer, Answer):
        return "not an Answer"
    if challenge.replica != commitment.replica or challenge.leaf_count != commitment.leaf_count:
        return "the challenge was not drawn for this replica"
    if answer.replica != commitment.replica:
        return "the answer is for another replica"
    if answer.nonce != challenge.nonce:
        return "the answer is bound to another nonce (replayed or forged)"
    if tuple(answer.indices) != challenge.indices:
        return "the answer reveals other chunks than the challenge asked"
    if len(answer.chunks) != len(answer.indices):
        return f"the answer has {len(answer.chunks)} chunks for {len(answer.indices)} indices"
    cs = commitment.chunk_size
    for chunk in answer.chunks:
        if not isinstance(chunk, (bytes, bytearray)):
            return "a chunk is not bytes"
    last = len(answer.chunks) - 1
    if any(len(c) != cs for c in answer.chunks[:last]):  # only the tree's last chunk may be short
        return "a chunk has the wrong length"
    if last >= 0 and len(answer.chunks[last]) != commitment.chunk_length(answer.indices[last]):
        return f"chunk {answer.indices[last]} has the wrong length"
    # proof hashes that are not 32 bytes are caught (vectorised) by check_multiproofs
    return None


_Item = tuple[ReplicaCommitment, Challenge, Answer]


def check_answers(items: Sequence[_Item]) -> list[InvalidProof | None]:
    """Verify many answers at once (one compiled, parallel Merkle batch).

    Returns one entry per item: None if the answer passes, else the :class:`InvalidProof`
    saying why (not raised, so one bad node does not hide the others).
    """
    results: list[InvalidProof | None] = [None] * len(items)
    batch: list[tuple[bytes, MerkleMultiProof, Sequence[bytes]]] = []
    where: list[int] = []
    for slot, (commitment, challenge, answer) in enumerate(items):
        reason = _precheck(commitment, challenge, answer)
        if reason is not None:
            results[slot] = InvalidProof(reason)
            continue
        proof = MerkleMultiProof(tuple(answer.indices), commitment.leaf_count, tuple(answer.hashes))
        batch.append((commitment.root, proof, answer.chunks))
        where.append(slot)
    if batch:
        for slot, ok in zip(where, check_multiproofs(batch)):
            if not ok:
                results[slot] = InvalidProof("the chunks and proof do not match the recorded Merkle root")
    return results


def verify_answer(commitment: ReplicaCommitment, challenge: Challenge, answer: Answer) -> None:
    """Return None if ``answer`` passes ``challenge`` for ``commitment``; else raise InvalidProof."""
    err = check_answers([(commitment, challenge, answer)])[0]
    if err is not None:
        raise err


class StorageVerifier:
    """The verifier's state: the commitments it checks and the challenges awaiting an answer.

    Parameters
    ----------
    commitments : iterable of ReplicaCommitment
        From the signed file metadata (``FileMetadata.commitments()``).
    k : int, default DEFAULT_CHALLENGE_SIZE
        Chunks per challenge.
    rng : callable, default os.urandom
        ``rng(n)`` returns ``n`` random bytes (the nonces).
    """

    def __init__(self, commitments: Iterable[ReplicaCommitment], k: int = DEFAULT_CHALLENGE_SIZE,
                 rng: Callable[[int], bytes] = os.urandom) -> None:
        if not isinstance(k, int) or not 1 <= k <= MAX_CHALLENGE_SIZE:
            raise ParameterError(f"k must be in [1, {MAX_CHALLENGE_SIZE}]")
        self._commitments = {c.replica: c for c in commitments}
        self._pending: dict[ReplicaId, Challenge] = {}
        self._k = k
        self._rng = rng

    @property
    def replicas(self) -> list[ReplicaId]:
        return list(self._commitments)

    @property
    def pending(self) -> list[ReplicaId]:
        return list(self._pending)

    def challenge(self, replica: ReplicaId) -> Challenge:
        """Draw a fresh challenge for ``replica`` (replaces one still pending)."""
        commitment = self._commitments.get(replica)
        if commitment is None:
            raise ParameterError(f"no commitment for {replica}")
        nonce = self._rng(NONCE_SIZE)
        if len(nonce) != NONCE_SIZE:
            raise ParameterError("rng returned the wrong number of bytes")
        c = Challenge(replica, bytes(nonce), commitment.leaf_count, self._k)
        self._pending[replica] = c
        return c

    def challenge_all(self) -> list[Challenge]:
        """A challenge for every replica (a challenge round)."""
        return [self.challenge(r) for r in self._commitments]

    def _take(self, answer: Answer) -> tuple[ReplicaCommitment, Challenge]:
        if not isinstance(answer, Answer):
            raise ProtocolError(f"expected an Answer, got {type(answer).__name__}")
        challenge = self._pending.pop(answer.replica, None)
        if challenge is None:
            raise ProtocolError(f"no pending challenge for {answer.replica} (unsolicited or replayed answer)")
        return self._commitments[answer.replica], challenge

    def verify(self, answer: Answer) -> None:
        """Check the answer to the pending challenge of its replica; None, or raises InvalidProof."""
        commitment, challenge = self._take(answer)
        verify_answer(commitment, challenge, answer)

    def check_many(self, answers: Iterable[Answer]) -> dict[ReplicaId, InvalidProof | None]:
        """Check many answers in one batch; maps each replica to None (pass) or its InvalidProof.

        Answers without a pending challenge raise :class:`~dtxfast.errors.ProtocolError`
        before anything is verified or consumed.
        """
        answers = list(answers)
        seen: set[ReplicaId] = set()
        for a in answers:
            if not isinstance(a, Answer) or a.replica not in self._pending or a.replica in seen:
                raise ProtocolError("an answer has no pending challenge (unsolicited, duplicate or replayed)")
            seen.add(a.replica)
        items = [self._take(a) + (a,) for a in answers]
        return {a.replica: err for a, err in zip(answers, check_answers(items))}

    def verify_many(self, answers: Iterable[Answer]) -> dict[ReplicaId, InvalidProof | None]:
        """Deprecated name of :meth:`check_many` (a batch verdict, not ``verify_*``: it does not raise)."""
        warnings.warn("StorageVerifier.verify_many is renamed check_many", DeprecationWarning, stacklevel=2)
        return self.check_many(answers)


_Source = bytes | bytearray | memoryview | IO[bytes]


class StorageProver:
    """The storage node's side for one replica: answers challenges from the stored bytes.

    Parameters
    ----------
    replica : ReplicaId
    data : bytes-like or seekable binary stream
        The replica as stored (a stream is read in blocks, never whole).
    chunk_size : int
        Merkle chunk size recorded in the metadata.
    tree : MerkleTree, optional
        A tree built earlier (else it is built now, streamed, from ``data``).
    """

    def __init__(self, replica: ReplicaId, data: _Source, chunk_size: int, tree: MerkleTree | None = None) -> None:
        self.replica = replica
        self._data = data
        if tree is None:
            if isinstance(data, (bytes, bytearray, memoryview)):
                tree = MerkleTree.from_bytes(data, chunk_size)
            else:
                data.seek(0)
                tree = MerkleTree.from_stream(data, chunk_size)
        if tree.chunk_size != chunk_size:
            raise ParameterError("the tree was built with another chunk size")
        if tree.leaf_count == 0:
            raise ParameterError("an empty replica cannot be proven")
        self.tree = tree

    def commitment(self) -> ReplicaCommitment:
        """What the owner records for this replica (its root, size and chunk size)."""
        return ReplicaCommitment(self.replica, self.tree.root, self.tree.size, self.tree.chunk_size)

    def _chunk(self, index: int) -> bytes:
        start = index * self.tree.chunk_size
        length = self.tree.chunk_length(index)
        if isinstance(self._data, (bytes, bytearray, memoryview)):
            return bytes(self._data[start : start + length])
        self._data.seek(start)
        out = self._data.read(length)
        if len(out) != length:
            raise ProtocolError(f"stored replica is shorter than its tree (chunk {index})")
        return out

    def answer(self, challenge: Challenge) -> Answer:
        """Answer a challenge for this replica."""
        if not isinstance(challenge, Challenge):
            raise ProtocolError(f"expected a Challenge, got {type(challenge).__name__}")
        if challenge.replica != self.replica:
            raise ProtocolError("challenge is for another replica")
        if challenge.leaf_count != self.tree.leaf_count:
            raise ProtocolError("challenge disagrees with the replica's chunk count")
        idx = challenge.indices
        proof = self.tree.prove_many(idx)
        return Answer(self.replica, challenge.nonce, idx, tuple(self._chunk(i) for i in idx), proof.hashes)


# names before the house rename (issue 14): importable with a DeprecationWarning
__getattr__ = _renamed("dtxfast.protocols.storage", {'verify_answers': 'check_answers'}, globals())
