"""Proof of storage: challenge → answer → verify, replay, malformed answers, detection probability."""

from __future__ import annotations

import dataclasses
import io
import math
import os
import random
from itertools import combinations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from storage_helpers import flip

from dtxfast.crypto.merkle import MerkleTree
from dtxfast.crypto.signatures import Ed25519PrivateKey
from dtxfast.errors import DtxError, InvalidProof, MalformedInput, ParameterError, ProtocolError
from dtxfast.protocols.storage import (
    DEFAULT_CHALLENGE_SIZE,
    MAX_CHALLENGE_SIZE,
    Answer,
    Challenge,
    ReplicaCommitment,
    ReplicaId,
    StorageProver,
    StorageVerifier,
    challenge_size_for,
    derive_indices,
    detection_probability,
    pass_probability,
    verify_answer,
)
from dtxfast.storage import DataOwner, MemoryReplicaStore

fixture_ok = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
RID = ReplicaId(b"F" * 16, 3, 1)


def setup_replica(size: int = 20_000, chunk_size: int = 64, k: int = 12, seed: int = 1):
    data = random.Random(seed).randbytes(size)
    prover = StorageProver(RID, data, chunk_size)
    verifier = StorageVerifier([prover.commitment()], k=k, rng=random.Random(seed + 1).randbytes)
    return data, prover, verifier


@pytest.mark.usefixtures("backend")
def test_honest_round_trip_over_the_wire() -> None:
    _, prover, verifier = setup_replica()
    for _ in range(5):
        ch = verifier.challenge(RID)
        assert len(ch.indices) == 12 and list(ch.indices) == sorted(set(ch.indices))
        ans = prover.answer(Challenge.from_bytes(ch.to_bytes()))
        verifier.verify(Answer.from_bytes(ans.to_bytes()))
    assert verifier.pending == []


def test_prover_from_a_stream_and_store() -> None:
    owner = DataOwner(Ed25519PrivateKey.from_bytes(bytes(range(32))))
    store = MemoryReplicaStore()
    meta = owner.upload(io.BytesIO(os.urandom(10_000)), store, name="p", slice_size=4096, replicas=2,
                        chunk_size=512)
    verifier = StorageVerifier(meta.commitments())
    provers = {r: StorageProver(r, store.open(r), meta.chunk_size) for r in meta.replica_ids()}
    answers = [provers[c.replica].answer(c) for c in verifier.challenge_all()]
    assert verifier.check_many(answers) == {r: None for r in meta.replica_ids()}
    # a replica is k ≥ n chunks here: every chunk is asked
    assert len(answers[0].indices) == meta.commitments()[0].leaf_count == 9


def test_indices_are_deterministic_distinct_and_in_range() -> None:
    for n in (1, 2, 5, 44, 45, 100, 10**9):
        for k in (1, 10, 44, 60):
            idx = derive_indices(RID, bytes(32), n, k)
            assert len(idx) == min(n, k) and len(set(idx)) == len(idx) and all(0 <= i < n for i in idx)
            assert idx == tuple(sorted(idx)) == derive_indices(RID, bytes(32), n, k)
    assert derive_indices(RID, bytes(32), 1000, 44) != derive_indices(RID, b"\x01" + bytes(31), 1000, 44)
    assert derive_indices(RID, bytes(32), 1000, 44) != derive_indices(ReplicaId(b"F" * 16, 3, 2), bytes(32), 1000, 44)


@pytest.mark.usefixtures("backend")
@fixture_ok
@given(bit=st.integers(0, 10**6), which=st.sampled_from(["chunk", "hash", "index", "nonce", "root", "challenge"]))
def test_any_flipped_bit_fails(bit: int, which: str) -> None:
    _, prover, verifier = setup_replica(size=9_000, chunk_size=50, k=7, seed=bit % 5)
    commitment = prover.commitment()
    ch = verifier.challenge(RID)
    ans = prover.answer(ch)
    verify_answer(commitment, ch, ans)
    if which == "chunk":
        j = bit % len(ans.chunks)
        bad = dataclasses.replace(ans, chunks=ans.chunks[:j] + (flip(ans.chunks[j], bit),) + ans.chunks[j + 1 :])
    elif which == "hash":
        j = bit % len(ans.hashes)
        bad = dataclasses.replace(ans, hashes=ans.hashes[:j] + (flip(ans.hashes[j], bit),) + ans.hashes[j + 1 :])
    elif which == "index":
        j = bit % len(ans.indices)
        moved = ans.indices[j] ^ (1 << (bit % 12))
        bad = dataclasses.replace(ans, indices=ans.indices[:j] + (moved,) + ans.indices[j + 1 :])
    elif which == "nonce":
        bad = dataclasses.replace(ans, nonce=flip(ans.nonce, bit))
    elif which == "root":
        commitment = dataclasses.replace(commitment, root=flip(commitment.root, bit))
        bad = ans
    else:
        ch = dataclasses.replace(ch, nonce=flip(ch.nonce, bit))
        bad = ans
    with pytest.raises(InvalidProof):
        verify_answer(commitment, ch, bad)


