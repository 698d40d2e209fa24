"""Signed HTTP requests between nodes: one signer for clients, one checker (a middleware) for servers.

Every request a node accepts (an upload, a download, a delete, a challenge) carries five headers:

* ``X-Dtx-Node``: the sender's node id (its Ed25519 key is looked up on the ledger);
* ``X-Dtx-To``: the receiving node's id, so a request cannot be replayed to another node;
* ``X-Dtx-Time``: the sender's clock in milliseconds;
* ``X-Dtx-Nonce``: 16 fresh random bytes (hex);
* ``X-Dtx-Signature``: Ed25519 over :func:`signing_message` (hex).

The signed message binds the method, the path with its query string, a digest of the body, the
sender, the receiver, the time and the nonce, under the domain tag ``dtxfast/http/v1``. The body
digest is SHA-256 unless an optional sixth header, ``X-Dtx-Digest: merkle-<chunk size>``, names
the body's Merkle root (:class:`~dtxfast.crypto.merkle.MerkleTree` over ``chunk size``-byte
leaves, 1 KiB to 16 MiB): an uploader computes a replica's root anyway for the ledger, so signing
it instead of a SHA-256 saves one pass over every replica, and costs the receiver the same one
pass as SHA-256 would. The kind is part of the signed message (``merkle-4096:<root>`` instead of
``<sha256>``), so a signature over a root cannot be passed off as one over a SHA-256 (the
65-byte body ``0x01 || left || right`` has the root as its SHA-256).

``X-Dtx-Digest: gmac`` replaces the body's hash by a MAC that only the sender and the receiver
can compute: GMAC (AES-256-GCM with an empty plaintext and the body as associated data, an
all-zero nonce) under a key used for this one request, ``HKDF-SHA256(pair key, salt=the
request's nonce, info="dtxfast/http-body-mac/v1" || sender || 0x00 || receiver)``, where the pair
key comes from a static X25519 agreement between the two nodes' keys
(:meth:`~dtxfast.ledger.NodeIdentity.pair_key`). Anyone who alters the body in transit would
have to forge that MAC without its key; the signature over ``gmac:<tag>`` still says who sent it,
when, to whom, and that it was sent once. GMAC runs at the speed of carry-less multiplication
(~0.15 ms per 4 MiB here, against ~3 ms for a SHA-256 Merkle root), which is what a storage node
spends per uploaded replica on checking it. What a MAC does not give, unlike a hash, is evidence
for a third party (the receiver knows the key, so it could produce another body with the same
tag): nothing in dtxfast uses a request as evidence; what an owner vouches for is on the ledger
(each replica's Merkle root in its signed ``PublishFile``). A receiver that was not given its
identity refuses the kind. The receiver
(:class:`RequestVerifier`) refuses, each with its own HTTP status and reason:

* a body over the size limit (413, refused before it is read);
* a missing or malformed header (401), an unknown digest kind (401), an unknown sender (401), a
  bad signature (401);
* a request addressed to another node (421);
* a timestamp outside the clock-skew window (401, "stale");
* a nonce already seen from that sender within the window (401, "replayed"): the
  :class:`ReplayCache` remembers nonces as long as their timestamp is inside the window, so a
  stored request can neither be replayed now nor later.

:func:`auth_middleware` wraps the checker for aiohttp: it logs one line per refusal
(who, what, why) and answers with the status; no refusal raises out of the server. Handlers read
the verified sender from ``request["dtx_sender"]`` and the body from ``request["dtx_body"]``.
The clock, the window and the replay cache are injectable, so tests of staleness do not sleep.

Examples
--------
>>> from dtxfast.ledger import NodeIdentity
>>> alice = NodeIdentity.generate()
>>> signer = RequestSigner(alice)
>>> h = signer.headers("PUT", "/v1/replicas/ab/0/0", b"data", to="aaaaaaaaaaaaaaaa")
>>> checker = RequestVerifier("aaaaaaaaaaaaaaaa", {alice.node_id: alice.public_key_bytes}.get)
>>> checker.verify("PUT", "/v1/replicas/ab/0/0", h, b"data") == alice.node_id
True
>>> try:
...     checker.verify("PUT", "/v1/replicas/ab/0/0", h, b"data")   # the same request again
... except AuthError as exc:
...     print(exc.status, exc.reason)
401 replayed request (nonce already seen)
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import mmap
import os
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from ..crypto.signatures import check_signatures
from ..errors import DtxError, InvalidSignature, MalformedInput, ParameterError

__all__ = [
    "DEFAULT_MAX_BODY",
    "DEFAULT_SKEW_MS",
    "GMAC",
    "HEADERS",
    "AuthError",
    "ReplayCache",
    "SHA256",
    "RequestSigner",
    "RequestVerifier",
    "auth_middleware",
    "body_mac",
    "digest_body",
    "merkle_digest_kind",
    "signing_message",
]

H_NODE, H_TO, H_TIME, H_NONCE, H_SIG = "X-Dtx-Node", "X-Dtx-To", "X-Dtx-Time", "X-Dtx-Nonce", "X-Dtx-Signature"
#: the headers a signed request carries
HEADERS = (H_NODE, H_TO, H_TIME, H_NONCE, H_SIG)
#: the optional header naming the body digest's kind (absent: :data:`SHA256`)
H_DIGEST = "X-Dtx-Digest"
#: the default body digest: SHA-256 of the body
SHA256 = "sha256"
#: the body MAC between the sender and the receiver (see the module docstring)
GMAC = "gmac"
_MAC_INFO = b"dtxfast/http-body-mac/v1"
_MERKLE = "merkle-"
_MERKLE_CHUNKS = (1 << 10, 1 << 24)
#: requests whose timestamp is further than this from the receiver's clock are stale
DEFAULT_SKEW_MS = 60_000
#: largest request body accepted by default (a replica of a 4 MiB slice is far below)
DEFAULT_MAX_BODY = 64 * 1024 * 1024
_DOMAIN = b"dtxfast/http/v1\x00"
_NONCE_SIZE = 16
_log = logging.getLogger("dtxfast.transport.http_auth")


def _now_ms() -> int:
    return int(time.time() * 1000)


def merkle_digest_kind(chunk_size: int) -> str | None:
    """The digest kind signing a body by its Merkle root in ``chunk_size`` leaves; None if unsupported.

    Examples
    --------
    >>> merkle_digest_kind(4096), merkle_digest_kind(16)
    ('merkle-4096', None)
    """
    lo, hi = _MERKLE_CHUNKS
    return f"{_MERKLE}{int(chunk_size)}" if lo <= chunk_size <= hi else None


def _merkle_chunk(kind: str) -> int | None:
    """The chunk size of a ``merkle-N`` kind, None for SHA-256; AuthError for anything else."""
    if kind == SHA256:
        return None
    digits = kind[len(_MERKLE):]
    if kind.startswith(_MERKLE) and digits.isdigit() and len(digits) <= 9 and digits[0] != "0":
        chunk = int(digits)
        if merkle_digest_kind(chunk) == kind:
            return chunk
    raise AuthError(401, f"unknown body digest kind {kind[:32]!r}")


def body_mac(pair_key: bytes, nonce: bytes, sender: str, to: str, body: bytes | bytearray | memoryview) -> bytes:
    """The ``gmac`` digest of a request body: 16 bytes only ``sender`` and ``to`` can compute.

    ``pair_key`` is :meth:`~dtxfast.ledger.NodeIdentity.pair_key` of the two nodes, ``nonce`` the
    request's 16-byte nonce (so every request has its own MAC key).

    Examples
    --------
    >>> from dtxfast.ledger import NodeIdentity
    >>> a, b = NodeIdentity.generate(), NodeIdentity.generate()
    >>> nonce = bytes(16)
    >>> tag = body_mac(a.pair_key(b.public_key), nonce, a.node_id, b.node_id, b"body")
    >>> tag == body_mac(b.pair_key(a.public_key), nonce, a.node_id, b.node_id, b"body"), len(tag)
    (True, 16)
    >>> tag == body_mac(b.pair_key(a.public_key), nonce, a.node_id, b.node_id, b"bodY")
    False
    """
    from ..crypto.aead import hkdf_sha256

    key = hkdf_sha256(bytes(pair_key), bytes(nonce), _MAC_INFO + sender.encode() + b"\x00" + to.encode(), 32)
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError:  # pragma: no cover - cryptography is a dependency
        from Crypto.Cipher import AES

        c = AES.new(key, AES.MODE_GCM, nonce=bytes(12), mac_len=16)
        c.update(body)
        return c.digest()
    return AESGCM(key).encrypt(bytes(12), b"", body)


def digest_body(kind: str, body: bytes | bytearray | memoryview) -> bytes:
    """The digest of ``body`` a request signs: SHA-256, or the Merkle root for ``merkle-N``.

    Examples
    --------
    >>> from dtxfast.crypto.merkle import MerkleTree
    >>> digest_body(SHA256, b"abc") == hashlib.sha256(b"abc").digest()
    True
    >>> digest_body("merkle-1024", bytes(3000)) == MerkleTree.from_bytes(bytes(3000), 1024).root
    True
    """
    chunk = _merkle_chunk(kind)
    if chunk is None:
        return hashlib.sha256(body).digest()
    from ..crypto.merkle import MerkleTree

    return MerkleTree.from_bytes(body, chunk, threads=1).root


def signing_message(method: str, path: str, body_digest: bytes, sender: str, to: str, ts_ms: int,
                    nonce: bytes, digest_kind: str = SHA256) -> bytes:
    """The bytes a request's signature covers (domain tag, then the fields, newline-separated).

    The digest field is the digest's hex for SHA-256 and ``KIND:hex`` for any other kind.
    """
    digest = body_digest.hex() if digest_kind == SHA256 else f"{digest_kind}:{body_digest.hex()}"
    fields = (method.upper(), path, digest, sender, to, str(int(ts_ms)), nonce.hex())
    return _DOMAIN + "\n".join(fields).encode()


class AuthError(DtxError):
    """A request was refused: ``status`` is the HTTP status, ``reason`` says why."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class RequestSigner:
    """Signs a node's outgoing requests.

    Parameters
    ----------
    identity : NodeIdentity
        The sender (anything with ``node_id`` and ``sign(message)``).
    clock : callable, optional
        Milliseconds since the epoch (default: the system clock).
    rng : callable, default os.urandom
        ``rng(16)`` gives each request's nonce.
    """

    def __init__(self, identity: Any, *, clock: Callable[[], int] | None = None,
                 rng: Callable[[int], bytes] = os.urandom) -> None:
        self._identity = identity
        self._clock = clock or _now_ms
        self._rng = rng
        self.node_id: str = identity.node_id
        self._pairs: dict[bytes, bytes] = {}

    def headers(self, method: str, path: str, body: bytes | bytearray | memoryview = b"", *,
                to: str, body_digest: bytes | None = None, digest_kind: str = SHA256,
                peer_key: bytes | None = None) -> dict[str, str]:
        """The headers that sign one request (``path`` with its query string).

        ``body_digest`` is the body's digest of kind ``digest_kind`` (:func:`digest_body`) if the
        caller computed it already (e.g. a replica's Merkle root, or a SHA-256 computed in a
        worker thread, off an event loop); otherwise it is computed here. The :data:`GMAC` kind
        is always computed here and needs the receiver's Ed25519 public key, ``peer_key``.
        """
        ts = int(self._clock())
        nonce = bytes(self._rng(_NONCE_SIZE))
        if digest_kind == GMAC:
            if peer_key is None:
                raise ParameterError("a gmac body digest needs the receiver's public key (peer_key)")
            pair = self._pairs.get(bytes(peer_key))
            if pair is None:
                pair = self._pairs[bytes(peer_key)] = self._identity.pair_key(bytes(peer_key))
            digest = body_mac(pair, nonce, self.node_id, to, body)
        else:
            _merkle_chunk(digest_kind)
            digest = digest_body(digest_kind, body) if body_digest is None else bytes(body_digest)
        sig = self._identity.sign(signing_message(method, path, digest, self.node_id, to, ts, nonce, digest_kind))
        out = {H_NODE: self.node_id, H_TO: to, H_TIME: str(ts), H_NONCE: nonce.hex(), H_SIG: sig.hex()}
        if digest_kind != SHA256:
            out[H_DIGEST] = digest_kind
        return out


