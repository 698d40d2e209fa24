"""AEAD (AES-256-GCM) and HKDF-SHA256 key derivation for stored replicas.

AES-GCM runs in OpenSSL through ``cryptography`` (AES-NI and carry-less multiply, in place:
3-6x pycryptodome's GCM on the project's machines) and falls back to pycryptodome's where
``cryptography`` is missing; both give the same bytes. ``DTXFAST_AEAD=pycryptodome``, set before
dtxfast is imported, forces the fallback.

Every replica of every slice of a file is encrypted under its own key and nonce, derived in two
HKDF-SHA256 steps from the owner's 32-byte secret::

    file_key     = HKDF-SHA256(ikm=secret, salt=file_id, info="dtxfast/file-key/v1", length=32)
    key || nonce = HKDF-SHA256(ikm=file_key, salt=file_id,
                               info="dtxfast/replica/v1" || u64be(slice) || u32be(replica),
                               length=32 + 12)

The file key opens every replica of one file and nothing else: it is what an owner hands (sealed)
to an executor allowed to read that file (:class:`FileCipher`), while the secret stays home.

A key encrypts exactly one message, so a nonce is never reused under a key; two replicas of a
slice are encryptions under unrelated keys and share no ciphertext block (storage nodes can
neither pool nor deduplicate them). The associated data binds a replica to its place (file id,
slice index, replica index), so a replica moved to another place fails its tag.

Examples
--------
>>> from dtxfast.crypto.aead import FileCipher, ReplicaCipher
>>> cipher = ReplicaCipher(b"\\x07" * 32)
>>> fid = bytes(16)
>>> ct = cipher.encrypt(fid, 0, 1, b"hello")
>>> len(ct)                                       # ciphertext || 16-byte tag
21
>>> cipher.decrypt(fid, 0, 1, ct)
b'hello'
>>> cipher.encrypt(fid, 0, 2, b"hello") == ct     # another replica: unrelated bytes
False
>>> FileCipher(cipher.file_key(fid), fid).decrypt(0, 1, ct)   # only the file key is needed
b'hello'

"""

from __future__ import annotations

import os
import struct
from typing import Any

from Crypto.Cipher import AES
from Crypto.Hash import SHA256
from Crypto.Protocol.KDF import HKDF

from ..errors import InvalidProof, MalformedInput, ParameterError

__all__ = [
    "AEAD_NAME",
    "KEY_SIZE",
    "NONCE_SIZE",
    "SECRET_SIZE",
    "TAG_SIZE",
    "FileCipher",
    "ReplicaCipher",
    "hkdf_sha256",
]

TAG_SIZE = 16
KEY_SIZE = 32
NONCE_SIZE = 12
SECRET_SIZE = 32
AEAD_NAME = "aes-256-gcm"
_INFO = b"dtxfast/replica/v1"
_FILE_INFO = b"dtxfast/file-key/v1"


def _openssl_aesgcm() -> Any:
    if os.environ.get("DTXFAST_AEAD", "").lower() == "pycryptodome":
        return None
    try:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError:  # pragma: no cover - cryptography is a dependency
        return None
    if not hasattr(AESGCM, "encrypt_into"):  # pragma: no cover - cryptography < 45
        return None
    return AESGCM, InvalidTag


_OPENSSL = _openssl_aesgcm()


