"""Private set intersection (L2): RSA blind signatures (default), X25519 ECDH or OT extension (KKRT16).

Vertical federated learning starts by aligning samples: the parties find the ids they share and
reveal no other id. Each party is a pure state machine: it takes a message (``bytes``) and returns
the next ones; no sockets, no files. :func:`run_two_party` and :func:`run_three_party` drive them
in-process; ``dtx psi`` drives two of them over a loopback socket.

Two parties, RSA mode (De Cristofaro–Tsudik, blind-signature PSI)
------------------------------------------------------------------
The *signer* S holds an RSA key (2048 bits by default) and ids Y; the *requester* R holds ids X.

1. S → R ``HELLO``: the protocol version and mode, the public key (n, e), |Y|, the chunk size.
2. R → S ``HELLO``: the same version, mode and key id (R accepts them), |X|, R's chunk size; or
   ``REFUSE`` with the reason (another mode than R wants), and R stops.
3. S → R ``TAGS`` chunks: ``H(FDH(y)^d)`` for its own ids (deduplicated, sorted); or ``REFUSE``
   (R's HELLO names another mode or key, or more ids than ``max_requests``), and S stops.
4. R → S ``REQUEST`` chunks: ``FDH(x) * r^e mod n`` per id, with fresh random r.
5. S → R ``RESPONSE`` chunks: the blind signatures ``(FDH(x) r^e)^d = FDH(x)^d r``.
6. R checks the signatures, unblinds (``* r^-1``), hashes to tags and matches: ``X ∩ Y``.

The two HELLOs are the handshake: each side checks the other's before any work (S computes no tag
and signs nothing before R's HELLO; R blinds nothing before S's HELLO matched the mode it wants,
``PSIRequester(mode=...)``), so parties that disagree learn it at once, not after a run.

What each side learns (semi-honest parties; one-more-RSA assumption; SHA-256 as random oracle):

- S learns |X| (the number of blinded values; duplicates in X are counted) and nothing else: a
  blinded value is uniform in Z_n^* whatever the id (the same id blinded twice gives unrelated
  values). S does **not** learn the intersection, unless R tells it.
- R learns X ∩ Y and |Y| (``HELLO`` announces the length of the signer's list, duplicates
  included; the tags are the distinct ones). Tags of ids in Y \\ X are pseudorandom to
  R: computing the tag of an id needs a signature, which only S can make, and R asked only for its
  own ids. A malicious R could ask S to sign ids it does not hold (S cannot tell): limit the number
  of signatures with ``max_requests`` if R's set size is known.
- Dictionary attacks: R can test any id it guesses only by asking S; S can test any guessed id
  against R's tags only if R shows them to S, which the protocol never does.

ECDH mode (PaddleDTX-style, X25519)
------------------------------------
Same messages and roles: S masks with a secret scalar a, R with b. R sends ``b·H(x)``, S answers
``a·b·H(x)`` and sends ``a·H(y)``; R computes ``b·a·H(y)`` and matches hashes of the doubly
masked points. Leakage is the same as above (|X| to S, X ∩ Y and |Y| to R) under decisional
Diffie–Hellman on Curve25519 and its twist. S does one X25519 operation per id of X and of Y
instead of one RSA-2048 private operation: several times less work, but R's work is about the
same as S's (in RSA mode R's work is a small fraction of S's).

OT mode (KKRT16: an OPRF from OT extension)
--------------------------------------------
The signer S holds an :class:`~dtxfast.crypto.ot.OPRFKey` (512 secret bits ``s``, fresh per run)
and ids Y; the requester R holds ids X and learns ``X ∩ Y``. Messages (all after the handshake):

1. S → R ``HELLO``: as above, plus S's 16-byte seed and a base-OT point ``A`` (Ed25519).
2. R → S ``HELLO`` (|X|, chunk size), then ``SETUP``: R's 16-byte seed and 128 base-OT points
   (R's choice bits Δ). The seeds of both give the id-hash key and the code key. Before it, R
   hashes its ids (keyed SHA-256 to 128 bits) into a cuckoo table of ``1.27 |X| + 1`` bins
   (rounded up to 128) with 3 hash functions; an insertion failure draws a fresh R seed (a
   retry; S sees only the final seed), empty bins get a dummy input.
3. S → R ``EXT``: IKNP's matrix (512 × 128 bits): 512 random OTs with S's choice bits ``s``.
4. R → S ``REQUEST`` chunks: the rows ``U_b = T0_b ^ T1_b ^ C(x_b)`` of KKRT16's OPRF, one
   64-byte row per bin (no answers: R streams them all).
5. S → R ``TAGS`` chunks: for each distinct ``y`` in Y, its OPRF value at each of its 3 bins
   (``w`` bytes, ``w = ceil((40 + log2(3 |X| |Y|)) / 8)``, 8..16), all shuffled (Fisher–Yates).
6. R compares them with its own bins' values: ``X ∩ Y`` (false match probability below 2^-40).

What each side learns (semi-honest parties; CDH on Ed25519 for the base OTs; AES as a PRG and
pseudorandom code, SHA-256 as a correlation-robust hash / random oracle):

- S learns |X| (R's HELLO; the table size follows from it) and nothing else: ``U`` is masked by
  ``T1``, which S does not know (IKNP hides Δ, the base OTs hide R's keys).
- R learns ``X ∩ Y`` and |Y| (HELLO), and the number of *distinct* ids of Y (3 values each). The
  values of ids outside X are pseudorandom to R (the OPRF needs ``s``); their order is a random
  permutation, and duplicates of Y are dropped before evaluation, so neither order nor
  multiplicity of Y leaks.
- What differs from RSA mode: no long-term key, so no signer tag cache (each run is a fresh
  OPRF; nothing can be precomputed for a dataset), both parties must be online for the whole run,
  and there is no three-party variant; R's work and S's work are about equal and both are cheap
  (AES and SHA-256 per bin and per id, no public-key operation per id). ``max_requests`` still
  bounds |X| as announced. Each party holds at most 2^24 ids (KKRT16's 512-bit code is sized for
  that many OPRF inputs at 128-bit security); a HELLO announcing more is refused.

Three parties (RSA mode)
------------------------
Parties A (the leader), B and C; C is the signer, its key defines the tags of everyone.

1. A and B each run the requester half with C and obtain the tags of their own ids. C sends its
   own tags to A only.
2. A matches: ``A ∩ C``. A sends B a ``RELAY`` message with the tags of ``A ∩ C`` (sorted).
3. B matches its tags against the relay: ``A ∩ B ∩ C``, and sends a ``RESULT`` message with the
   tags of the final intersection to A and to C, who map them back to their own ids.

Who learns what (semi-honest, no two parties colluding):

- A (leader): |C|, ``A ∩ C`` (a pairwise intersection, by design of the leader role), and the
  final ``A ∩ B ∩ C``. A learns nothing about B beyond the final intersection.
- B: |A ∩ C| (the size of the relay) and the final intersection; nothing about ``B ∩ C`` or
  ``A ∩ B`` beyond it: B never sees C's tags, and relay tags of ids B does not hold are
  pseudorandom to B.
- C (signer): |A| and |B| (the numbers of blinded values) and the final intersection (from the
  ``RESULT`` message; drop that message if C should not learn it).

If C colluded with B it could link the relay tags to its own ids (it can compute tags), i.e.
learn ``A ∩ C``; the scheme assumes no collusion.

Messages
--------
Every message starts with a 28-byte header: magic ``b"DPSI"``, version (2), type, mode, flags
(bit 0: last chunk), the 8-byte key id, a u32 sequence number, a u32 count, a u16 value width,
two zero bytes; then exactly ``count * width`` bytes. A message of another length, an unknown
version/type/mode, a count above ``MAX_COUNT`` or a width that does not fit the key raises
:class:`~dtxfast.errors.MalformedInput`; a message under another key raises
:class:`~dtxfast.errors.KeyMismatch`; a message out of order raises
:class:`~dtxfast.errors.ProtocolError`; a signature that does not verify raises
:class:`~dtxfast.errors.InvalidSignature`.

Examples
--------
>>> from dtxfast.crypto.blind_rsa import BlindRSASigner
>>> key = BlindRSASigner.generate(1024)
>>> s = PSISigner(["a", "b", "c"], key)
>>> r = PSIRequester(["b", "c", "d"])
>>> [x.decode() for x in run_two_party(r, s)]
['b', 'c']

OT mode:

>>> from dtxfast.crypto.ot import OPRFKey
>>> s = PSISigner(["a", "b", "c"], OPRFKey.generate())
>>> r = PSIRequester(["b", "c", "d"], mode="ot")
>>> [x.decode() for x in run_two_party(r, s)]
['b', 'c']
"""