@pytest.mark.usefixtures("backend")
def test_old_answer_cannot_be_replayed() -> None:
    _, prover, verifier = setup_replica()
    old = prover.answer(verifier.challenge(RID))
    verifier.verify(old)
    with pytest.raises(ProtocolError):
        verifier.verify(old)  # nothing pending
    verifier.challenge(RID)
    with pytest.raises(InvalidProof, match="nonce"):
        verifier.verify(old)  # pending challenge has a fresh nonce
    with pytest.raises(ProtocolError):
        verifier.check_many([old])


def test_prover_rejects_foreign_challenges() -> None:
    _, prover, verifier = setup_replica()
    ch = verifier.challenge(RID)
    with pytest.raises(ProtocolError):
        prover.answer(dataclasses.replace(ch, replica=ReplicaId(b"G" * 16, 0, 0)))
    with pytest.raises(ProtocolError):
        prover.answer(dataclasses.replace(ch, leaf_count=ch.leaf_count + 1))
    with pytest.raises(ParameterError):
        verifier.challenge(ReplicaId(b"G" * 16, 0, 0))


@pytest.mark.usefixtures("backend")
def test_batch_verification_reports_each_answer() -> None:
    provers = [StorageProver(ReplicaId(b"B" * 16, s, 0), os.urandom(3000 + s), 100) for s in range(30)]
    verifier = StorageVerifier([p.commitment() for p in provers], k=5)
    answers = [p.answer(c) for p, c in zip(provers, verifier.challenge_all())]
    bad = {3, 17, 29}
    for j in bad:
        a = answers[j]
        answers[j] = dataclasses.replace(a, chunks=(flip(a.chunks[0], j),) + a.chunks[1:])
    answers[10] = dataclasses.replace(answers[10], chunks=answers[10].chunks[:-1])  # wrong count
    result = verifier.check_many(answers)
    failed = {r.slice_index for r, err in result.items() if err is not None}
    assert failed == bad | {10}
    assert all(isinstance(err, InvalidProof) for err in result.values() if err is not None)
    assert "chunks for" in str(result[ReplicaId(b"B" * 16, 10, 0)])


# ------------------------------------------------------------------ malformed answers


def honest() -> tuple[ReplicaCommitment, Challenge, Answer]:
    _, prover, verifier = setup_replica(k=6)
    ch = verifier.challenge(RID)
    return prover.commitment(), ch, prover.answer(ch)


def test_truncated_answers_are_malformed() -> None:
    _, _, ans = honest()
    raw = ans.to_bytes()
    for cut in range(0, len(raw), 17):
        with pytest.raises(MalformedInput):
            Answer.from_bytes(raw[:cut])


def test_oversized_answers_are_rejected() -> None:
    _, _, ans = honest()
    raw = ans.to_bytes()
    with pytest.raises(MalformedInput, match="limit"):
        Answer.from_bytes(raw, max_size=len(raw) - 1)
    many = dataclasses.replace(ans, indices=tuple(range(MAX_CHALLENGE_SIZE + 1)),
                               chunks=(b"x",) * (MAX_CHALLENGE_SIZE + 1))
    with pytest.raises(MalformedInput):
        Answer.from_bytes(many.to_bytes())


@pytest.mark.parametrize("mutate,error", [
    (lambda a: dataclasses.replace(a, chunks=a.chunks[:-1]), InvalidProof),                   # too few
    (lambda a: dataclasses.replace(a, chunks=a.chunks + (a.chunks[0],)), InvalidProof),       # too many
    (lambda a: dataclasses.replace(a, indices=a.indices[:-1], chunks=a.chunks[:-1]), InvalidProof),
    (lambda a: dataclasses.replace(a, indices=a.indices[:-1] + (10**9,)), InvalidProof),      # out of range
    (lambda a: dataclasses.replace(a, indices=a.indices[:-1] + (2**63,)), MalformedInput),    # absurd index
    (lambda a: dataclasses.replace(a, indices=a.indices[:-1] + (-1,)), MalformedInput),
    (lambda a: dataclasses.replace(a, chunks=(a.chunks[0] + b"x",) + a.chunks[1:]), InvalidProof),  # oversized
    (lambda a: dataclasses.replace(a, chunks=(b"",) + a.chunks[1:]), InvalidProof),
    (lambda a: dataclasses.replace(a, hashes=a.hashes[:-1]), InvalidProof),
    (lambda a: dataclasses.replace(a, hashes=a.hashes + (bytes(32),)), InvalidProof),
    (lambda a: dataclasses.replace(a, hashes=a.hashes[:-1] + (b"short",)), MalformedInput),
    (lambda a: dataclasses.replace(a, nonce=a.nonce[:16]), MalformedInput),
    (lambda a: dataclasses.replace(a, replica=ReplicaId(b"G" * 16, 3, 1)), InvalidProof),
])
def test_malformed_answers_raise_typed_errors(mutate, error) -> None:  # type: ignore[no-untyped-def]
    commitment, ch, ans = honest()
    with pytest.raises(error):
        verify_answer(commitment, ch, Answer.from_bytes(mutate(ans).to_bytes()))


