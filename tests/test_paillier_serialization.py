"""Paillier serialization: round trips, and every malformed input raises a typed error."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dtxfast.crypto.paillier import EncryptedVector, PaillierPrivateKey, PaillierPublicKey, generate_keypair
from dtxfast.errors import DtxError, KeyMismatch, MalformedInput

from paillier_helpers import build_keys


def test_key_round_trips(keys):
    pk2 = PaillierPublicKey.from_bytes(keys.pk.to_bytes())
    assert pk2 == keys.pk and pk2.fingerprint == keys.pk.fingerprint
    sk2 = PaillierPrivateKey.from_bytes(keys.sk.to_bytes())
    assert sk2 == keys.sk
    assert sk2.decrypt(keys.pk.encrypt([42])).tolist() == [42]


def test_standard_mode_survives_serialization(primes_1024):
    k = build_keys("compiled", *primes_1024, obfuscation="standard")
    assert PaillierPublicKey.from_bytes(k.pk.to_bytes()).obfuscation == "standard"
    assert PaillierPrivateKey.from_bytes(k.sk.to_bytes()).public_key.obfuscation == "standard"


def test_vector_round_trip_and_minimal_size(keys):
    ev = keys.pk.encrypt([1.5, -2.0, 3.25])
    data = ev.to_bytes()
    ct_bytes = (keys.pk.nsq.bit_length() + 63) // 64 * 8
    assert ct_bytes == 256  # 1024-bit key: 2048-bit ciphertexts, 256 bytes each
    assert len(data) == 5 + 27 + 3 * ct_bytes
    back = EncryptedVector.from_bytes(data, keys.pk)
    assert keys.sk.decrypt(back).tolist() == [1.5, -2.0, 3.25]
    assert back.raw_ciphertexts() == ev.raw_ciphertexts()  # fresh ciphertexts are sent as they are


def test_operation_results_are_rerandomized_before_leaving(keys):
    ev = keys.pk.encrypt([1, 2]) * 3
    sent = EncryptedVector.from_bytes(ev.to_bytes(), keys.pk)
    assert set(sent.raw_ciphertexts()).isdisjoint(ev.raw_ciphertexts())
    assert keys.sk.decrypt(sent).tolist() == [3, 6]
    raw = EncryptedVector.from_bytes(ev.to_bytes(rerandomize=False), keys.pk)
    assert raw.raw_ciphertexts() == ev.raw_ciphertexts()


def test_empty_vector_round_trip(keys):
    ev = keys.pk.encrypt([])
    back = EncryptedVector.from_bytes(ev.to_bytes(), keys.pk)
    assert len(back) == 0


def test_wrong_key_is_key_mismatch(keys):
    other, _ = generate_keypair(1024)
    data = keys.pk.encrypt([1]).to_bytes()
    with pytest.raises(KeyMismatch):
        EncryptedVector.from_bytes(data, other)


def _vector_bytes(keys) -> bytes:
    return keys.pk.encrypt([1, 2, 3]).to_bytes()


def test_every_truncation_is_refused(keys):
    data = _vector_bytes(keys)
    for cut in list(range(0, 40)) + [len(data) - 256, len(data) - 1]:
        with pytest.raises(MalformedInput):
            EncryptedVector.from_bytes(data[:cut], keys.pk)


def test_trailing_bytes_and_wrong_counts_refused(keys):
    data = _vector_bytes(keys)
    with pytest.raises(MalformedInput):
        EncryptedVector.from_bytes(data + b"\x00", keys.pk)
    # header claims more ciphertexts than the payload has (and a huge count: no allocation)
    for count in (4, 2, 2**32 - 1):
        forged = bytearray(data)
        struct.pack_into("<I", forged, 5 + 16 + 4 + 1, count)
        with pytest.raises(MalformedInput):
            EncryptedVector.from_bytes(bytes(forged), keys.pk)


def test_bad_header_fields_refused(keys):
    data = bytearray(_vector_bytes(keys))
    for offset, value in ((0, b"XTX"), (3, b"P"), (4, b"\x02")):
        forged = bytearray(data)
        forged[offset : offset + len(value)] = value
        with pytest.raises(MalformedInput):
            EncryptedVector.from_bytes(bytes(forged), keys.pk)
    forged = bytearray(data)
    struct.pack_into("<i", forged, 5 + 16, -1)  # negative exponent
    with pytest.raises(MalformedInput):
        EncryptedVector.from_bytes(bytes(forged), keys.pk)
    forged = bytearray(data)
    forged[5 + 16 + 4] = 7  # unknown flags
    with pytest.raises(MalformedInput):
        EncryptedVector.from_bytes(bytes(forged), keys.pk)
    forged = bytearray(data)
    struct.pack_into("<H", forged, 5 + 16 + 4 + 1 + 4, 128)  # wrong ciphertext width
    with pytest.raises(MalformedInput):
        EncryptedVector.from_bytes(bytes(forged), keys.pk)


def test_out_of_range_ciphertexts_refused(keys):
    data = bytearray(_vector_bytes(keys))
    head = 5 + 27
    zero = bytes(data[:head]) + bytes(256) + bytes(data[head + 256 :])
    with pytest.raises(MalformedInput):
        EncryptedVector.from_bytes(zero, keys.pk)
    too_big = bytes(data[:head]) + (keys.pk.nsq).to_bytes(256, "little") + bytes(data[head + 256 :])
    with pytest.raises(MalformedInput):
        EncryptedVector.from_bytes(too_big, keys.pk)
    ones = bytes(data[:head]) + b"\xff" * 256 + bytes(data[head + 256 :])
    with pytest.raises(MalformedInput):
        EncryptedVector.from_bytes(ones, keys.pk)


@given(blob=st.binary(max_size=600))
def test_random_bytes_never_crash(keys, blob):
    for parse in (
        lambda b: EncryptedVector.from_bytes(b, keys.pk),
        PaillierPublicKey.from_bytes,
        PaillierPrivateKey.from_bytes,
    ):
        try:
            parse(blob)
        except (MalformedInput, KeyMismatch):
            pass


@given(data=st.data())
def test_flipped_header_bytes_raise_typed_errors(keys, data):
    blob = bytearray(_vector_bytes(keys))
    i = data.draw(st.integers(0, 5 + 27 - 1))
    blob[i] ^= data.draw(st.integers(1, 255))
    try:
        ev = EncryptedVector.from_bytes(bytes(blob), keys.pk)
    except DtxError as exc:
        assert isinstance(exc, (MalformedInput, KeyMismatch))
    else:  # a flip that kept the format valid (exponent or flag bits) decodes, never crashes
        keys.sk.decrypt(ev)


def test_public_key_malformed():
    pk, sk = generate_keypair(1024)
    data = pk.to_bytes()
    for bad in (data[:-1], data + b"\x00", b"", b"DTXP", data[:3] + b"S" + data[4:]):
        with pytest.raises(MalformedInput):
            PaillierPublicKey.from_bytes(bad)
    small = data[:5] + struct.pack("<BH", 0, 64) + (2**511 + 1).to_bytes(64, "big")
    with pytest.raises(MalformedInput):
        PaillierPublicKey.from_bytes(small)
    with pytest.raises(MalformedInput):
        PaillierPublicKey.from_bytes(data[:5] + b"\x09" + data[6:])  # unknown mode


def test_private_key_malformed():
    pk, sk = generate_keypair(1024)
    data = sk.to_bytes()
    for bad in (data[:-1], data + b"\x00", data[:7], b""):
        with pytest.raises(MalformedInput):
            PaillierPrivateKey.from_bytes(bad)
    p = sk.p
    composite = data[:5] + struct.pack("<BH", 0, 64) + (p + 2).to_bytes(64, "big")
    composite += struct.pack("<H", 64) + sk.q.to_bytes(64, "big")
    with pytest.raises(MalformedInput):
        PaillierPrivateKey.from_bytes(composite)


def test_serialized_vector_decrypts_identically_across_backends(both_keys):
    comp, ref = both_keys
    ev = comp.pk.encrypt(np.linspace(-3, 3, 7))
    back = EncryptedVector.from_bytes(ev.to_bytes(), ref.pk)
    assert ref.sk.decrypt(back).tolist() == comp.sk.decrypt(ev).tolist()