from __future__ import annotations

import enum
import hashlib
import os
import struct
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Literal, Union

import numpy as np

from .._deprecated import renamed as _renamed
from ..crypto.blind_rsa import (
    TAG_SIZE,
    BlindedBatch,
    BlindRSAPublicKey,
    BlindRSASigner,
    IdBatch,
    Rng,
)
from ..crypto.ecdh import POINT_SIZE, ECDHMaskKey, ecdh_tags
from ..crypto.ot import OPRFKey
from ..errors import (
    KeyMismatch,
    MalformedInput,
    ParameterError,
    ProtocolError,
    StateError,
)

if TYPE_CHECKING:
    from ..compute import ComputeBackend
    from . import _psi_ot

__all__ = [
    "DEFAULT_CHUNK",
    "MAX_COUNT",
    "PROTOCOL_VERSION",
    "Mode",
    "MsgType",
    "PSIMessage",
    "PSIRequester",
    "PSISigner",
    "SignerTagCache",
    "ThreePartyResult",
    "is_refusal",
    "match_tags",
    "refusal",
    "run_three_party",
    "run_two_party",
]

#: version 2 added the requester's HELLO and REFUSE (the handshake); version 1 peers are refused
PROTOCOL_VERSION = 2
MAGIC = b"DPSI"
#: most values one message may carry
MAX_COUNT = 1 << 16
#: default values per request chunk
DEFAULT_CHUNK = 4096
_HEADER = struct.Struct(">4sBBBB8sIIHH")
HEADER_SIZE = _HEADER.size
_FLAG_LAST = 1
_HELLO = struct.Struct(">QI")

IdsLike = Union[IdBatch, Iterable[str]]
Progress = Callable[[int, int], None]


class MsgType(enum.IntEnum):
    """Kinds of PSI messages."""

    HELLO = 1
    REQUEST = 2
    RESPONSE = 3
    TAGS = 4
    RELAY = 5
    RESULT = 6
    REFUSE = 7
    SETUP = 8
    EXT = 9


class Mode(enum.IntEnum):
    """The cryptographic mode of a PSI run."""

    RSA = 1
    ECDH = 2
    OT = 3


