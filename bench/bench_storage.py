"""Storage benchmarks: Merkle tree building, batch proof verification, the encryption pipeline.

Groups (``dtx bench storage``):

* ``merkle.build`` (MiB/s): a Merkle tree over a replica of ``size`` MiB in 4 KiB chunks, fed in
  4 MiB blocks (the streamed path). Rows: ``dtxfast`` (compiled kernel, all threads, and the
  1-thread row), ``dtxfast-python`` (pure-Python hashlib twin), ``pymerkle`` (same chunks as
  entries of a pymerkle ``InmemoryTree``), ``floor-sha256`` (``hashlib.sha256`` over the same
  bytes: the raw SHA-256 work the tree cannot avoid; on one thread, and on all cores with the
  bytes cut into one contiguous part per thread, hashed in parallel: the floor of the all-core
  row, since a 1-thread floor cannot bound a 2-thread tree).
* ``merkle.verify`` (proofs/s): a batch of single-leaf proofs for chunks of ``size`` bytes
  (4 KiB and 1 MiB). Rows: ``dtxfast`` (all threads and 1), ``dtxfast-python``, ``pymerkle`` (``verify_inclusion``
  on the leaf hash of each chunk), ``floor-sha256`` (only hashing every revealed chunk once).
* ``storage.verify`` (answers/s): a proof-of-storage round, ``size`` replicas of 4 MiB + tag in
  4 KiB chunks, one default challenge (k = 44) each, all answers checked with
  ``check_answers``. Rows: ``dtxfast`` (all threads and 1), ``dtxfast-python``,
  ``floor-sha256`` (hashing the revealed chunks once, one thread).
* ``storage.encrypt`` (MiB/s of plaintext): ``DataOwner.upload`` of a ``size`` MiB file into
  4 MiB slices × 3 replicas (AES-256-GCM + a Merkle root per replica), replicas dropped.
  Rows: ``dtxfast`` (all threads and 1), ``dtxfast-python`` (Merkle roots by the twin), ``floor-aead`` (raw
  AES-256-GCM over the same slices, 3 times, with pycryptodome: the AEAD work the pipeline
  cannot avoid), ``floor-aead-openssl`` (the same with OpenSSL's AES-GCM in place, which dtxfast
  uses; the pipeline also hashes every replica byte into its Merkle tree, so it stays far from
  this floor).
"""

from __future__ import annotations

import hashlib
import io
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from Crypto.Cipher import AES

from dtxfast._backend import use_backend
from dtxfast.crypto.merkle import MerkleBuilder, MerkleTree, check_multiproofs
from dtxfast.crypto.signatures import Ed25519PrivateKey
from dtxfast.protocols.storage import ReplicaId, StorageProver, StorageVerifier, check_answers
from dtxfast.storage import DataOwner

from ._util import measure, sizes, thread_variants

MiB = 1024 * 1024
CHUNK = 4096
BLOCK = 4 * MiB

try:
    import pymerkle
except ImportError:  # pragma: no cover - optional baseline
    pymerkle = None

def twin_kernel() -> Any:
    """Context: use the pure-Python Merkle twin."""
    return use_backend("python", ["_merkle"])


_buffers: dict[int, bytes] = {}


def random_bytes(n: int) -> bytes:
    if n not in _buffers:
        _buffers.clear()  # keep at most one big buffer alive
        _buffers[n] = np.random.default_rng(42).bytes(n)
    return _buffers[n]


def streamed_root(data: bytes, threads: int | None = None) -> bytes:
    view = memoryview(data)
    builder = MerkleBuilder(CHUNK, threads)
    for start in range(0, len(view), BLOCK):
        builder.update(view[start : start + BLOCK])
    return builder.finalize().root


# ------------------------------------------------------------------ merkle.build

BUILD_MIB = sizes([256], [8])
BUILD_ROWS = ([("dtxfast", t) for t in thread_variants()] + [("dtxfast-python", 1), ("pymerkle", 1)]
              + [("floor-sha256", t) for t in thread_variants()])
_pool: dict[int, ThreadPoolExecutor] = {}


