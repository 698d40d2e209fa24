"""Helpers of the storage tests: an independent Merkle reference (the ``backend`` fixture is in conftest.py)."""

from __future__ import annotations

import hashlib
import importlib

from backends import compiled_or_skip


def kernel_module(name: str):
    if name == "python":
        return importlib.import_module("dtxfast.crypto._merkle_py")
    return compiled_or_skip("_merkle")


def reference_root(data: bytes, chunk_size: int) -> bytes:
    """Merkle root written from the module docstring's rules, independently of dtxfast's code."""
    if not data:
        return hashlib.sha256(b"").digest()
    level = [hashlib.sha256(b"\x00" + data[i : i + chunk_size]).digest() for i in range(0, len(data), chunk_size)]
    while len(level) > 1:
        nxt = [hashlib.sha256(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def flip(b: bytes, bit: int) -> bytes:
    """``b`` with one bit flipped (``bit`` taken modulo the bit length)."""
    bit %= len(b) * 8
    out = bytearray(b)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)
