"""AEAD (AES-256-GCM, pycryptodome) and HKDF-SHA256 key derivation for stored replicas.

Every replica of every slice of a file is encrypted under its own key and nonce, both derived
with HKDF-SHA256 from the owner's 32-byte secret::

    key || nonce = HKDF-SHA256(ikm=secret, salt=file_id,
                               info="dtxfast/replica/v1" || u64be(slice) || u32be(replica),
                               length=32 + 12)

A key encrypts exactly one message, so a nonce is never reused under a key; two replicas of a
slice are encryptions under unrelated keys and share no ciphertext block (storage nodes can
neither pool nor deduplicate them). The associated data binds a replica to its place (file id,
slice index, replica index), so a replica moved to another place fails its tag.

Examples
--------
>>> from dtxfast.crypto.aead import ReplicaCipher
>>> cipher = ReplicaCipher(b"\\x07" * 32)
>>> fid = bytes(16)
>>> ct = cipher.encrypt(fid, 0, 1, b"hello")
>>> len(ct)                                       # ciphertext || 16-byte tag
21
>>> cipher.decrypt(fid, 0, 1, ct)
b'hello'
>>> cipher.encrypt(fid, 0, 2, b"hello") == ct     # another replica: unrelated bytes
False
"""

from __future__ import annotations

import struct

from Crypto.Cipher import AES
from Crypto.Hash import SHA256
from Crypto.Protocol.KDF import HKDF

from ..errors import InvalidProof, MalformedInput, ParameterError

__all__ = ["AEAD_NAME", "KEY_SIZE", "NONCE_SIZE", "SECRET_SIZE", "TAG_SIZE", "ReplicaCipher", "hkdf_sha256"]

TAG_SIZE = 16
KEY_SIZE = 32
NONCE_SIZE = 12
SECRET_SIZE = 32
AEAD_NAME = "aes-256-gcm"
_INFO = b"dtxfast/replica/v1"


def hkdf_sha256(secret: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    """HKDF-SHA256 (RFC 5869): ``length`` bytes from ``secret``, ``salt`` and ``info``."""
    if not 1 <= length <= 255 * 32:
        raise ParameterError("HKDF-SHA256 output length must be in [1, 8160]")
    out = HKDF(secret, length, salt, SHA256, num_keys=1, context=info)
    assert isinstance(out, bytes)
    return out


class ReplicaCipher:
    """Encrypts and decrypts the replicas of one owner (AES-256-GCM, a fresh key per replica).

    Parameters
    ----------
    secret : bytes
        The owner's 32-byte secret (keep it; it decrypts every replica of every file).
    """

    __slots__ = ("_secret",)

    def __init__(self, secret: bytes) -> None:
        if not isinstance(secret, (bytes, bytearray)) or len(secret) != SECRET_SIZE:
            raise ParameterError(f"the owner secret is {SECRET_SIZE} bytes")
        self._secret = bytes(secret)

    @staticmethod
    def _aad(file_id: bytes, slice_index: int, replica_index: int) -> bytes:
        return _INFO + struct.pack(">B", len(file_id)) + file_id + struct.pack(">QI", slice_index, replica_index)

    def key_and_nonce(self, file_id: bytes, slice_index: int, replica_index: int) -> tuple[bytes, bytes]:
        """The (key, nonce) of one replica."""
        if not isinstance(file_id, (bytes, bytearray)) or not 1 <= len(file_id) <= 64:
            raise ParameterError("file_id must be 1 to 64 bytes")
        if not 0 <= slice_index < 2**64 or not 0 <= replica_index < 2**32:
            raise ParameterError("slice or replica index out of range")
        okm = hkdf_sha256(self._secret, bytes(file_id), _INFO + struct.pack(">QI", slice_index, replica_index),
                          KEY_SIZE + NONCE_SIZE)
        return okm[:KEY_SIZE], okm[KEY_SIZE:]

    def _cipher(self, file_id: bytes, slice_index: int, replica_index: int) -> object:
        key, nonce = self.key_and_nonce(file_id, slice_index, replica_index)
        c = AES.new(key, AES.MODE_GCM, nonce=nonce, mac_len=TAG_SIZE)
        c.update(self._aad(bytes(file_id), slice_index, replica_index))
        return c

    def encrypt(self, file_id: bytes, slice_index: int, replica_index: int,
                plaintext: bytes | bytearray | memoryview) -> bytearray:
        """``ciphertext || tag`` of one replica (a bytearray, written in place: no extra copy)."""
        c = self._cipher(file_id, slice_index, replica_index)
        n = len(plaintext)
        out = bytearray(n + TAG_SIZE)
        view = memoryview(out)
        if n:
            c.encrypt(plaintext, output=view[:n])  # type: ignore[attr-defined]
        view[n:] = c.digest()  # type: ignore[attr-defined]
        return out

    def decrypt(self, file_id: bytes, slice_index: int, replica_index: int, data: bytes) -> bytes:
        """Plaintext of one replica; raises InvalidProof if the tag does not verify (tampering)."""
        if len(data) < TAG_SIZE:
            raise MalformedInput("a replica is shorter than its tag")
        c = self._cipher(file_id, slice_index, replica_index)
        mv = memoryview(data)
        try:
            return c.decrypt_and_verify(mv[:-TAG_SIZE], mv[-TAG_SIZE:])  # type: ignore[attr-defined]
        except ValueError:
            raise InvalidProof(
                f"replica {replica_index} of slice {slice_index} fails its AEAD tag (tampered or misplaced)"
            ) from None
