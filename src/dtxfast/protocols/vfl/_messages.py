"""Wire format of the two-party VFL messages (versioned, length-checked)."""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from ...errors import MalformedInput, ProtocolError

__all__ = ["MsgType", "VflMessage", "pack", "pack_ints", "unpack", "unpack_ints"]

MAGIC = b"DVFL"
VERSION = 1
#: magic, version, type, flags, epoch, batch, number of sections
_HEADER = struct.Struct(">4sBBHIIH")
_LEN = struct.Struct(">I")
MAX_SECTIONS = 16


class MsgType(enum.IntEnum):
    """Message types of the VFL training and prediction protocols."""

    HELLO = 1  #: public key, row and column counts, digest of the training configuration
    PARTIAL = 2  #: this batch's partial residual, encrypted under the sender's key
    MASKED = 3  #: the peer's gradient (and loss term) under the peer's key, gradient masked
    UNMASKED = 4  #: decrypted masked gradient residues (and, from the label party, the batch loss)
    PREDICT = 5  #: a partial prediction (feature party -> label party)


@dataclass(frozen=True)
class VflMessage:
    """A decoded message: its type, epoch and batch index, and its byte sections."""

    type: MsgType
    epoch: int
    batch: int
    sections: tuple[bytes, ...]


def pack(mtype: MsgType, epoch: int, batch: int, sections: list[bytes]) -> bytes:
    """Serialize one message."""
    parts = [_HEADER.pack(MAGIC, VERSION, int(mtype), 0, epoch, batch, len(sections))]
    for s in sections:
        parts.append(_LEN.pack(len(s)))
        parts.append(s)
    return b"".join(parts)


def unpack(data: bytes, expect: MsgType | None = None) -> VflMessage:
    """Parse one message; raises MalformedInput on a bad frame, ProtocolError on a wrong type."""
    data = bytes(data)
    if len(data) < _HEADER.size:
        raise MalformedInput("VFL message is truncated")
    magic, version, mtype, flags, epoch, batch, count = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise MalformedInput("not a VFL message")
    if version != VERSION:
        raise MalformedInput(f"unsupported VFL message version {version}")
    try:
        mt = MsgType(mtype)
    except ValueError:
        raise MalformedInput(f"unknown VFL message type {mtype}") from None
    if flags != 0 or count > MAX_SECTIONS:
        raise MalformedInput("malformed VFL message header")
    pos = _HEADER.size
    sections = []
    for _ in range(count):
        if pos + _LEN.size > len(data):
            raise MalformedInput("VFL message is truncated")
        (n,) = _LEN.unpack_from(data, pos)
        pos += _LEN.size
        if pos + n > len(data):
            raise MalformedInput("VFL message is truncated")
        sections.append(data[pos : pos + n])
        pos += n
    if pos != len(data):
        raise MalformedInput("trailing bytes after the VFL message")
    if expect is not None and mt != expect:
        raise ProtocolError(f"expected a {expect.name} message, got {mt.name}")
    return VflMessage(mt, epoch, batch, tuple(sections))


def pack_ints(values: list[int], width: int) -> bytes:
    """Fixed-width big-endian encoding of non-negative ints."""
    return b"".join(int(v).to_bytes(width, "big") for v in values)


def unpack_ints(data: bytes, width: int, count: int) -> list[int]:
    """Inverse of :func:`pack_ints`; checks the length."""
    if len(data) != width * count:
        raise MalformedInput(f"expected {count} values of {width} bytes, got {len(data)} bytes")
    return [int.from_bytes(data[i : i + width], "big") for i in range(0, len(data), width)]