class ReplayCache:
    """Nonces seen recently, per sender; thread-safe.

    A nonce is kept until its request's timestamp leaves the clock-skew window, after which the
    request is refused as stale anyway, so memory stays bounded by the request rate times the
    window. ``max_entries`` caps it further (the oldest entries go first).
    """

    def __init__(self, max_entries: int = 1_000_000) -> None:
        self._seen: dict[tuple[str, bytes], int] = {}
        self._lock = threading.Lock()
        self._max = max_entries

    def check_and_add(self, sender: str, nonce: bytes, forget_after_ms: int, now_ms: int) -> bool:
        """Record the nonce; False if it was already recorded (a replay)."""
        key = (sender, nonce)
        with self._lock:
            if key in self._seen:
                return False
            if len(self._seen) >= self._max or len(self._seen) % 1024 == 0:
                self._prune(now_ms)
            self._seen[key] = forget_after_ms
            return True

    def _prune(self, now_ms: int) -> None:
        for k in [k for k, t in self._seen.items() if t < now_ms]:
            del self._seen[k]
        while len(self._seen) >= self._max:
            del self._seen[next(iter(self._seen))]

    def __len__(self) -> int:
        return len(self._seen)


class RequestVerifier:
    """Checks signed requests addressed to one node.

    Parameters
    ----------
    node_id : str
        The receiving node's id (``X-Dtx-To`` must name it).
    lookup_key : callable
        ``lookup_key(node_id)`` returns the sender's 32-byte Ed25519 public key, or None if
        unknown (a node reads it from the ledger).
    clock : callable, optional
        Milliseconds since the epoch.
    skew_ms : int
        The clock-skew window (default :data:`DEFAULT_SKEW_MS`).
    replay : ReplayCache, optional
        Where nonces are remembered (default: a new cache).
    identity : NodeIdentity, optional
        The receiving node's key: with it, bodies authenticated by a :data:`GMAC` are accepted
        (without it, that kind is refused).
    """

    def __init__(self, node_id: str, lookup_key: Callable[[str], bytes | None], *,
                 clock: Callable[[], int] | None = None, skew_ms: int = DEFAULT_SKEW_MS,
                 replay: ReplayCache | None = None, identity: Any = None) -> None:
        self.node_id = node_id
        self._lookup = lookup_key
        self._clock = clock or _now_ms
        self.skew_ms = int(skew_ms)
        self.replay = replay if replay is not None else ReplayCache()
        if identity is not None and identity.node_id != node_id:
            raise ParameterError("the verifier's identity is another node's")
        self._identity = identity
        self._pairs: dict[bytes, bytes] = {}
        self._pairs_lock = threading.Lock()

    def _pair_key(self, sender_key: bytes) -> bytes:
        with self._pairs_lock:
            pair = self._pairs.get(sender_key)
        if pair is None:
            pair = self._identity.pair_key(sender_key)
            with self._pairs_lock:
                if len(self._pairs) >= 1 << 14:
                    self._pairs.pop(next(iter(self._pairs)))
                self._pairs[sender_key] = pair
        return pair

    def verify(self, method: str, path: str, headers: Mapping[str, str],
               body: bytes | bytearray | memoryview, *, body_digest: bytes | None = None) -> str:
        """Return the sender's node id, or raise :class:`AuthError` with the status and reason.

        ``body_digest`` is the body's digest of the kind the request's ``X-Dtx-Digest`` header
        names (SHA-256 without it) when the caller computed it already.
        """
        missing = [h for h in HEADERS if not headers.get(h)]
        if missing:
            raise AuthError(401, "unsigned request (missing " + ", ".join(missing) + ")")
        sender, to = headers[H_NODE], headers[H_TO]
        try:
            ts = int(headers[H_TIME])
            nonce = bytes.fromhex(headers[H_NONCE])
            sig = bytes.fromhex(headers[H_SIG])
        except ValueError:
            raise AuthError(401, "malformed signature headers") from None
        if len(nonce) != _NONCE_SIZE or len(sig) != 64 or len(sender) > 64:
            raise AuthError(401, "malformed signature headers")
        kind = headers.get(H_DIGEST) or SHA256
        if kind == GMAC:
            if self._identity is None:
                raise AuthError(401, "this node does not take gmac body digests")
        else:
            _merkle_chunk(kind)
        if to != self.node_id:
            raise AuthError(421, f"request addressed to node {to[:64]}, this is {self.node_id}")
        now = int(self._clock())
        if abs(now - ts) > self.skew_ms:
            raise AuthError(401, f"stale request (timestamp {(ts - now) / 1000:+.1f} s from this node's clock)")
        try:
            raw_key = self._lookup(sender)
        except DtxError:
            raw_key = None
        if raw_key is None:
            raise AuthError(401, f"unknown sender {sender} (not registered on the ledger)")
        try:
            if kind == GMAC:
                digest = body_mac(self._pair_key(bytes(raw_key)), nonce, sender, to, body)
            else:
                digest = digest_body(kind, body) if body_digest is None else bytes(body_digest)
            # OpenSSL with the key object kept between requests where it is installed (~3x
            # pycryptodome's verification, which also parsed the key again on every request)
            good = check_signatures([bytes(raw_key)], [sig],
                                    [signing_message(method, path, digest, sender, to, ts, nonce, kind)])[0]
        except (InvalidSignature, MalformedInput):
            good = False
        if not good:
            raise AuthError(401, "bad signature")
        if not self.replay.check_and_add(sender, nonce, ts + self.skew_ms, now):
            raise AuthError(401, "replayed request (nonce already seen)")
        return sender