@dataclass(frozen=True)
class PSIMessage:
    """One decoded PSI message; :meth:`encode` / :meth:`decode` are the wire form."""

    type: MsgType
    mode: Mode
    key_id: bytes
    seq: int
    count: int
    width: int
    last: bool
    body: bytes

    def encode(self) -> bytes:
        """The wire bytes (header + body)."""
        if len(self.body) != self.count * self.width:
            raise ParameterError("body length must equal count * width")
        head = _HEADER.pack(MAGIC, PROTOCOL_VERSION, int(self.type), int(self.mode),
                            _FLAG_LAST if self.last else 0, self.key_id, self.seq, self.count,
                            self.width, 0)
        return head + self.body

    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview, *, max_count: int = MAX_COUNT) -> PSIMessage:
        """Parse and length-check a message.

        Raises
        ------
        MalformedInput
            Truncated, oversized, wrong magic or version, unknown type or mode, bad length.
        """
        data = bytes(data)
        if len(data) < HEADER_SIZE:
            raise MalformedInput("PSI message is truncated")
        magic, version, mtype, mode, flags, key_id, seq, count, width, pad = _HEADER.unpack_from(data)
        if magic != MAGIC:
            raise MalformedInput("not a PSI message (bad magic)")
        if version != PROTOCOL_VERSION:
            raise MalformedInput(f"unsupported PSI protocol version {version}")
        try:
            mtype_e = MsgType(mtype)
            mode_e = Mode(mode)
        except ValueError:
            raise MalformedInput("unknown PSI message type or mode") from None
        if flags & ~_FLAG_LAST or pad:
            raise MalformedInput("reserved bits of a PSI message are set")
        if count > max_count:
            raise MalformedInput(f"PSI message carries {count} values, more than {max_count}")
        if len(data) != HEADER_SIZE + count * width:
            raise MalformedInput(
                f"PSI message length {len(data)} does not match its header ({count} x {width} bytes)"
            )
        return cls(mtype_e, mode_e, key_id, seq, count, width, bool(flags & _FLAG_LAST), data[HEADER_SIZE:])

    def values(self) -> np.ndarray:
        """The body as a ``(count, width)`` ``uint8`` array."""
        return np.frombuffer(self.body, dtype=np.uint8).reshape(self.count, self.width)


def _msg(mtype: MsgType, mode: Mode, key_id: bytes, seq: int, values: np.ndarray, last: bool) -> bytes:
    values = np.ascontiguousarray(values, dtype=np.uint8)
    count, width = values.shape
    return PSIMessage(mtype, mode, key_id, seq, count, width, last, values.tobytes()).encode()


#: longest reason a REFUSE message carries (bytes of UTF-8)
_MAX_REASON = 1000


def refusal(reason: str) -> bytes:
    """A ``REFUSE`` message: the sender stops the run, and says why (UTF-8, at most 1000 bytes).

    Examples
    --------
    >>> msg = PSIMessage.decode(refusal("wrong mode"))
    >>> msg.type.name, msg.body
    ('REFUSE', b'wrong mode')
    """
    body = (reason or "refused").encode("utf-8")[:_MAX_REASON]
    return PSIMessage(MsgType.REFUSE, Mode.RSA, bytes(8), 0, 1, len(body), True, body).encode()


def is_refusal(data: bytes) -> bool:
    """Whether ``data`` is a well-formed ``REFUSE`` message."""
    try:
        return PSIMessage.decode(data).type == MsgType.REFUSE
    except MalformedInput:
        return False


def _refused(msg: PSIMessage, by: str) -> ProtocolError:
    reason = msg.body.decode("utf-8", errors="replace") if msg.count else "no reason given"
    return ProtocolError(f"the {by} refused the run: {reason}")


def _mode_name(mode: Mode) -> str:
    return mode.name.lower()


def _as_mode(mode: Mode | str | None) -> Mode | None:
    if mode is None or isinstance(mode, Mode):
        return mode
    if isinstance(mode, str) and mode.lower() in ("rsa", "ecdh", "ot"):
        return Mode[mode.upper()]
    raise ParameterError(f"the PSI mode must be rsa, ecdh or ot, not {mode!r}")


def _as_batch(ids: IdsLike) -> IdBatch:
    if isinstance(ids, IdBatch):
        return ids
    if isinstance(ids, (str, bytes)):
        raise ParameterError("ids must be an iterable of ids, not one string")
    return IdBatch.from_strings(ids)


