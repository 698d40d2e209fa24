"""Shared fixtures of the storage tests: the Merkle backend switch and an independent reference."""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Iterator

import pytest

from dtxfast.crypto import merkle

BACKENDS = ["compiled", "python"]


def kernel_module(name: str):
    if name == "python":
        return importlib.import_module("dtxfast.crypto._merkle_py")
    return pytest.importorskip("dtxfast._kernels._merkle", reason="compiled _merkle kernel not built")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Run the test once with the compiled kernel and once with the pure-Python twin."""
    monkeypatch.setattr(merkle, "_kernel", kernel_module(request.param))
    yield request.param


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