_Handler = Callable[[Any], Awaitable[Any]]
#: bodies at least this big (with a Content-Length) are received into reused buffers
_POOLED_BODY = 1 << 16


class _BodyBuffers:
    """Reused receive buffers for large bodies, by power-of-two capacity (event-loop only).

    A fresh multi-MiB buffer per request costs a page fault per 4 KiB on top of the copies
    (aiohttp's ``read()`` grows a bytearray, then copies it into bytes); a reused buffer is
    filled once, chunk by chunk, as the body arrives. At most ``keep`` bytes stay pooled.
    """

    def __init__(self, keep: int = 128 << 20) -> None:
        self._free: dict[int, list[mmap.mmap]] = {}
        self._kept = 0
        self._keep = keep

    def take(self, n: int) -> mmap.mmap:
        """A buffer of at least ``n`` bytes; page-aligned (an anonymous map), so a store can
        write it to disk directly (``O_DIRECT``) without copying it into an aligned one first."""
        cap = max(_POOLED_BODY, 1 << (n - 1).bit_length())
        free = self._free.get(cap)
        if free:
            self._kept -= cap
            return free.pop()
        return mmap.mmap(-1, cap)

    def give(self, buf: mmap.mmap) -> None:
        if self._kept + len(buf) <= self._keep:
            self._free.setdefault(len(buf), []).append(buf)
            self._kept += len(buf)


