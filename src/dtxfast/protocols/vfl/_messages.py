"""Wire format of the two-party VFL messages (versioned, length-checked)."""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from ...errors import MalformedInput, ProtocolError

__all__ = ["MsgType", "VFLMessage", "pack", "pack_ints", "pack_signed", "unpack", "unpack_ints", "unpack_signed"]

MAGIC = b"DVFL"
VERSION = 2  # 2: secret-shared mode; fast mode with a masked loss and a public exponent
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
    # secret-shared mode (dtxfast.protocols.vfl.shared)
    SHARE = 6  #: this party's share of the peer's weights, under this party's key
    SCORE = 7  #: the peer's partial scores plus a mask, under the peer's key
    RESIDUAL = 8  #: this party's share of the residual, under this party's key
    GRADIENT = 9  #: the peer's gradient plus a mask (and a masked loss term), under the peer's key
    EPOCH = 10  #: this party's share of the epoch's loss aggregate (only with amplitude > 0)
    FINAL = 11  #: this party's share of the peer's weights, in the clear (end of training)
    LOSS = 12  #: fast mode: this party's share of the epoch's loss aggregate
    COMPARE = 13  #: secret-shared logistic (sigmoid "clip"): an OT extension or a round of the comparison
    SELECT = 14  #: secret-shared logistic (sigmoid "clip"): a round of the multiplexer


@dataclass(frozen=True)
class VFLMessage:
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


def unpack(data: bytes, expect: MsgType | None = None) -> VFLMessage:
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
    return VFLMessage(mt, epoch, batch, tuple(sections))


def pack_ints(values: list[int], width: int) -> bytes:
    """Fixed-width big-endian encoding of non-negative ints."""
    return b"".join(int(v).to_bytes(width, "big") for v in values)


def unpack_ints(data: bytes, width: int, count: int) -> list[int]:
    """Inverse of :func:`pack_ints`; checks the length."""
    if len(data) != width * count:
        raise MalformedInput(f"expected {count} values of {width} bytes, got {len(data)} bytes")
    return [int.from_bytes(data[i : i + width], "big") for i in range(0, len(data), width)]


_WIDTH = struct.Struct(">H")


def pack_signed(values: list[int]) -> bytes:
    """Signed big integers, all at one width (two's complement), the width first."""
    vals = [int(v) for v in values]
    width = max([(v.bit_length() + 8) // 8 for v in vals] + [1])
    return _WIDTH.pack(width) + b"".join(v.to_bytes(width, "big", signed=True) for v in vals)


def unpack_signed(data: bytes, count: int) -> list[int]:
    """Inverse of :func:`pack_signed`; checks the count and the length."""
    if len(data) < _WIDTH.size:
        raise MalformedInput("truncated integer section")
    (width,) = _WIDTH.unpack_from(data)
    body = data[_WIDTH.size :]
    if width == 0 or len(body) != width * count:
        raise MalformedInput(f"expected {count} integers of {width} bytes, got {len(body)} bytes")
    return [int.from_bytes(body[i : i + width], "big", signed=True) for i in range(0, len(body), width)]
