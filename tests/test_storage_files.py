"""Files → slices → encrypted replicas → signed metadata → files."""

from __future__ import annotations

import dataclasses
import io
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from storage_helpers import flip, reference_root

import dtxfast
from dtxfast.crypto.aead import TAG_SIZE, FileCipher, ReplicaCipher
from dtxfast.crypto.signatures import Ed25519PrivateKey
from dtxfast.errors import (
    InvalidProof,
    InvalidSignature,
    KeyMismatch,
    MalformedInput,
    NotFound,
    ParameterError,
)
from dtxfast.storage import (
    DataOwner,
    DirectoryReplicaStore,
    FileMetadata,
    MemoryReplicaStore,
    ReplicaId,
    decrypt_file,
    decrypt_replica,
    open_replica_store,
)

KEY = Ed25519PrivateKey.from_bytes(bytes(range(32)))
OWNER = DataOwner(KEY)
fixture_ok = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


class ReadRecorder(io.RawIOBase):
    """A stream that records how much was asked per read (to show the file is never read whole)."""

    def __init__(self, data: bytes) -> None:
        self._src = io.BytesIO(data)
        self.largest = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[no-untyped-def,override]
        self.largest = max(self.largest, len(b))
        data = self._src.read(min(len(b), 1000))  # short reads on purpose
        b[: len(data)] = data
        return len(data)


def roundtrip(data: bytes, **kw: int) -> tuple[FileMetadata, MemoryReplicaStore, bytes]:
    store = MemoryReplicaStore()
    meta = OWNER.upload(io.BytesIO(data), store, name="f", **kw)
    out = io.BytesIO()
    OWNER.download(meta, store, out)
    return meta, store, out.getvalue()


@settings(max_examples=25)
@given(slice_size=st.integers(16, 300), mult=st.integers(0, 6), extra=st.sampled_from([0, 0, 1, -1, 7]),
       replicas=st.integers(1, 4))