def auth_middleware(verifier: RequestVerifier, *, max_body: int = DEFAULT_MAX_BODY,
                    public: Callable[[str, str], bool] = lambda method, path: False,
                    log: logging.Logger | None = None) -> Any:
    """An aiohttp middleware that admits only requests :class:`RequestVerifier` accepts.

    ``public(method, path)`` names requests served unsigned (e.g. a health probe). The body
    is read here (after checking ``Content-Length`` against ``max_body``; create the application
    with ``client_max_size=max_body`` so a body without a length is bounded too) and stored in
    ``request["dtx_body"]``; the sender in ``request["dtx_sender"]``. A body of 64 KiB or more is
    a ``memoryview`` into a receive buffer that is reused once the handler returned: a handler
    keeps no reference to it past its return (copy what it keeps). Every refusal is one log
    line: ``refused METHOD PATH from SENDER@PEER: STATUS reason``.
    """
    from aiohttp import web

    logger = log or _log
    buffers = _BodyBuffers()

    async def read_into(request: Any, length: int) -> tuple[mmap.mmap, memoryview]:
        """The body of a request with a Content-Length, received into a pooled buffer."""
        buf = buffers.take(length)
        view = memoryview(buf)
        content = request.content
        if hasattr(content, "set_read_chunk_size"):  # fewer pause/resume cycles (aiohttp >= 3.13)
            content.set_read_chunk_size(min(length, 1 << 20))
        n = 0
        while n < length:
            chunk = await content.readany()
            if not chunk:
                break
            if n + len(chunk) > length:
                raise ValueError("more bytes than Content-Length")
            view[n:n + len(chunk)] = chunk
            n += len(chunk)
        if n != length or await content.readany():
            raise ValueError("body length differs from Content-Length")
        return buf, view[:length]

    def refuse(request: Any, status: int, reason: str) -> Any:
        sender = request.headers.get(H_NODE, "?")[:64]
        logger.warning("refused %s %s from %s@%s: %d %s", request.method, request.path, sender,
                       request.remote, status, reason)
        return web.json_response({"error": reason}, status=status)

    @web.middleware
    async def middleware(request: Any, handler: _Handler) -> Any:
        if public(request.method, request.path):
            request["dtx_sender"] = None
            request["dtx_body"] = b""
            return await handler(request)
        length = request.content_length
        if length is not None and length > max_body:
            return refuse(request, 413, f"body of {length} bytes exceeds the limit of {max_body}")
        lease: mmap.mmap | None = None
        try:
            if length is not None and length >= _POOLED_BODY:
                lease, body = await read_into(request, length)
            else:
                body = await request.read()  # bounded by the application's client_max_size
        except web.HTTPRequestEntityTooLarge:
            return refuse(request, 413, f"body exceeds the limit of {max_body} bytes")
        except Exception as exc:  # a client that hangs up mid-body is the client's problem
            return refuse(request, 400, f"could not read the body ({type(exc).__name__})")
        if len(body) > max_body:
            return refuse(request, 413, f"body exceeds the limit of {max_body} bytes")
        digest = None
        kind = request.headers.get(H_DIGEST) or SHA256
        if len(body) >= 1 << 16 and kind != GMAC:  # hash large bodies in a worker thread, not on the event loop
            try:
                _merkle_chunk(kind)
            except AuthError as exc:
                return refuse(request, exc.status, exc.reason)
            digest = await asyncio.get_running_loop().run_in_executor(None, digest_body, kind, body)
        try:
            sender = verifier.verify(request.method, request.path_qs, request.headers, body, body_digest=digest)
        except AuthError as exc:
            return refuse(request, exc.status, exc.reason)
        request["dtx_sender"] = sender
        request["dtx_body"] = body
        response = await handler(request)
        if lease is not None:
            # only after the handler finished normally: a handler cancelled or failed midway may
            # have left a worker thread reading the buffer, so that buffer is not reused
            try:
                body.release()
            except BufferError:  # something still holds a view of it: leave it to the collector
                return response
            buffers.give(lease)
        return response

    return middleware
