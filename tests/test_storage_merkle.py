"""Merkle trees: both backends (compiled kernel and pure-Python twin) against an independent reference."""

from __future__ import annotations

import hashlib
import io
import os
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from storage_helpers import flip, kernel_module, reference_root

import dtxfast
from dtxfast.crypto import merkle
from dtxfast.crypto.merkle import (
    EMPTY_ROOT,
    MerkleBuilder,
    MerkleMultiProof,
    MerkleProof,
    MerkleTree,
    leaf_hash,
    node_hash,
    check_multiproofs,
)
from dtxfast.errors import InvalidProof, ParameterError

fixture_ok = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@st.composite
def distinct_chunks(draw: st.DrawFn, max_leaves: int = 40) -> tuple[bytes, int]:
    """Data whose chunks are pairwise distinct (so a proof pins a unique position)."""
    chunk_size = draw(st.integers(1, 24))
    n = draw(st.integers(1, max_leaves))
    last = draw(st.integers(1, chunk_size))
    chunks = [os.urandom(chunk_size) for _ in range(n - 1)] + [os.urandom(last)]
    if chunk_size < 3:  # tiny chunks may collide by chance; make them distinct by construction
        chunk_size, chunks = 4, [i.to_bytes(4, "big") for i in range(n)]
    return b"".join(chunks), chunk_size


def chunks_of(data: bytes, chunk_size: int) -> list[bytes]:
    return [data[i : i + chunk_size] for i in range(0, len(data), chunk_size)]


@pytest.mark.usefixtures("backend")
def test_known_vector() -> None:
    # Worked by hand from the documented rules: 3 chunks "a", "b", "c" of size 1.
    la, lb, lc = (hashlib.sha256(b"\x00" + c).digest() for c in (b"a", b"b", b"c"))
    expected = hashlib.sha256(b"\x01" + hashlib.sha256(b"\x01" + la + lb).digest() + lc).digest()
    assert MerkleTree.from_bytes(b"abc", chunk_size=1).root == expected
    assert leaf_hash(b"a") == la and node_hash(la, lb) == hashlib.sha256(b"\x01" + la + lb).digest()
    assert MerkleTree.from_bytes(b"a", chunk_size=1).root == la


@pytest.mark.usefixtures("backend")
def test_empty_tree() -> None:
    tree = MerkleTree.from_bytes(b"", chunk_size=16)
    assert tree.root == EMPTY_ROOT and tree.leaf_count == 0
    with pytest.raises(ParameterError):
        tree.prove(0)