@settings(max_examples=60)
@given(data=st.data())
def test_garbage_never_crashes(data: st.DataObject) -> None:
    commitment, ch, ans = honest()
    raw = bytearray(ans.to_bytes())
    for _ in range(data.draw(st.integers(1, 8))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    raw = raw[: data.draw(st.integers(0, len(raw)))] + data.draw(st.binary(max_size=20))
    try:
        parsed = Answer.from_bytes(bytes(raw))
        verify_answer(commitment, ch, parsed)
    except DtxError:
        pass
    for blob in (bytes(raw), data.draw(st.binary(max_size=200))):
        try:
            Challenge.from_bytes(blob)
        except MalformedInput:
            pass


def test_challenge_messages() -> None:
    ch = Challenge(RID, os.urandom(32), 1000, 44)
    assert Challenge.from_bytes(ch.to_bytes()) == ch
    for bad in (b"", b"\x93\x01\x02\x03", ch.to_bytes()[:-1], ch.to_bytes() + b"x" * 2000):
        with pytest.raises(MalformedInput):
            Challenge.from_bytes(bad)
    with pytest.raises(ParameterError):
        Challenge(RID, b"short", 10)
    with pytest.raises(ParameterError):
        Challenge(RID, bytes(32), 10, k=MAX_CHALLENGE_SIZE + 1)
    with pytest.raises(ParameterError):
        StorageVerifier([], k=0)


# ------------------------------------------------------------------ detection probability


def test_detection_math() -> None:
    assert DEFAULT_CHALLENGE_SIZE == challenge_size_for(0.10, 0.01) == 44
    assert 0.9**44 <= 0.01 < 0.9**43
    assert detection_probability(0.10) == pytest.approx(1 - 0.9**44)
    # the exact (hypergeometric) pass probability, checked by brute force on small trees
    for n, lost, k in ((8, 2, 3), (10, 1, 10), (12, 4, 5), (9, 9, 1), (7, 0, 4)):
        kept = set(range(lost, n))
        k_eff = min(k, n)
        subsets = list(combinations(range(n), k_eff))
        brute = sum(set(s) <= kept for s in subsets) / len(subsets)
        assert pass_probability(n, lost, k) == pytest.approx(brute)
    # exact value never exceeds the documented bound
    for n in (50, 100, 1025, 10**5):
        lost = math.ceil(0.1 * n)
        assert pass_probability(n, lost, 44) <= 0.9**44 + 1e-12
    assert detection_probability(0.1, leaf_count=1025) >= 0.99


@pytest.mark.usefixtures("backend")
@pytest.mark.slow
def test_node_that_kept_90_percent_fails_with_the_documented_probability() -> None:
    n, chunk_size, trials = 1000, 16, 3000
    rng = random.Random(2024)
    data = rng.randbytes(n * chunk_size)
    tree = MerkleTree.from_bytes(data, chunk_size)
    lost = set(rng.sample(range(n), n // 10))  # the node silently lost 10 % of the replica...
    kept = bytearray(data)
    for i in lost:  # ...and fills the holes with the best it can do: garbage
        kept[i * chunk_size : (i + 1) * chunk_size] = rng.randbytes(chunk_size)
    cheat = StorageProver(RID, bytes(kept), chunk_size, tree=tree)  # it kept every hash of the tree
    verifier = StorageVerifier([cheat.commitment()], rng=rng.randbytes)  # default k
    passed = 0
    for _ in range(trials):
        try:
            verifier.verify(cheat.answer(verifier.challenge(RID)))
            passed += 1
        except InvalidProof:
            pass
    p = pass_probability(n, len(lost), DEFAULT_CHALLENGE_SIZE)  # ≈ 0.85 %; the bound 0.9^44 ≈ 0.97 %
    sigma = math.sqrt(trials * p * (1 - p))
    assert abs(passed - trials * p) <= 5 * sigma, (passed, trials * p)
    assert passed / trials < 0.02  # fails ≥ 98 % of challenges here (99.15 % expected)
    assert passed > 0  # and the rare pass does happen: detection is probabilistic, as documented