def _parallel_sha256(view: memoryview, threads: int) -> list[bytes]:
    """SHA-256 of ``threads`` contiguous parts of ``view``, in parallel (hashlib releases the GIL)."""
    pool = _pool.setdefault(threads, ThreadPoolExecutor(threads))
    step = -(-len(view) // threads)
    return list(pool.map(lambda i: hashlib.sha256(view[i:i + step]).digest(), range(0, len(view), step)))


@pytest.mark.benchmark(group="merkle.build")
@pytest.mark.parametrize("impl,threads", BUILD_ROWS)
@pytest.mark.parametrize("mib", BUILD_MIB)
def test_merkle_build(benchmark: Any, impl: str, threads: int, mib: int) -> None:
    data = random_bytes(mib * MiB)
    if impl == "dtxfast":
        fn = lambda: streamed_root(data, threads=threads)
    elif impl == "dtxfast-python":
        def fn() -> bytes:
            with twin_kernel():
                return streamed_root(data)
    elif impl == "pymerkle":
        if pymerkle is None:
            pytest.skip("pymerkle not installed")

        def fn() -> bytes:
            tree = pymerkle.InmemoryTree(algorithm="sha256")
            view = memoryview(data)
            for start in range(0, len(view), CHUNK):
                tree.append_entry(bytes(view[start : start + CHUNK]))
            return tree.get_root()
    elif threads == 1:
        fn = lambda: hashlib.sha256(data).digest()
    else:
        fn = lambda: _parallel_sha256(memoryview(data), threads)
    measure(benchmark, fn, impl=impl, size=mib, unit="MiB/s", per=1, mib=mib, rounds=5, threads=threads)


# ------------------------------------------------------------------ merkle.verify

VERIFY_CASES = sizes([(4096, 4096, 16 * MiB), (MiB, 256, 64 * MiB)], [(4096, 512, 2 * MiB), (MiB, 16, 8 * MiB)])
VERIFY_ROWS = [("dtxfast", t) for t in thread_variants()] + [("dtxfast-python", 1), ("pymerkle", 1),
                                                             ("floor-sha256", 1)]


@pytest.mark.benchmark(group="merkle.verify")
@pytest.mark.parametrize("impl,threads", VERIFY_ROWS)
@pytest.mark.parametrize("case", VERIFY_CASES, ids=lambda c: f"chunk{c[0]}")
def test_merkle_verify(benchmark: Any, impl: str, threads: int, case: tuple[int, int, int]) -> None:
    chunk_size, proofs, replica = case
    data = random_bytes(replica)
    tree = MerkleTree.from_bytes(data, chunk_size)
    rng = np.random.default_rng(7)
    idx = [int(i) for i in rng.integers(0, tree.leaf_count, proofs)]
    chunks = [data[i * chunk_size : (i + 1) * chunk_size] for i in idx]
    if impl.startswith("dtxfast"):
        items = [(tree.root, tree.prove(i), c) for i, c in zip(idx, chunks)]
        if impl == "dtxfast-python":
            def fn() -> list[bool]:
                with twin_kernel():
                    return check_multiproofs(items)
        else:
            fn = lambda: check_multiproofs(items)
        assert all(fn())
    elif impl == "pymerkle":
        if pymerkle is None:
            pytest.skip("pymerkle not installed")
        ptree = pymerkle.InmemoryTree(algorithm="sha256")
        for start in range(0, len(data), chunk_size):
            ptree.append_entry(data[start : start + chunk_size])
        proot = ptree.get_root()
        pproofs = [ptree.prove_inclusion(i + 1) for i in idx]  # pymerkle counts from 1

        def fn() -> None:
            for c, p in zip(chunks, pproofs):
                pymerkle.verify_inclusion(ptree.hash_buff(c), proot, p)
    else:
        joined = b"".join(chunks)

        def fn() -> bytes:  # every revealed chunk hashed once, nothing else
            return hashlib.sha256(joined).digest()
    measure(benchmark, fn, impl=impl, size=chunk_size, unit="proofs/s", per=proofs, rounds=5, threads=threads)


# ------------------------------------------------------------------ storage.verify

ROUND_REPLICAS = sizes([400], [40])


@pytest.mark.benchmark(group="storage.verify")
@pytest.mark.parametrize("impl,threads", [("dtxfast", t) for t in thread_variants()]
                         + [("dtxfast-python", 1), ("floor-sha256", 1)])
@pytest.mark.parametrize("replicas", ROUND_REPLICAS)
def test_storage_verify(benchmark: Any, impl: str, threads: int, replicas: int) -> None:
    data = random_bytes(4 * MiB + 16)  # one encrypted replica's worth of bytes, reused by every replica id
    tree = MerkleTree.from_bytes(data, CHUNK)
    provers = [StorageProver(ReplicaId(bytes(16), s, 0), data, CHUNK, tree=tree) for s in range(replicas)]
    rng = np.random.default_rng(3)
    verifier = StorageVerifier([p.commitment() for p in provers], rng=lambda n: rng.bytes(n))
    challenges = verifier.challenge_all()
    items = [(p.commitment(), c, p.answer(c)) for p, c in zip(provers, challenges)]
    if impl == "dtxfast":
        fn = lambda: check_answers(items)
    elif impl == "dtxfast-python":
        def fn() -> Any:
            with twin_kernel():
                return check_answers(items)
    else:
        joined = b"".join(c for _, _, a in items for c in a.chunks)
        fn = lambda: hashlib.sha256(joined).digest()
    if impl != "floor-sha256":
        assert all(err is None for err in fn())
    measure(benchmark, fn, impl=impl, size=replicas, unit="proofs/s", per=replicas, rounds=5, threads=threads,
            note="answers of k=44 chunks")


# ------------------------------------------------------------------ storage.encrypt

ENCRYPT_MIB = sizes([64], [16])
SLICE = 4 * MiB
REPLICAS = 3
OWNER = DataOwner(Ed25519PrivateKey.from_bytes(bytes(range(32))))


@pytest.mark.benchmark(group="storage.encrypt")
@pytest.mark.parametrize("impl,threads", [("dtxfast", t) for t in thread_variants()]
                         + [("dtxfast-python", 1), ("floor-aead", 1), ("floor-aead-openssl", 1)])
@pytest.mark.parametrize("mib", ENCRYPT_MIB)
def test_storage_encrypt(benchmark: Any, impl: str, threads: int, mib: int) -> None:
    data = random_bytes(mib * MiB)
    drop = lambda rep: None

    def upload() -> Any:
        return OWNER.upload(io.BytesIO(data), drop, name="bench", slice_size=SLICE, replicas=REPLICAS,
                            chunk_size=CHUNK, file_id=bytes(16), now=0)

    if impl == "dtxfast":
        fn = upload
    elif impl == "dtxfast-python":
        def fn() -> Any:
            with twin_kernel():
                return upload()
    elif impl == "floor-aead":  # pycryptodome's AES-256-GCM, one thread, every replica's bytes
        view = memoryview(data)
        keys = [bytes([r]) * 32 for r in range(REPLICAS)]

        def fn() -> None:
            for start in range(0, len(view), SLICE):
                for r in range(REPLICAS):
                    c = AES.new(keys[r], AES.MODE_GCM, nonce=bytes(12))
                    c.encrypt_and_digest(view[start : start + SLICE])
    else:  # OpenSSL's AES-256-GCM (what dtxfast uses), one thread, in place into one buffer
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        view = memoryview(data)
        ciphers = [AESGCM(bytes([r]) * 32) for r in range(REPLICAS)]
        out = memoryview(bytearray(SLICE + 16))

        def fn() -> None:
            for start in range(0, len(view), SLICE):
                piece = view[start : start + SLICE]
                for c in ciphers:
                    c.encrypt_into(bytes(12), piece, b"", out[: len(piece) + 16])
    measure(benchmark, fn, impl=impl, size=mib, unit="MiB/s", per=1, mib=mib, rounds=5, threads=threads,
            note=f"r={REPLICAS}, {SLICE // MiB} MiB slices")