def hkdf_sha256(secret: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    """HKDF-SHA256 (RFC 5869): ``length`` bytes from ``secret``, ``salt`` and ``info``."""
    if not 1 <= length <= 255 * 32:
        raise ParameterError("HKDF-SHA256 output length must be in [1, 8160]")
    out = HKDF(secret, length, salt, SHA256, num_keys=1, context=info)
    assert isinstance(out, bytes)
    return out


def _check_file_id(file_id: bytes) -> bytes:
    if not isinstance(file_id, (bytes, bytearray)) or not 1 <= len(file_id) <= 64:
        raise ParameterError("file_id must be 1 to 64 bytes")
    return bytes(file_id)


class FileCipher:
    """Encrypts and decrypts the replicas of one file (AES-256-GCM, a fresh key per replica).

    Parameters
    ----------
    file_key : bytes
        The file's 32-byte key (:meth:`ReplicaCipher.file_key`).
    file_id : bytes
        The file id (1 to 64 bytes).
    """

    __slots__ = ("_file_id", "_file_key")

    def __init__(self, file_key: bytes, file_id: bytes) -> None:
        if not isinstance(file_key, (bytes, bytearray)) or len(file_key) != KEY_SIZE:
            raise ParameterError(f"a file key is {KEY_SIZE} bytes")
        self._file_key = bytes(file_key)
        self._file_id = _check_file_id(file_id)

    @property
    def file_id(self) -> bytes:
        return self._file_id

    def key_and_nonce(self, slice_index: int, replica_index: int) -> tuple[bytes, bytes]:
        """The (key, nonce) of one replica."""
        if not 0 <= slice_index < 2**64 or not 0 <= replica_index < 2**32:
            raise ParameterError("slice or replica index out of range")
        okm = hkdf_sha256(self._file_key, self._file_id, _INFO + struct.pack(">QI", slice_index, replica_index),
                          KEY_SIZE + NONCE_SIZE)
        return okm[:KEY_SIZE], okm[KEY_SIZE:]

    def _aad(self, slice_index: int, replica_index: int) -> bytes:
        where = struct.pack(">QI", slice_index, replica_index)
        return _INFO + bytes([len(self._file_id)]) + self._file_id + where

    def _cipher(self, slice_index: int, replica_index: int) -> Any:
        key, nonce = self.key_and_nonce(slice_index, replica_index)
        c = AES.new(key, AES.MODE_GCM, nonce=nonce, mac_len=TAG_SIZE)
        c.update(self._aad(slice_index, replica_index))
        return c

    def encrypt(self, slice_index: int, replica_index: int, plaintext: bytes | bytearray | memoryview) -> bytearray:
        """``ciphertext || tag`` of one replica (a bytearray, written in place: no extra copy)."""
        n = len(plaintext)
        out = bytearray(n + TAG_SIZE)
        if _OPENSSL is not None:
            key, nonce = self.key_and_nonce(slice_index, replica_index)
            _OPENSSL[0](key).encrypt_into(nonce, plaintext, self._aad(slice_index, replica_index), out)
            return out
        c = self._cipher(slice_index, replica_index)
        view = memoryview(out)
        if n:
            c.encrypt(plaintext, output=view[:n])
        view[n:] = c.digest()
        return out

    def encrypt_into(self, slice_index: int, replica_index: int, plaintext: bytes | bytearray | memoryview,
                     out: bytearray | memoryview) -> int:
        """Write ``ciphertext || tag`` of one replica into ``out`` (exactly ``len(plaintext) + 16``
        writable bytes, e.g. a reused buffer); returns that length. Same bytes as :meth:`encrypt`.

        Examples
        --------
        >>> fc = FileCipher(bytes(32), b"f")
        >>> out = bytearray(5 + TAG_SIZE)
        >>> fc.encrypt_into(0, 1, b"hello", out) == 21 and out == fc.encrypt(0, 1, b"hello")
        True
        """
        n = len(plaintext)
        view = memoryview(out).cast("B")
        if len(view) != n + TAG_SIZE or view.readonly:
            raise ParameterError(f"the output buffer must be {n + TAG_SIZE} writable bytes")
        if _OPENSSL is not None:
            key, nonce = self.key_and_nonce(slice_index, replica_index)
            _OPENSSL[0](key).encrypt_into(nonce, plaintext, self._aad(slice_index, replica_index), view)
            return n + TAG_SIZE
        c = self._cipher(slice_index, replica_index)
        if n:
            c.encrypt(plaintext, output=view[:n])
        view[n:] = c.digest()
        return n + TAG_SIZE

    def decrypt(self, slice_index: int, replica_index: int, data: bytes | bytearray | memoryview) -> bytes:
        """Plaintext of one replica; raises InvalidProof if the tag does not verify (tampering)."""
        if len(data) < TAG_SIZE:
            raise MalformedInput("a replica is shorter than its tag")
        bad = InvalidProof(
            f"replica {replica_index} of slice {slice_index} fails its AEAD tag (tampered or misplaced)")
        if _OPENSSL is not None:
            aesgcm, invalid_tag = _OPENSSL
            key, nonce = self.key_and_nonce(slice_index, replica_index)
            try:
                return aesgcm(key).decrypt(nonce, data, self._aad(slice_index, replica_index))
            except invalid_tag:
                raise bad from None
        c = self._cipher(slice_index, replica_index)
        mv = memoryview(data)
        try:
            return c.decrypt_and_verify(mv[:-TAG_SIZE], mv[-TAG_SIZE:])
        except ValueError:
            raise bad from None

    def decrypt_into(self, slice_index: int, replica_index: int, data: bytes | bytearray | memoryview,
                     out: bytearray | memoryview) -> int:
        """Decrypt one replica into ``out`` (exactly ``len(data) - 16`` writable bytes); returns that length.

        For callers that reuse their buffers (a download decrypts every slice into the same few).
        If the tag does not verify, InvalidProof is raised and ``out`` holds unauthenticated
        bytes: the caller must not use them.

        Examples
        --------
        >>> fc = FileCipher(bytes(32), b"f")
        >>> out = bytearray(5)
        >>> fc.decrypt_into(0, 1, fc.encrypt(0, 1, b"hello"), out), bytes(out)
        (5, b'hello')
        """
        n = len(data) - TAG_SIZE
        if n < 0:
            raise MalformedInput("a replica is shorter than its tag")
        view = memoryview(out).cast("B")
        if len(view) != n or view.readonly:
            raise ParameterError(f"the output buffer must be {n} writable bytes")
        bad = InvalidProof(
            f"replica {replica_index} of slice {slice_index} fails its AEAD tag (tampered or misplaced)")
        if _OPENSSL is not None:
            aesgcm, invalid_tag = _OPENSSL
            key, nonce = self.key_and_nonce(slice_index, replica_index)
            try:
                return int(aesgcm(key).decrypt_into(nonce, data, self._aad(slice_index, replica_index), view))
            except invalid_tag:
                raise bad from None
        c = self._cipher(slice_index, replica_index)
        mv = memoryview(data)
        if n:
            c.decrypt(mv[:n], output=view)
        try:
            c.verify(mv[n:])
        except ValueError:
            raise bad from None
        return n


class ReplicaCipher:
    """An owner's cipher: derives each file's key from the owner's secret (see the module docstring).

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

    def file_key(self, file_id: bytes) -> bytes:
        """The 32-byte key of one file (opens that file's replicas only)."""
        return hkdf_sha256(self._secret, _check_file_id(file_id), _FILE_INFO, KEY_SIZE)

    def for_file(self, file_id: bytes) -> FileCipher:
        """The :class:`FileCipher` of one file."""
        return FileCipher(self.file_key(file_id), file_id)

    def key_and_nonce(self, file_id: bytes, slice_index: int, replica_index: int) -> tuple[bytes, bytes]:
        """The (key, nonce) of one replica."""
        return self.for_file(file_id).key_and_nonce(slice_index, replica_index)

    def encrypt(self, file_id: bytes, slice_index: int, replica_index: int,
                plaintext: bytes | bytearray | memoryview) -> bytearray:
        """``ciphertext || tag`` of one replica."""
        return self.for_file(file_id).encrypt(slice_index, replica_index, plaintext)

    def decrypt(self, file_id: bytes, slice_index: int, replica_index: int, data: bytes) -> bytes:
        """Plaintext of one replica; raises InvalidProof if the tag does not verify."""
        return self.for_file(file_id).decrypt(slice_index, replica_index, data)