def _tag_view(tags: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(tags, dtype=np.uint8).reshape(-1, TAG_SIZE).view(f"V{TAG_SIZE}").ravel()


def _sorted_unique(tags: np.ndarray) -> np.ndarray:
    """Distinct tags in sorted order (hides the order of the ids they came from)."""
    if tags.shape[0] == 0:
        return tags.reshape(0, TAG_SIZE)
    return np.unique(_tag_view(tags)).view(np.uint8).reshape(-1, TAG_SIZE)


def match_tags(mine: np.ndarray, theirs: np.ndarray) -> np.ndarray:
    """Indices (ascending) of the first occurrence of each of ``mine``'s tags found in ``theirs``.

    Both are ``(count, 16)`` arrays; the match runs in numpy (``np.isin`` on 16-byte digests).
    """
    if mine.shape[0] == 0 or theirs.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    a, b = _tag_view(mine), _tag_view(theirs)
    hit = np.isin(a, b)
    idx = np.flatnonzero(hit)
    if idx.size == 0:
        return idx.astype(np.int64)
    _, first = np.unique(a[idx], return_index=True)  # duplicates of an id count once
    return np.sort(idx[first]).astype(np.int64)


class SignerTagCache:
    """Cache of a signer's own tags, per key and id list (memory, optionally a directory).

    The entry key is a hash of the mode, the key's id and the SHA-256 of the length-prefixed ids,
    so a new key or any change of the ids misses the cache. Tags are the values the signer sends
    anyway; the cache holds nothing secret beyond them.

    Parameters
    ----------
    directory : path, optional
        Also keep entries as ``<hash>.npy`` files there (reused across processes and runs).
    max_entries : int
        Entries kept in memory (least recently used are dropped).
    """

    def __init__(self, directory: str | os.PathLike[str] | None = None, max_entries: int = 4) -> None:
        self.directory = Path(directory) if directory is not None else None
        self.max_entries = max_entries
        self._mem: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def entry_name(mode: Mode, key_id: bytes, ids_digest: bytes) -> str:
        h = hashlib.sha256(b"dtxfast/psi/cache/v1\x00" + bytes([int(mode)]) + key_id + ids_digest)
        return h.hexdigest()

    def get(self, name: str) -> np.ndarray | None:
        with self._lock:
            if name in self._mem:
                self._mem.move_to_end(name)
                self.hits += 1
                return self._mem[name]
        if self.directory is not None:
            path = self.directory / f"{name}.npy"
            if path.exists():
                try:
                    arr = np.load(path, allow_pickle=False)
                except (OSError, ValueError):
                    arr = None
                if arr is not None and arr.dtype == np.uint8 and arr.ndim == 2:
                    self._remember(name, arr)
                    with self._lock:
                        self.hits += 1
                    return arr
        with self._lock:
            self.misses += 1
        return None

    def put(self, name: str, values: np.ndarray) -> None:
        self._remember(name, values)
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            tmp = self.directory / f".{name}.{os.getpid()}.tmp.npy"
            np.save(tmp, values, allow_pickle=False)
            os.replace(tmp, self.directory / f"{name}.npy")

    def _remember(self, name: str, values: np.ndarray) -> None:
        with self._lock:
            self._mem[name] = values
            self._mem.move_to_end(name)
            while len(self._mem) > self.max_entries:
                self._mem.popitem(last=False)


_DEFAULT_CACHE = SignerTagCache()


def _default_compute() -> ComputeBackend:
    from ..compute import default_compute

    return default_compute()


def _check_chunk(chunk_size: int) -> int:
    if not isinstance(chunk_size, int) or not 1 <= chunk_size <= MAX_COUNT:
        raise ParameterError(f"chunk_size must be 1..{MAX_COUNT}")
    return chunk_size


class PSISigner:
    """The key-holding side (RSA signer, or the first masker in ECDH mode).

    Parameters
    ----------
    ids : IdBatch or iterable of str
        The signer's own ids.
    key : BlindRSASigner, ECDHMaskKey or OPRFKey
        RSA private key (RSA mode), X25519 scalar (ECDH mode) or OPRF key (OT mode; one run).
    chunk_size : int
        Values per ``TAGS`` message.
    cache : SignerTagCache, optional
        Where own tags are cached (default: a process-wide in-memory cache).
    max_requests : int, optional
        Refuse to sign more than this many values in total (against a requester who would ask
        for ids it does not hold).
    compute : ComputeBackend, optional
        Where RSA signing runs (its own tags and the blind signatures; see
        :mod:`dtxfast.compute`); default :func:`dtxfast.compute.default_compute`.
    """

    def __init__(self, ids: IdsLike, key: BlindRSASigner | ECDHMaskKey | OPRFKey, *,
                 chunk_size: int = DEFAULT_CHUNK, cache: SignerTagCache | None = None,
                 max_requests: int | None = None, compute: ComputeBackend | None = None) -> None:
        if isinstance(key, BlindRSASigner):
            self.mode = Mode.RSA
        elif isinstance(key, ECDHMaskKey):
            self.mode = Mode.ECDH
        elif isinstance(key, OPRFKey):
            self.mode = Mode.OT
        else:
            raise ParameterError("key must be a BlindRSASigner, an ECDHMaskKey or an OPRFKey")
        self.key = key
        self.ids = _as_batch(ids)
        self.chunk_size = _check_chunk(chunk_size)
        self.cache = cache if cache is not None else _DEFAULT_CACHE
        self.max_requests = max_requests
        self.compute = compute if compute is not None else _default_compute()
        self.requests_served = 0
        #: ids announced by the requesters' HELLOs so far (checked against ``max_requests``)
        self.requests_announced = 0
        #: True once a requester's HELLO was accepted (before that the signer does no work)
        self.greeted = False
        self.cache_hit: bool | None = None
        self.final: IdBatch | None = None
        self._own: np.ndarray | None = None
        self._per_id: np.ndarray | None = None
        self._ot: _psi_ot.SignerSide | None = None
        self._ot_seq = 0
        self._ot_requester_count = 0
        if isinstance(key, OPRFKey):
            from . import _psi_ot

            self._ot = _psi_ot.SignerSide(key, self.ids)

    @property
    def key_id(self) -> bytes:
        return self.key.key_id

    def hello(self) -> bytes:
        """The first message: version and mode (header), public key (RSA), number of own ids, chunk size."""
        if isinstance(self.key, BlindRSASigner):
            keybytes = self.key.public_key().to_bytes()
        elif self._ot is not None:
            keybytes = self._ot.hello_extra()  # seed and base-OT point
        else:
            keybytes = b""
        body = _HELLO.pack(len(self.ids), self.chunk_size) + keybytes
        return PSIMessage(MsgType.HELLO, self.mode, self.key_id, 0, 1, len(body), True, body).encode()

    def own_per_id(self) -> np.ndarray:
        """RSA tags (or X25519-masked points) of the signer's ids, one row per id, in id order.

        Computed once per key and id list and cached (:class:`SignerTagCache`).
        """
        if self._per_id is not None:
            return self._per_id
        if self.mode == Mode.OT:
            raise StateError("an OT-mode signer has no per-id tags (its OPRF values depend on the run)")
        name = SignerTagCache.entry_name(self.mode, self.key_id, self.ids.digest())
        cached = self.cache.get(name)
        if cached is not None and cached.shape[0] == len(self.ids):
            self.cache_hit = True
            self._per_id = cached
            return cached
        self.cache_hit = False
        if isinstance(self.key, BlindRSASigner):
            values = self.compute.sign_own(self.key, self.ids)
        else:
            assert isinstance(self.key, ECDHMaskKey)
            values = self.key.mask(ECDHMaskKey.hash_ids(self.ids))
        self.cache.put(name, values)
        self._per_id = values
        return values

    def own_values(self) -> np.ndarray:
        """What the signer reveals about its own ids: :meth:`own_per_id` deduplicated and sorted,
        so neither multiplicities nor the order of the ids leak."""
        if self._own is None:
            per_id = self.own_per_id()
            width = per_id.shape[1] if per_id.ndim == 2 else TAG_SIZE
            if per_id.shape[0] == 0:
                self._own = per_id.reshape(0, width)
            else:
                flat = np.ascontiguousarray(per_id).view(f"V{width}").ravel()
                self._own = np.unique(flat).view(np.uint8).reshape(-1, width)
        return self._own

    def signer_messages(self) -> Iterator[bytes]:
        """The ``TAGS`` messages carrying :meth:`own_values`, in chunks (the last is flagged).

        Raises
        ------
        StateError
            No requester's HELLO was accepted yet (the signer computes nothing before).
        """
        if not self.greeted:
            raise StateError("no requester's HELLO yet: the signer computes its tags after the handshake")
        if self._ot is not None:
            if not self._ot.complete:
                raise StateError("an OT-mode signer sends its OPRF values after every row of U")
            values = self._ot.values()
        else:
            values = self.own_values()
        total = values.shape[0]
        seq = 0
        for start in range(0, max(total, 1), self.chunk_size):
            part = values[start : start + self.chunk_size]
            yield _msg(MsgType.TAGS, self.mode, self.key_id, seq, part,
                       start + self.chunk_size >= total)
            seq += 1

    def receive(self, data: bytes) -> bytes | None:
        """Take a requester's ``HELLO`` (checked; returns None), answer a ``REQUEST`` with its
        ``RESPONSE``, take a three-party ``RESULT`` (returns None).

        Raises
        ------
        MalformedInput, KeyMismatch, ProtocolError
            ``ProtocolError`` also for a ``REFUSE`` (the requester stopped the run) and for a
            ``REQUEST`` before the requester's ``HELLO``.
        """
        msg = PSIMessage.decode(data)
        if msg.type == MsgType.REFUSE:
            raise _refused(msg, "requester")
        if msg.mode != self.mode:
            what = "wants" if msg.type == MsgType.HELLO else "speaks"
            raise ProtocolError(f"the requester {what} {_mode_name(msg.mode)} PSI, this signer runs "
                                f"{_mode_name(self.mode)}")
        if msg.key_id != self.key_id:
            raise KeyMismatch("message is for another signer key")
        if msg.type == MsgType.HELLO:
            self._on_hello(msg)
            return None
        if msg.type in (MsgType.REQUEST, MsgType.SETUP) and not self.greeted:
            raise ProtocolError(f"{msg.type.name} before the requester's HELLO")
        if self._ot is not None:
            return self._receive_ot(msg)
        if msg.type == MsgType.REQUEST:
            if self.max_requests is not None and self.requests_served + msg.count > self.max_requests:
                raise ProtocolError(f"requester asked for more than {self.max_requests} signatures")
            if isinstance(self.key, BlindRSASigner):
                if msg.width != self.key.public_key().k:
                    raise MalformedInput("blinded values have the wrong width for this key")
                out = self.compute.sign_blinded(self.key, msg.values())
            else:
                if msg.width != POINT_SIZE:
                    raise MalformedInput("X25519 points are 32 bytes")
                assert isinstance(self.key, ECDHMaskKey)
                out = self.key.mask(msg.values())
            self.requests_served += msg.count
            return _msg(MsgType.RESPONSE, self.mode, self.key_id, msg.seq, out, msg.last)
        if msg.type == MsgType.RESULT:
            if self.mode != Mode.RSA:
                raise ProtocolError("three-party results exist in RSA mode only")
            if msg.width != TAG_SIZE and msg.count:
                raise MalformedInput("result tags are 16 bytes")
            # map the final tags back to own ids through the (cached) per-id tags
            idx = match_tags(self.own_per_id(), msg.values().reshape(-1, TAG_SIZE))
            if idx.size != _sorted_unique(msg.values().reshape(-1, TAG_SIZE)).shape[0]:
                raise ProtocolError("the result names ids this signer does not hold")
            self.final = self.ids.take(idx)
            return None
        raise ProtocolError(f"a signer does not expect a {msg.type.name} message")

    def _receive_ot(self, msg: PSIMessage) -> bytes | None:
        assert self._ot is not None
        if msg.type == MsgType.SETUP:
            if msg.count != 1:
                raise MalformedInput("a SETUP message carries one value")
            ext = self._ot.on_setup(msg.body, self._ot_requester_count)
            return PSIMessage(MsgType.EXT, Mode.OT, self.key_id, 0, len(ext) // 16, 16, True, ext).encode()
        if msg.type == MsgType.REQUEST:
            if msg.seq != self._ot_seq:
                raise ProtocolError(f"REQUEST {msg.seq} out of order (expected {self._ot_seq})")
            if msg.width != 64:
                raise MalformedInput("rows of U are 64 bytes")
            if msg.last != (self._ot.rows and self._ot.rows == self._ot._lo + self._ot._pending_rows + msg.count):
                raise ProtocolError("the last REQUEST flag does not match the requester's table size")
            self._ot.on_u(msg.values())
            self._ot_seq += 1
            if self._ot.complete:
                self.requests_served = self._ot_requester_count
            return None
        raise ProtocolError(f"an OT-mode signer does not expect a {msg.type.name} message")

    def _on_hello(self, msg: PSIMessage) -> None:
        if self._ot is not None and self.greeted:
            raise ProtocolError("an OT-mode signer serves one requester per run")
        if msg.count != 1 or msg.width != _HELLO.size:
            if msg.count == 1 and msg.width > _HELLO.size:
                raise ProtocolError("a signer does not take a signer's HELLO")
            raise MalformedInput("the requester's HELLO is malformed")
        count, chunk = _HELLO.unpack_from(msg.body)
        if not 1 <= chunk <= MAX_COUNT:
            raise MalformedInput(f"the requester's HELLO names a chunk size of {chunk}")
        if self.max_requests is not None and self.requests_announced + count > self.max_requests:
            raise ProtocolError(f"the requester holds {count} ids; this signer signs at most {self.max_requests}")
        if self._ot is not None:
            from . import _psi_ot

            _psi_ot.check_size(count, "the requester")
        self.requests_announced += count
        self._ot_requester_count = count
        self.greeted = True


class PSIRequester:
    """The side that learns the intersection (RSA requester, or the second masker in ECDH mode).

    Parameters
    ----------
    ids : IdBatch or iterable of str
        The requester's ids.
    chunk_size : int
        Values per ``REQUEST`` message.
    verify : {"batch", "each"}
        How blind signatures are checked (see :meth:`BlindRSAPublicKey.finalize`).
    expect_signer_tags : bool
        False for party B of the three-party protocol (it gets a ``RELAY`` instead).
    rng : callable, optional
        ``rng(nbytes) -> bytes`` for blinding factors and the ECDH scalar (default os.urandom).
    max_pending : int
        Most request chunks awaiting their response at once (bounds memory).
    compute : ComputeBackend, optional
        Where blinding and unblinding run (see :mod:`dtxfast.compute`); default
        :func:`dtxfast.compute.default_compute`. A custom ``rng`` needs the local backend.
    mode : {"rsa", "ecdh", "ot"} or Mode, optional
        The mode this requester runs: a signer's ``HELLO`` of another mode is refused before any
        work (default: whichever the signer runs).
    """

    def __init__(self, ids: IdsLike, *, chunk_size: int = DEFAULT_CHUNK,
                 verify: Literal["batch", "each"] = "batch", expect_signer_tags: bool = True,
                 rng: Rng = os.urandom, max_pending: int = 8,
                 compute: ComputeBackend | None = None, mode: Mode | str | None = None) -> None:
        self.expect_mode = _as_mode(mode)
        self.ids = _as_batch(ids)
        self.chunk_size = _check_chunk(chunk_size)
        if verify not in ("batch", "each"):
            raise ParameterError("verify must be 'batch' or 'each'")
        self.verify = verify
        self.expect_signer_tags = expect_signer_tags
        self.max_pending = max_pending
        self._rng = rng
        self.compute = compute if compute is not None else _default_compute()
        self.mode: Mode | None = None
        self.key_id: bytes | None = None
        self.public_key: BlindRSAPublicKey | None = None
        self.signer_count: int | None = None
        self.signer_chunk: int | None = None
        self._ecdh: ECDHMaskKey | None = None
        n = len(self.ids)
        self._tags = np.zeros((n, TAG_SIZE), dtype=np.uint8)
        self._nchunks = (n + self.chunk_size - 1) // self.chunk_size
        self._pending: dict[int, BlindedBatch | int] = {}
        self._issued = 0
        self._answered = 0
        self._theirs: list[np.ndarray] = []
        self._theirs_seq = 0
        self._theirs_done = False
        self._result: np.ndarray | None = None
        self.final_index: np.ndarray | None = None
        self._ot: _psi_ot.RequesterSide | None = None
        self._ot_stage = 0  # 0 before SETUP, 1 SETUP sent, 2 EXT taken

    # -- state ----------------------------------------------------------------------------------

    @property
    def progress(self) -> tuple[int, int]:
        """(chunks answered, chunks in total)."""
        return self._answered, self._nchunks

    @property
    def signer_values_complete(self) -> bool:
        """True once the last chunk of the signer's tags (or the relay) arrived."""
        return self._theirs_done

    @property
    def done(self) -> bool:
        """True once the intersection is known."""
        return self._result is not None

    def _require_hello(self) -> None:
        if self.mode is None:
            raise ProtocolError("no HELLO from the signer yet")

    # -- outgoing -------------------------------------------------------------------------------

    def requests(self) -> Iterator[bytes]:
        """The ``REQUEST`` messages, computed lazily chunk by chunk (at most ``max_pending`` open)."""
        self._require_hello()
        if self._ot is not None:
            yield from self._ot_requests()
            return
        while self._issued < self._nchunks:
            if len(self._pending) >= self.max_pending:
                raise StateError(f"{self.max_pending} requests await responses; receive them first")
            seq = self._issued
            part = self.ids.slice(seq * self.chunk_size, (seq + 1) * self.chunk_size)
            last = seq == self._nchunks - 1
            if self.mode == Mode.RSA:
                assert self.public_key is not None
                batch = self.compute.blind(self.public_key, part,
                                           rng=None if self._rng is os.urandom else self._rng)
                self._pending[seq] = batch
                values = batch.blinded
            else:
                assert self._ecdh is not None
                values = self._ecdh.mask(ECDHMaskKey.hash_ids(part))
                self._pending[seq] = len(part)
            self._issued += 1
            assert self.key_id is not None and self.mode is not None
            yield _msg(MsgType.REQUEST, self.mode, self.key_id, seq, values, last)

    def _ot_requests(self) -> Iterator[bytes]:
        assert self._ot is not None and self.key_id is not None
        if self._ot_stage != 2:
            raise StateError("OT mode: send SETUP and take the signer's EXT before the requests")
        if self._issued:
            raise StateError("the requests were already sent")
        rows = self._ot.rows
        for lo, block in self._ot.u_blocks():
            for start in range(0, block.shape[0], self.chunk_size):
                part = block[start : start + self.chunk_size]
                last = lo + start + part.shape[0] == rows
                yield _msg(MsgType.REQUEST, Mode.OT, self.key_id, self._issued, part, last)
                self._issued += 1
                self._answered = self._issued

    def setup_message(self) -> bytes:
        """OT mode, after :meth:`hello`: the ``SETUP`` message (the requester's seed and its
        128 base-OT points; the ids are cuckoo-hashed first)."""
        self._require_hello()
        if self._ot is None:
            raise StateError("SETUP exists in OT mode only")
        if self._ot_stage:
            raise StateError("SETUP was already sent")
        assert self.key_id is not None
        body = self._ot.setup()
        self._ot_stage = 1
        return PSIMessage(MsgType.SETUP, Mode.OT, self.key_id, 0, 1, len(body), True, body).encode()

    def hello(self) -> bytes:
        """The answer to the signer's ``HELLO``: its mode and key id (accepted), the number of
        this party's ids and its chunk size; the signer checks it before any work."""
        self._require_hello()
        assert self.mode is not None and self.key_id is not None
        body = _HELLO.pack(len(self.ids), self.chunk_size)
        return PSIMessage(MsgType.HELLO, self.mode, self.key_id, 0, 1, len(body), True, body).encode()

    def relay(self) -> bytes:
        """Three-party, leader A: the ``RELAY`` message with the tags of A ∩ C (sorted)."""
        return self._tags_message(MsgType.RELAY)

    def result_message(self) -> bytes:
        """Three-party, party B: the ``RESULT`` message with the tags of the final intersection."""
        return self._tags_message(MsgType.RESULT)

    def _tags_message(self, mtype: MsgType) -> bytes:
        if self._result is None or self.mode != Mode.RSA:
            raise StateError("no RSA-mode intersection yet")
        assert self.key_id is not None
        return _msg(mtype, Mode.RSA, self.key_id, 0, _sorted_unique(self._tags[self._result]), True)

    # -- incoming -------------------------------------------------------------------------------

    def receive(self, data: bytes) -> None:
        """Take a ``HELLO``, ``RESPONSE``, ``TAGS``, ``RELAY`` or ``RESULT`` message.

        Raises
        ------
        MalformedInput, KeyMismatch, ProtocolError, InvalidSignature
            ``ProtocolError`` also for a signer of another mode than ``mode`` and for a
            ``REFUSE`` (the signer stopped the run).
        """
        msg = PSIMessage.decode(data)
        if msg.type == MsgType.REFUSE:
            raise _refused(msg, "signer")
        if msg.type == MsgType.HELLO:
            self._on_hello(msg)
            return
        self._require_hello()
        if msg.mode != self.mode:
            raise ProtocolError("message of another PSI mode")
        if msg.key_id != self.key_id:
            raise KeyMismatch("message is under another signer key")
        if self._ot is not None:
            self._receive_ot(msg)
            return
        if msg.type == MsgType.RESPONSE:
            self._on_response(msg)
        elif msg.type == MsgType.TAGS:
            if not self.expect_signer_tags:
                raise ProtocolError("this party does not take the signer's tags")
            self._on_theirs(msg, POINT_SIZE if self.mode == Mode.ECDH else TAG_SIZE)
        elif msg.type == MsgType.RELAY:
            if self.expect_signer_tags:
                raise ProtocolError("this party does not take a relay")
            self._on_theirs(msg, TAG_SIZE)
        elif msg.type == MsgType.RESULT:
            self._on_result(msg)
        else:
            raise ProtocolError(f"a requester does not expect a {msg.type.name} message")
        self._maybe_finish()

    def _receive_ot(self, msg: PSIMessage) -> None:
        assert self._ot is not None
        if msg.type == MsgType.EXT:
            if self._ot_stage != 1:
                raise ProtocolError("EXT before this party's SETUP, or twice")
            if msg.count != 512 or msg.width != 16 or msg.seq != 0:
                raise MalformedInput("an EXT message holds 512 rows of 16 bytes")
            self._ot.on_ext(msg.body)
            self._ot_stage = 2
        elif msg.type == MsgType.TAGS:
            if self._issued == 0 or self._issued < self._nchunks:
                raise ProtocolError("OPRF values before every request was sent")
            if msg.seq != self._theirs_seq:
                raise ProtocolError(f"value chunk {msg.seq} out of order (expected {self._theirs_seq})")
            self._theirs_seq += 1
            self._ot.on_values(msg.values(), msg.last)
            if msg.last:
                self._theirs_done = True
                self._result = self._ot.result
        else:
            raise ProtocolError(f"an OT-mode requester does not expect a {msg.type.name} message")

    def _on_hello(self, msg: PSIMessage) -> None:
        if self.mode is not None:
            raise ProtocolError("second HELLO")
        if self.expect_mode is not None and msg.mode != self.expect_mode:
            raise ProtocolError(f"the signer runs {_mode_name(msg.mode)} PSI, this requester wants "
                                f"{_mode_name(self.expect_mode)}; nothing was computed")
        if msg.count != 1 or msg.width < _HELLO.size:
            raise MalformedInput("HELLO is malformed")
        count, chunk = _HELLO.unpack_from(msg.body)
        keybytes = msg.body[_HELLO.size :]
        if msg.mode == Mode.RSA:
            pub = BlindRSAPublicKey.from_bytes(keybytes)
            if pub.key_id != msg.key_id:
                raise KeyMismatch("HELLO's key id does not match its key")
            self.public_key = pub
        elif msg.mode == Mode.OT:
            if not self.expect_signer_tags:
                raise ProtocolError("OT mode is two-party only")
            from . import _psi_ot

            self._ot = _psi_ot.RequesterSide(self.ids, count, keybytes, self._rng)
            self._nchunks = sum((min(lo + _psi_ot.BLOCK_ROWS, self._ot.rows) - lo + self.chunk_size - 1)
                                // self.chunk_size for lo in range(0, self._ot.rows, _psi_ot.BLOCK_ROWS))
        else:
            if keybytes:
                raise MalformedInput("an ECDH HELLO carries no key")
            self._ecdh = ECDHMaskKey.generate(self._rng)
        self.mode = msg.mode
        self.key_id = msg.key_id
        self.signer_count = count
        self.signer_chunk = chunk

    def _on_response(self, msg: PSIMessage) -> None:
        pending = self._pending.pop(msg.seq, None)
        if pending is None:
            raise ProtocolError(f"RESPONSE {msg.seq} answers no open request")
        lo = msg.seq * self.chunk_size
        if self.mode == Mode.RSA:
            assert isinstance(pending, BlindedBatch) and self.public_key is not None
            if msg.count != len(pending) or msg.width != self.public_key.k:
                raise ProtocolError("RESPONSE does not match its request's size")
            tags = self.compute.finalize(self.public_key, pending, msg.values(), verify=self.verify)
        else:
            assert isinstance(pending, int)
            if msg.count != pending or msg.width != POINT_SIZE:
                raise ProtocolError("RESPONSE does not match its request's size")
            tags = ecdh_tags(msg.values())
        self._tags[lo : lo + msg.count] = tags
        self._answered += 1

    def _on_theirs(self, msg: PSIMessage, width: int) -> None:
        if self._theirs_done:
            raise ProtocolError("tags after the last chunk")
        if msg.seq != self._theirs_seq:
            raise ProtocolError(f"tag chunk {msg.seq} out of order (expected {self._theirs_seq})")
        if msg.width != width and msg.count:
            raise MalformedInput(f"tag values must be {width} bytes")
        values = msg.values()
        if self.mode == Mode.ECDH and msg.type == MsgType.TAGS:
            assert self._ecdh is not None
            values = ecdh_tags(self._ecdh.mask(values)) if msg.count else values.reshape(0, TAG_SIZE)
        self._theirs.append(values.reshape(-1, TAG_SIZE).copy())
        self._theirs_seq += 1
        self._theirs_done = msg.last

    def _on_result(self, msg: PSIMessage) -> None:
        if self._result is None:
            raise ProtocolError("RESULT before this party's own intersection")
        if msg.width != TAG_SIZE and msg.count:
            raise MalformedInput("result tags are 16 bytes")
        final = self._result[np.isin(_tag_view(self._tags[self._result]),
                                     _tag_view(msg.values().reshape(-1, TAG_SIZE)))]
        if final.size != _sorted_unique(msg.values().reshape(-1, TAG_SIZE)).shape[0]:
            raise ProtocolError("the result names ids outside this party's intersection")
        self.final_index = final

    def _maybe_finish(self) -> None:
        if self._result is not None or self._answered < self._nchunks or not self._theirs_done:
            return
        theirs = np.concatenate(self._theirs) if self._theirs else np.zeros((0, TAG_SIZE), np.uint8)
        self._theirs = []
        self._result = match_tags(self._tags, theirs)

    # -- results --------------------------------------------------------------------------------

    def intersection_index(self) -> np.ndarray:
        """Indices into :attr:`ids` of the intersection (first occurrence of each id, ascending)."""
        if self._result is None:
            raise StateError("the intersection is not known yet")
        return self._result

    def intersection(self) -> IdBatch:
        """The ids in the intersection, in the requester's order."""
        return self.ids.take(self.intersection_index())

    def own_tags(self) -> np.ndarray:
        """The ``(count, 16)`` tags of the requester's ids (once every response arrived)."""
        if self._ot is not None:
            raise StateError("an OT-mode requester has no tags (its OPRF values are per bin and run)")
        if self._answered < self._nchunks:
            raise StateError("not every request was answered yet")
        return self._tags


def run_two_party(requester: PSIRequester, signer: PSISigner, *,
                  on_progress: Progress | None = None) -> list[bytes]:
    """Drive a requester and a signer in-process; returns the intersection (requester's order)."""
    requester.receive(signer.hello())
    signer.receive(requester.hello())
    if requester.mode == Mode.OT:
        ext = signer.receive(requester.setup_message())
        assert ext is not None
        requester.receive(ext)
        total = requester.progress[1]
        for i, req in enumerate(requester.requests()):
            signer.receive(req)
            if on_progress is not None:
                on_progress(i + 1, total)
        for msg in signer.signer_messages():
            requester.receive(msg)
        if not requester.done:
            raise ProtocolError("the run ended before the intersection was known")
        return requester.intersection().to_list()
    for msg in signer.signer_messages():
        requester.receive(msg)
    total = requester.progress[1]
    for i, req in enumerate(requester.requests()):
        reply = signer.receive(req)
        assert reply is not None
        requester.receive(reply)
        if on_progress is not None:
            on_progress(i + 1, total)
    if not requester.done:
        raise ProtocolError("the run ended before the intersection was known")
    return requester.intersection().to_list()


@dataclass(frozen=True)
class ThreePartyResult:
    """The final intersection as each party sees it, and the leader's pairwise one."""

    a: list[bytes]
    b: list[bytes]
    c: list[bytes]
    a_and_c: list[bytes]


def run_three_party(ids_a: IdsLike, ids_b: IdsLike, ids_c: IdsLike, key: BlindRSASigner, *,
                    chunk_size: int = DEFAULT_CHUNK,
                    cache: SignerTagCache | None = None) -> ThreePartyResult:
    """The three-party protocol in-process (C = signer, A = leader); see the module docstring."""
    if not isinstance(key, BlindRSASigner):
        raise ParameterError("three-party PSI runs in RSA mode (key must be a BlindRSASigner)")
    c = PSISigner(ids_c, key, chunk_size=chunk_size, cache=cache)
    a = PSIRequester(ids_a, chunk_size=chunk_size)
    b = PSIRequester(ids_b, chunk_size=chunk_size, expect_signer_tags=False)
    hello = c.hello()
    a.receive(hello)
    b.receive(hello)
    c.receive(a.hello())
    c.receive(b.hello())
    for msg in c.signer_messages():  # C's tags go to A only
        a.receive(msg)
    for party in (a, b):
        for req in party.requests():
            reply = c.receive(req)
            assert reply is not None
            party.receive(reply)
    a_and_c = a.intersection().to_list()
    b.receive(a.relay())
    result = b.result_message()
    a.receive(result)
    c.receive(result)
    assert a.final_index is not None and c.final is not None
    return ThreePartyResult(
        a=a.ids.take(a.final_index).to_list(),
        b=b.intersection().to_list(),
        c=c.final.to_list(),
        a_and_c=a_and_c,
    )


# names before the house rename (issue 14): importable with a DeprecationWarning
__getattr__ = _renamed("dtxfast.protocols.psi", {'PsiSigner': 'PSISigner', 'PsiRequester': 'PSIRequester', 'PsiMessage': 'PSIMessage'}, globals())