def test_round_trip_random_sizes(slice_size: int, mult: int, extra: int, replicas: int) -> None:
    size = max(0, slice_size * mult + extra)  # includes 0 and exact multiples of the slice size
    data = os.urandom(size)
    meta, store, back = roundtrip(data, slice_size=slice_size, replicas=replicas, chunk_size=32)
    assert back == data
    assert meta.size == size and meta.slice_count == -(-size // slice_size)
    assert len(store.list()) == meta.slice_count * replicas
    for rid in store.list():
        blob = store.get(rid)
        assert len(blob) == slice_size + TAG_SIZE
        assert reference_root(blob, 32) == meta.roots[rid.slice_index][rid.replica_index]
    if size:
        assert meta.slice_length(meta.slice_count - 1) == size - (meta.slice_count - 1) * slice_size


def test_empty_file() -> None:
    meta, store, back = roundtrip(b"")
    assert back == b"" and meta.slice_count == 0 and store.list() == [] and meta.roots == ()
    meta.verify()


@pytest.mark.usefixtures("backend")
@pytest.mark.parametrize("threads", [1, 3])
def test_large_file_is_streamed_slice_by_slice(threads: int) -> None:
    slice_size = 64 * 1024
    data = os.urandom(slice_size * 37 + 12345)  # many times the slice size
    src = ReadRecorder(data)
    store = MemoryReplicaStore()
    dtxfast.set_num_threads(threads)
    try:
        meta = OWNER.upload(src, store, name="big", slice_size=slice_size, replicas=2, chunk_size=4096)
    finally:
        dtxfast.set_num_threads(None)
    assert src.largest <= slice_size  # never asked for more than one slice at a time
    assert meta.slice_count == 38
    out = io.BytesIO()
    OWNER.download(meta, store, out)
    assert out.getvalue() == data


@given(data=st.binary(min_size=16, max_size=2000))
def test_replicas_of_a_slice_share_no_16_byte_block(data: bytes) -> None:
    store = MemoryReplicaStore()
    meta = OWNER.upload(io.BytesIO(data), store, name="b", slice_size=len(data), replicas=3, chunk_size=64)
    blocks = []
    for r in range(3):
        blob = store.get(ReplicaId(meta.file_id, 0, r))
        blocks.append({blob[i : i + 16] for i in range(0, len(blob) - 15, 16)})
    assert not blocks[0] & blocks[1] and not blocks[0] & blocks[2] and not blocks[1] & blocks[2]


def test_same_plaintext_slices_encrypt_differently() -> None:
    data = b"\x00" * 4096  # four identical slices
    store = MemoryReplicaStore()
    meta = OWNER.upload(io.BytesIO(data), store, name="z", slice_size=1024, replicas=2, chunk_size=256)
    blobs = [store.get(r) for r in store.list()]
    assert len(set(blobs)) == len(blobs) == 8
    assert len({root for row in meta.roots for root in row}) == 8


def test_tampered_replica_is_rejected_and_another_used() -> None:
    data = os.urandom(5000)
    store = MemoryReplicaStore()
    meta = OWNER.upload(io.BytesIO(data), store, name="t", slice_size=1024, replicas=3, chunk_size=128)
    r0 = ReplicaId(meta.file_id, 2, 0)
    store.put(r0, flip(store.get(r0), 999))
    with pytest.raises(InvalidProof):
        OWNER.decrypt_replica(meta, r0, store.get(r0))
    store.delete(ReplicaId(meta.file_id, 2, 1))
    out = io.BytesIO()
    OWNER.download(meta, store, out)  # falls back to replica 2 of slice 2
    assert out.getvalue() == data
    # a replica moved to another place fails its tag (the AAD binds the place)
    store.put(r0, store.get(ReplicaId(meta.file_id, 3, 2)))
    store.put(ReplicaId(meta.file_id, 2, 2), store.get(ReplicaId(meta.file_id, 3, 0)))
    with pytest.raises(InvalidProof, match="slice 2"):
        OWNER.download(meta, store, io.BytesIO())
    with pytest.raises(MalformedInput):
        OWNER.decrypt_replica(meta, r0, b"short")


def test_other_owner_cannot_download() -> None:
    meta, store, _ = roundtrip(b"secret" * 100, slice_size=128)
    other = DataOwner(Ed25519PrivateKey.from_bytes(bytes(32)))
    with pytest.raises(KeyMismatch):
        other.download(meta, store, io.BytesIO())


def test_file_key_opens_one_file_only() -> None:
    data = os.urandom(3000)
    store = MemoryReplicaStore()
    meta = OWNER.upload(io.BytesIO(data), store, name="k", slice_size=1024, replicas=2, chunk_size=128)
    other = OWNER.upload(io.BytesIO(data), store, name="k2", slice_size=1024, replicas=2, chunk_size=128)
    out = io.BytesIO()
    decrypt_file(meta, OWNER.file_key(meta.file_id), store, out)  # an executor with the sealed file key
    assert out.getvalue() == data
    assert OWNER.file_key(meta.file_id) != OWNER.file_key(other.file_id)
    with pytest.raises(InvalidProof, match="wrong file key"):
        decrypt_file(other, OWNER.file_key(meta.file_id), store, io.BytesIO())
    rid = ReplicaId(meta.file_id, 1, 1)
    assert decrypt_replica(meta, OWNER.file_key(meta.file_id), rid, store.get(rid)) == data[1024:2048]
    with pytest.raises(ParameterError):
        FileCipher(b"short", meta.file_id)


def test_keys_are_per_replica() -> None:
    c = ReplicaCipher(bytes(32))
    keys = {c.key_and_nonce(b"f" * 16, s, r) for s in range(4) for r in range(4)}
    keys |= {c.key_and_nonce(b"g" * 16, 0, 0)}
    assert len(keys) == 17
    assert ReplicaCipher(bytes(31) + b"\x01").key_and_nonce(b"f" * 16, 0, 0) not in keys
    with pytest.raises(ParameterError):
        ReplicaCipher(b"short")


# ------------------------------------------------------------------ metadata


def sample_meta() -> FileMetadata:
    meta, _, _ = roundtrip(os.urandom(3000), slice_size=1024, replicas=2, chunk_size=256)
    return meta


def test_metadata_serialization_and_signature() -> None:
    meta = sample_meta()
    meta.verify()
    raw = meta.to_bytes()
    again = FileMetadata.from_bytes(raw)
    assert again == meta and again.to_bytes() == raw  # stable
    again.verify()
    assert [c.root for c in meta.commitments()] == [r for row in meta.roots for r in row]
    assert meta.commitments()[0].size == 1024 + TAG_SIZE


@pytest.mark.parametrize("field,value", [
    ("name", "other"), ("namespace", "ns2"), ("size", 2999), ("description", "x"),
    ("expires_at", None), ("created_at", None), ("slice_size", 1000), ("chunk_size", 128),
    ("roots", None), ("placement", None), ("file_id", bytes(16)), ("owner", None),
])
def test_any_change_breaks_the_signature(field: str, value: object) -> None:
    meta = sample_meta()
    if field == "expires_at":
        value = meta.expires_at + 1
    elif field == "created_at":
        value = meta.created_at - 1
    elif field == "roots":
        value = ((flip(meta.roots[0][0], 3), meta.roots[0][1]),) + meta.roots[1:]
    elif field == "placement":
        value = (("node-a", ""),) + meta.placement[1:]
    elif field == "owner":
        value = Ed25519PrivateKey.from_bytes(bytes(32)).public_key().to_bytes()
    forged = dataclasses.replace(meta, **{field: value})  # keeps the old signature
    with pytest.raises(InvalidSignature):
        forged.verify()
    assert not FileMetadata.from_bytes(forged.to_bytes()).is_valid()


def test_placement_then_resign() -> None:
    meta = sample_meta()
    placed = meta.with_placement([["n1", "n2"], ["n3", "n1"], ["n2", "n3"]])
    assert not placed.is_signed
    with pytest.raises(InvalidSignature):
        placed.verify()
    OWNER.sign(placed).verify()
    with pytest.raises(ParameterError):
        placed.sign(Ed25519PrivateKey.from_bytes(bytes(32)))


def test_flipped_bit_in_serialized_metadata_never_verifies() -> None:
    raw = sample_meta().to_bytes()
    for bit in range(0, len(raw) * 8, 7):
        try:
            m = FileMetadata.from_bytes(flip(raw, bit))
        except MalformedInput:
            continue
        assert not m.is_valid()


@pytest.mark.parametrize("raw", [b"", b"\xc1", b"\x90", b"\x91\x02", b"\x92\x01\x02", b"\xa3abc", b"x" * 100])
def test_malformed_metadata(raw: bytes) -> None:
    with pytest.raises(MalformedInput):
        FileMetadata.from_bytes(raw)


def test_metadata_truncations_are_malformed() -> None:
    raw = sample_meta().to_bytes()
    for cut in range(0, len(raw), 5):
        with pytest.raises(MalformedInput):
            FileMetadata.from_bytes(raw[:cut])
    with pytest.raises(MalformedInput):
        FileMetadata.from_bytes(raw, max_size=10)


def test_inconsistent_metadata_is_rejected() -> None:
    meta = sample_meta()
    with pytest.raises(ParameterError):
        dataclasses.replace(meta, replicas=3)  # roots have 2 per slice
    with pytest.raises(ParameterError):
        dataclasses.replace(meta, expires_at=meta.created_at - 1)
    with pytest.raises(ParameterError):
        dataclasses.replace(meta, aead="rot13")


# ------------------------------------------------------------------ stores


def test_directory_store(tmp_path: Path) -> None:
    store = open_replica_store(f"dir:{tmp_path}")
    assert isinstance(store, DirectoryReplicaStore)
    data = os.urandom(3000)
    meta = OWNER.upload(io.BytesIO(data), store, name="d", slice_size=1024, replicas=2, chunk_size=128)
    assert sorted(store.list(), key=lambda r: (r.slice_index, r.replica_index)) == meta.replica_ids()
    out = io.BytesIO()
    OWNER.download(meta, DirectoryReplicaStore(tmp_path), out)
    assert out.getvalue() == data
    rid = meta.replica_ids()[0]
    assert rid in store
    store.delete(rid)
    assert rid not in store
    with pytest.raises(NotFound):
        store.get(rid)
    with pytest.raises(NotFound):
        store.delete(rid)
    assert isinstance(open_replica_store("memory:"), MemoryReplicaStore)
    with pytest.raises(ParameterError):
        open_replica_store("s3://nope")


_BLOCK = 4096


@settings(fixture_ok, max_examples=40, deadline=None)
@given(size=st.one_of(st.integers(0, 3 * _BLOCK + 1), st.sampled_from([_BLOCK - 1, _BLOCK, _BLOCK + 1, 64 * _BLOCK + 16])),
       offset=st.sampled_from([0, 0, 1, _BLOCK]), durable=st.booleans(), in_map=st.booleans())
def test_directory_store_writes_exactly_the_bytes(tmp_path: Path, size: int, offset: int, durable: bool,
                                                  in_map: bool) -> None:
    # durable puts go through O_DIRECT for the block-aligned part and the page cache for the tail;
    # data handed over as a non-aligned view must land byte for byte, and overwrite cleanly; a
    # page-aligned buffer (an mmap, as a node's receive buffers are) goes to disk without staging
    import mmap

    store = DirectoryReplicaStore(tmp_path, durable=durable)
    rid = ReplicaId(bytes(16), 0, 0)
    backing: bytearray | mmap.mmap = bytearray(os.urandom(size + offset))
    if in_map:
        backing = mmap.mmap(-1, max(1, size + offset))
        backing[:size + offset] = os.urandom(size + offset)
    data = memoryview(backing)[offset:offset + size]
    store.put(rid, data)
    assert store.get(rid) == bytes(data)
    store.put(rid, bytes(data[: size // 2]))
    assert store.get(rid) == bytes(data[: size // 2])
    assert [p.name for p in (tmp_path / rid.file_id.hex()).iterdir()] == ["0.0"]  # no temporary left


def test_write_direct_larger_than_its_staging_buffer_and_on_any_file_system(tmp_path: Path) -> None:
    from dtxfast.storage import store as store_mod

    data = os.urandom(2 * store_mod._STAGE + 3 * _BLOCK + 7)
    dirs = [tmp_path] + [Path(d) for d in ("/dev/shm",) if os.access(d, os.W_OK)]
    for d in dirs:  # /dev/shm is tmpfs: O_DIRECT is refused on older kernels, the bytes must land all the same
        fd = os.open(d / f"w-{os.getpid()}", os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"x" * 3)  # an unaligned position: the direct part must not go wrong
            store_mod.write_direct(fd, data)
            os.lseek(fd, 0, os.SEEK_SET)
            got = b""
            while chunk := os.read(fd, 1 << 20):
                got += chunk
            assert got == b"x" * 3 + data
        finally:
            os.close(fd)
            os.unlink(d / f"w-{os.getpid()}")


def test_upload_to_a_callable_sink() -> None:
    got = []
    meta = OWNER.upload(io.BytesIO(b"abc" * 500), got.append, name="c", slice_size=512, replicas=2, chunk_size=64)
    assert [g.replica for g in got] == meta.replica_ids()
    assert [g.root for g in got] == [r for row in meta.roots for r in row]
    with pytest.raises(ParameterError):
        OWNER.upload(io.BytesIO(b"x"), got.append, name="c", replicas=0)
    with pytest.raises(ParameterError):
        OWNER.upload(io.BytesIO(b"x"), got.append, name="c", slice_size=0)


@pytest.mark.parametrize("size", [0, 1, 4096, 100_003])
def test_openssl_and_pycryptodome_aead_give_the_same_bytes(monkeypatch, size):
    from dtxfast.crypto import aead
    from dtxfast.crypto.aead import FileCipher

    if aead._OPENSSL is None:
        pytest.skip("cryptography's AESGCM is not available")
    fc = FileCipher(bytes(range(32)), b"file-1")
    plain = os.urandom(size)
    fast = fc.encrypt(3, 1, plain)
    monkeypatch.setattr(aead, "_OPENSSL", None)
    slow = fc.encrypt(3, 1, plain)
    assert fast == slow and fc.decrypt(3, 1, fast) == plain
    monkeypatch.undo()
    assert fc.decrypt(3, 1, slow) == plain
    tampered = bytearray(fast)
    tampered[-1] ^= 1
    for backend in (aead._OPENSSL, None):
        monkeypatch.setattr(aead, "_OPENSSL", backend)
        with pytest.raises(InvalidProof):
            fc.decrypt(3, 1, tampered)
        with pytest.raises(InvalidProof):  # moved to another place: the associated data differs
            fc.decrypt(3, 2, fast)


@pytest.mark.parametrize("size", [0, 1, 4096, 100_003])
def test_decrypt_into_and_encrypt_into_give_decrypt_and_encrypt(monkeypatch, size):
    from dtxfast.crypto import aead
    from dtxfast.crypto.aead import FileCipher

    fc = FileCipher(bytes(range(32)), b"file-1")
    plain = os.urandom(size)
    ct = fc.encrypt(3, 1, plain)
    tampered = bytearray(ct)
    tampered[len(tampered) // 2] ^= 1
    for backend in dict.fromkeys((aead._OPENSSL, None)):
        monkeypatch.setattr(aead, "_OPENSSL", backend)
        out = bytearray(os.urandom(size))  # a reused buffer: earlier contents must not matter
        assert fc.decrypt_into(3, 1, ct, out) == size and bytes(out) == plain
        view = memoryview(bytearray(size + 7))[3:3 + size]  # a window of a larger buffer
        assert fc.decrypt_into(3, 1, memoryview(ct), view) == size and view.tobytes() == plain
        with pytest.raises(InvalidProof):
            fc.decrypt_into(3, 1, tampered, bytearray(size))
        with pytest.raises(InvalidProof):  # another place: the associated data differs
            fc.decrypt_into(3, 2, ct, bytearray(size))
        with pytest.raises(ParameterError):
            fc.decrypt_into(3, 1, ct, bytearray(size + 1))
        with pytest.raises(ParameterError):
            fc.decrypt_into(3, 1, ct, bytes(size))
        enc = bytearray(os.urandom(size + 16))  # reused: earlier contents must not matter
        assert fc.encrypt_into(3, 1, plain, enc) == size + 16 and enc == ct
        with pytest.raises(ParameterError):
            fc.encrypt_into(3, 1, plain, bytearray(size + 15))