@pytest.mark.usefixtures("backend")
@fixture_ok
@given(data=st.binary(max_size=3000), chunk_size=st.integers(1, 300))
def test_root_matches_reference(data: bytes, chunk_size: int) -> None:
    tree = MerkleTree.from_bytes(data, chunk_size)
    assert tree.root == reference_root(data, chunk_size)
    assert tree.leaf_count == -(-len(data) // chunk_size) and tree.size == len(data)


@pytest.mark.usefixtures("backend")
@fixture_ok
@given(data=st.binary(max_size=5000), chunk_size=st.integers(1, 97), cuts=st.lists(st.integers(0, 5000), max_size=8))
def test_streamed_build_equals_one_shot(data: bytes, chunk_size: int, cuts: list[int]) -> None:
    builder = MerkleBuilder(chunk_size)
    prev = 0
    for cut in sorted(c % (len(data) + 1) for c in cuts) + [len(data)]:
        builder.update(data[prev:cut])
        prev = cut
    assert builder.finalize().root == reference_root(data, chunk_size)
    stream_tree = MerkleTree.from_stream(io.BytesIO(data), chunk_size, block_size=37)
    assert stream_tree.root == reference_root(data, chunk_size)


@pytest.mark.usefixtures("backend")
def test_large_parallel_build_matches_reference() -> None:
    data = os.urandom(3 * 1024 * 1024 + 123)
    for threads in (1, 2, 4):
        assert MerkleTree.from_bytes(data, 4096, threads=threads).root == reference_root(data, 4096)


@pytest.mark.usefixtures("backend")
@fixture_ok
@given(dc=distinct_chunks())
def test_every_leaf_proof_verifies_and_any_flip_fails(dc: tuple[bytes, int]) -> None:
    data, chunk_size = dc
    tree = MerkleTree.from_bytes(data, chunk_size)
    chunks = chunks_of(data, chunk_size)
    n = tree.leaf_count
    for i, chunk in enumerate(chunks):
        proof = tree.prove(i)
        proof.verify(tree.root, chunk)
        bit = int.from_bytes(hashlib.sha256(chunk).digest()[:4], "big")  # a varying bit position
        assert not proof.is_valid(tree.root, flip(chunk, bit)), "flipped chunk bit"
        assert not proof.is_valid(flip(tree.root, bit), chunk), "flipped root bit"
        for k, h in enumerate(proof.path):
            bad = proof.path[:k] + (flip(h, bit),) + proof.path[k + 1 :]
            assert not MerkleProof(i, n, bad).is_valid(tree.root, chunk), "flipped proof-node bit"
        for b in range(max(1, n.bit_length()) + 1):
            j = i ^ (1 << b)
            assert not MerkleProof(j, n, proof.path).is_valid(tree.root, chunk), f"flipped index bit {b}"
        with pytest.raises(InvalidProof):
            proof.verify(tree.root, flip(chunk, bit))


@pytest.mark.usefixtures("backend")
@fixture_ok
@given(dc=distinct_chunks(), picks=st.lists(st.integers(0, 10_000), min_size=1, max_size=12), bit=st.integers(0, 10**6))
def test_multiproofs(dc: tuple[bytes, int], picks: list[int], bit: int) -> None:
    data, chunk_size = dc
    tree = MerkleTree.from_bytes(data, chunk_size)
    chunks = chunks_of(data, chunk_size)
    idx = sorted({p % tree.leaf_count for p in picks})
    proof = tree.prove_many(idx)
    assert proof.indices == tuple(idx)
    revealed = [chunks[i] for i in idx]
    proof.verify(tree.root, revealed)
    k = bit % len(idx)
    assert not proof.is_valid(tree.root, revealed[:k] + [flip(revealed[k], bit)] + revealed[k + 1 :])
    assert not proof.is_valid(flip(tree.root, bit), revealed)
    if proof.hashes:
        h = bit % len(proof.hashes)
        bad = proof.hashes[:h] + (flip(proof.hashes[h], bit),) + proof.hashes[h + 1 :]
        assert not MerkleMultiProof(proof.indices, proof.leaf_count, bad).is_valid(tree.root, revealed)
        assert not MerkleMultiProof(proof.indices, proof.leaf_count, proof.hashes[:-1]).is_valid(tree.root, revealed)
    assert not MerkleMultiProof(proof.indices, proof.leaf_count, proof.hashes + (bytes(32),)).is_valid(
        tree.root, revealed)
    moved = tuple(sorted({i ^ (1 << (bit % 7)) for i in idx}))
    if moved != proof.indices and len(moved) == len(idx):
        assert not MerkleMultiProof(moved, proof.leaf_count, proof.hashes).is_valid(tree.root, revealed)
    # a one-leaf multi-proof is the single-leaf proof
    assert tree.prove_many([idx[0]]).hashes == tree.prove(idx[0]).path


@pytest.mark.usefixtures("backend")
def test_second_preimage_inner_node_as_leaf() -> None:
    # The classic trick: present left||right of an inner node as a chunk of a shorter tree.
    data = os.urandom(4 * 32)
    tree = MerkleTree.from_bytes(data, 32)
    inner = tree._levels[1]  # two inner nodes of 32 bytes
    forged = MerkleTree.from_bytes(inner, 64)  # one leaf: leaf_hash(left || right)
    assert forged.root != tree.root
    assert not MerkleProof(0, 1, ()).is_valid(tree.root, inner)


@pytest.mark.usefixtures("backend")
def test_batch_verify_mixes_good_bad_and_malformed() -> None:
    data = os.urandom(50 * 64)
    tree = MerkleTree.from_bytes(data, 64)
    chunks = chunks_of(data, 64)
    items: list = []
    expect = []
    for i in range(50):
        good = i % 3 != 0
        chunk = chunks[i] if good else flip(chunks[i], i)
        items.append((tree.root, tree.prove(i), chunk))
        expect.append(good)
    mp = tree.prove_many([1, 7, 8, 30])
    items.append((tree.root, mp, [chunks[j] for j in (1, 7, 8, 30)]))
    expect.append(True)
    malformed = [
        (tree.root[:31], tree.prove(0), chunks[0]),                       # short root
        (tree.root, MerkleProof(50, 50, tree.prove(0).path), chunks[0]),  # index out of range
        (tree.root, MerkleProof(-1, 50, tree.prove(0).path), chunks[0]),  # negative index
        (tree.root, MerkleProof(0, 0, ()), chunks[0]),                    # no leaves
        (tree.root, MerkleProof(0, 50, (b"x",)), chunks[0]),              # short hash
        (tree.root, MerkleProof(0, 50, tree.prove(0).path), b""),         # empty chunk
        (tree.root, MerkleMultiProof((3, 1), 50, ()), [chunks[3], chunks[1]]),  # unsorted
        (tree.root, MerkleMultiProof((1, 1), 50, ()), [chunks[1], chunks[1]]),  # duplicate
        (tree.root, mp, [chunks[1]]),                                     # wrong chunk count
        (tree.root, MerkleMultiProof((), 50, ()), []),                    # empty
        (tree.root, MerkleProof(0, 2**70, ()), chunks[0]),                # absurd leaf count
    ]
    items += malformed
    expect += [False] * len(malformed)
    assert check_multiproofs(items) == expect
    # numpy ints and bytearrays take the slow path and give the same verdicts
    odd = [(bytearray(tree.root), MerkleProof(np.int64(4), np.int64(50), tree.prove(4).path), chunks[4]),
           (tree.root, MerkleProof(True, 50, tree.prove(1).path), chunks[1]),  # a bool is not an index
           (tree.root, MerkleProof(5, 50, tree.prove(5).path), "text")]        # a str is not a chunk
    assert check_multiproofs(items + odd) == expect + [True, False, False]


@fixture_ok
@given(data=st.binary(min_size=1, max_size=4000), chunk_size=st.integers(1, 200))
def test_kernel_equals_twin(data: bytes, chunk_size: int) -> None:
    compiled = kernel_module("compiled")
    twin = kernel_module("python")
    n = -(-len(data) // chunk_size)
    a, b = bytearray(32 * n), bytearray(32 * n)
    compiled.hash_leaves(data, chunk_size, a, 2)
    twin.hash_leaves(data, chunk_size, b, 1)
    assert a == b
    la, lb = bytearray(32 * ((n + 1) // 2)), bytearray(32 * ((n + 1) // 2))
    compiled.hash_level(bytes(a), la, 2)
    twin.hash_level(bytes(b), lb, 1)
    assert la == lb


class _Digest(bytes):
    """A bytes subclass, as some callers' hash objects are."""


_ODD_DIGESTS = st.sampled_from([None, "x" * 32, 32, bytearray(31)]) | st.binary(min_size=32, max_size=32).map(
    lambda b: [bytearray(b), memoryview(b), _Digest(b), np.frombuffer(b, np.uint8)][b[0] % 4])


@fixture_ok
@given(items=st.lists(st.one_of(st.binary(min_size=32, max_size=32), st.binary(max_size=40), _ODD_DIGESTS),
                      max_size=30))
def test_pack_digests_kernel_equals_twin(items: list) -> None:
    compiled = kernel_module("compiled")
    twin = kernel_module("python")
    outs, bads, counts = [], [], []
    for mod in (compiled, twin):
        out, bad = np.full(32 * len(items), 7, np.uint8), np.full(len(items), 9, np.uint8)
        counts.append(mod.pack_digests(items, out, bad))
        outs.append(out.tobytes())
        bads.append(bad.tolist())
    assert outs[0] == outs[1] and bads[0] == bads[1] and counts[0] == counts[1]
    def digest(h: object) -> bytes | None:
        try:
            mv = memoryview(h)  # type: ignore[arg-type]
        except TypeError:
            return None
        return mv.tobytes() if mv.nbytes == 32 else None

    expect = [digest(h) for h in items]
    assert bads[0] == [int(d is None) for d in expect]
    assert outs[0] == b"".join(bytes(32) if d is None else d for d in expect)


@pytest.mark.usefixtures("backend")
def test_batch_verify_accepts_bytes_like_proof_hashes() -> None:
    data = os.urandom(20 * 64)
    tree = MerkleTree.from_bytes(data, 64)
    chunks = chunks_of(data, 64)
    path = tree.prove(3).path
    as_bytearray = MerkleProof(3, 20, tuple(bytearray(h) for h in path))
    as_subclass = MerkleProof(3, 20, tuple(_Digest(h) for h in path))
    as_arrays = MerkleProof(3, 20, tuple(np.frombuffer(h, np.uint8) for h in path))
    one_short = MerkleProof(3, 20, (*path[:-1], path[-1][:31]))
    good = (tree.root, tree.prove(4), chunks[4])
    items = [(tree.root, as_bytearray, chunks[3]), good, (tree.root, one_short, chunks[3]),
             (tree.root, as_subclass, chunks[3]), (tree.root, as_arrays, chunks[3]), good]
    assert check_multiproofs(items) == [True, True, False, True, True, True]


def test_threads_setting_is_respected(monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernels get the thread count of ``dtxfast.set_num_threads``, and the root does not depend on it."""
    real, seen = merkle._kernel, []

    class Recording:  # the real kernel, noting the thread count of each parallel call
        def __getattr__(self, name: str) -> Any:
            fn = getattr(real, name)
            if name not in ("hash_leaves", "hash_level"):
                return fn

            def call(*args: Any) -> Any:
                seen.append((name, args[-1]))
                return fn(*args)

            return call

    monkeypatch.setattr(merkle, "_kernel", Recording())
    data = os.urandom(1 << 20)  # 1024 leaves: the leaves and the wide levels run in parallel
    roots = {}
    for n in (1, 3):
        seen.clear()
        dtxfast.set_num_threads(n)
        try:
            roots[n] = MerkleTree.from_bytes(data, 1024).root
        finally:
            dtxfast.set_num_threads(None)
        assert ("hash_leaves", n) in seen and ("hash_level", n) in seen
        assert {t for _, t in seen} <= {1, n}  # narrow levels run on one thread
    assert roots[1] == roots[3] == reference_root(data, 1024)


def test_bad_parameters() -> None:
    with pytest.raises(ParameterError):
        MerkleBuilder(0)
    with pytest.raises(ParameterError):
        MerkleBuilder(True)  # type: ignore[arg-type]
    b = MerkleBuilder(4)
    b.finalize()
    with pytest.raises(ParameterError):
        b.update(b"x")
    tree = MerkleTree.from_bytes(b"abcdefgh", 4)
    with pytest.raises(ParameterError):
        tree.prove(2)
    with pytest.raises(ParameterError):
        tree.prove_many([])
    with pytest.raises(ParameterError):
        check_multiproofs([(tree.root, "not a proof", b"abcd")])  # type: ignore[list-item]
    assert np.asarray(check_multiproofs([])).size == 0
    assert merkle.merkle_root(b"abcdefgh", 4) == tree.root


@settings(max_examples=25)
@given(n=st.integers(1, 80), chunk_size=st.integers(1, 9), last=st.integers(0, 8))
def test_same_tree_as_rfc6962_via_pymerkle(n: int, chunk_size: int, last: int) -> None:
    # An independent implementation: pymerkle builds RFC 6962 trees with the same 0x00/0x01 prefixes.
    pymerkle = pytest.importorskip("pymerkle")
    data = os.urandom((n - 1) * chunk_size + 1 + last % chunk_size)
    ref = pymerkle.InmemoryTree(algorithm="sha256")
    for i in range(0, len(data), chunk_size):
        ref.append_entry(data[i : i + chunk_size])
    tree = MerkleTree.from_bytes(data, chunk_size)
    assert tree.root == ref.get_root()
    i = (n * 7919) % tree.leaf_count
    theirs = [bytes.fromhex(h) for h in ref.prove_inclusion(i + 1).serialize()["path"]]
    assert theirs[0] == tree.leaf(i)  # pymerkle's path starts with the leaf hash itself
    assert tuple(theirs[1:]) == tree.prove(i).path


@pytest.mark.usefixtures("backend")
def test_fixed_vectors_from_pymerkle() -> None:
    import json
    from pathlib import Path

    doc = json.loads((Path(__file__).parent / "vectors" / "merkle_rfc6962.json").read_text())
    for case in doc["cases"]:
        data, cs = bytes.fromhex(case["data_hex"]), case["chunk_size"]
        tree = MerkleTree.from_bytes(data, cs)
        assert tree.leaf_count == case["leaf_count"]
        assert tree.root.hex() == case["root_hex"]
        i = case["proof_index"]
        proof = tree.prove(i)
        assert [h.hex() for h in proof.path] == case["proof_path_hex"]
        proof.verify(bytes.fromhex(case["root_hex"]), data[i * cs : (i + 1) * cs])
