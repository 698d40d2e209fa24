"""The replicated ledger backend: etcd (Raft) orders and replicates the blocks.

dtxfast keeps signing, hash-chaining, the contract and the audit; etcd, a Jepsen-tested Raft
store, decides the order of blocks and keeps them on a majority of its members. etcd tolerates
crashed members, not dishonest ones, so every block is still checked by
:meth:`~dtxfast.ledger.Ledger.verify_chain` against any member.

* **No forks**: block ``h + 1`` is written by one etcd transaction whose guard is "key
  ``blocks/h+1`` does not exist yet" (create-if-absent), so of two writers that read the same tip
  exactly one wins; the loser re-reads and runs its transactions again on top of the winner's
  block. The same transaction also carries the contract's state changes, the index terms and one
  key per transaction id (guarded the same way, which refuses a replay without a read).
* **Acknowledged = durable**: etcd answers a transaction once a majority of members committed it,
  so an acknowledged append survives the loss of any minority, including the leader. A request
  whose answer was lost (the leader died mid-request) is sent again; its guard makes that safe,
  and if the first one had landed the block at that height is recognised as ours by its hash.
* **One round trip per append** in the steady state: the writer keeps the records it read or wrote
  and the chain tip in a cache that is only trusted when its transaction commits (the guard fails
  if any other writer appended in between; the cache is then dropped and the append re-run on
  fresh reads). A refusal by the contract is re-checked the same way before it is reported.
* **Subscribers** wait on an etcd watch of the next block's key, not by polling.
* **Only metadata and hashes**: etcd refuses requests over ``--max-request-bytes`` (1.5 MiB by
  default) and transactions of more than ``--max-txn-ops`` operations (128 by default; a block of
  ``k`` entries needs some ``4 k + 8``, so start etcd with e.g. ``--max-txn-ops 4096`` for blocks
  of up to a thousand entries). A block that does not fit is refused before it is sent, with a
  :class:`~dtxfast.errors.ParameterError` that says so.

Client: etcd's own v3 JSON gateway (``/v3/kv/txn``, ``/v3/kv/range``, ``/v3/watch``), served by
every etcd 3.4+ member, through `httpx <https://www.python-httpx.org>`_ (a well-kept synchronous
HTTP client with keep-alive pools). The gRPC clients were not used: the old ``etcd3`` package
does not import with current protobuf, and ``aetcd`` is asyncio-only, which would put an event
loop under every synchronous ledger call; the gateway is the same API with no generated code.

Keys, under the prefix ``dtx/<chain>/``: ``b/<height:016x>`` a block (header, hash, entries),
``x/<tx_id>`` the height of a transaction, ``o/<kind>\\0<key>`` a record and its index terms,
``t/<kind>\\0<attr>\\0<value>\\0<key>`` an index term.

Examples
--------
>>> from dtxfast.ledger import open_ledger, NodeIdentity, RegisterNode
>>> from dtxfast.ledger.etcd_local import LocalEtcdCluster, etcd_binary
>>> if etcd_binary() is not None:
...     with LocalEtcdCluster(1) as cluster:
...         led = open_ledger(cluster.url("doc"), create=True)
...         r = led.submit(NodeIdentity.generate(), RegisterNode(role="storage"))
...         print(r.height, led.verify_chain().blocks)
...         led.close()
... else:
...     print(1, 2)
1 2
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import msgspec

from ..errors import BackendUnavailable, DtxError, NotFound, ParameterError, StateError
from .backend import WriteTxn
from .base import Ledger
from .block import Block, BlockHeader, DuplicateTransaction, Entry, Receipt
from .tx import SignedTx

__all__ = ["EtcdLedger", "EtcdUnavailable", "parse_etcd_url"]

#: etcd's default ``--max-request-bytes`` is 1.5 MiB (keys and values, before the gateway's
#: base64); a margin is kept for the request's framing
MAX_REQUEST_BYTES = 1_500_000

_enc = msgspec.msgpack.Encoder()
_block_dec = msgspec.msgpack.Decoder(tuple[bytes, bytes, list[bytes]])
_obj_dec = msgspec.msgpack.Decoder(tuple[bytes, list[tuple[str, str]]])
_hdr_dec = msgspec.msgpack.Decoder(BlockHeader)


class EtcdUnavailable(StateError, ConnectionError):
    """No member of the etcd cluster answered (or none has a leader) before the deadline."""


class _Retry(Exception):
    """Another writer appended first: re-run the append on fresh reads."""


def parse_etcd_url(location: str) -> tuple[list[str], str]:
    """Split ``etcd://HOST:PORT[,HOST:PORT...][/CHAIN]`` into endpoints and a chain name.

    Examples
    --------
    >>> parse_etcd_url("etcd://127.0.0.1:2379,127.0.0.1:2381/prod")
    (['127.0.0.1:2379', '127.0.0.1:2381'], 'prod')
    >>> parse_etcd_url("etcd://10.0.0.1:2379")
    (['10.0.0.1:2379'], 'default')
    """
    if not location.startswith("etcd://"):
        raise ParameterError(f"not an etcd ledger location: {location!r}")
    rest = location[len("etcd://"):]
    hosts, _, chain = rest.partition("/")
    chain = chain.strip("/") or "default"
    if not all(c.isalnum() or c in "-_." for c in chain):
        raise ParameterError(f"chain name {chain!r}: use letters, digits, '-', '_', '.'")
    eps = [h.strip() for h in hosts.split(",") if h.strip()]
    if not eps:
        raise ParameterError(f"no etcd endpoint in {location!r}")
    for ep in eps:
        host, sep, port = ep.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ParameterError(f"etcd endpoint {ep!r} is not HOST:PORT")
    return eps, chain


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def _unb64(s: str | None) -> bytes:
    return base64.b64decode(s) if s else b""


def _prefix_end(p: bytes) -> bytes:
    """The first key after every key starting with ``p`` (etcd's range_end of a prefix)."""
    b = bytearray(p)
    while b:
        if b[-1] < 0xFF:
            b[-1] += 1
            return bytes(b)
        b.pop()
    return b"\x00"


class _Client:
    """The v3 JSON gateway of a list of members, failing over between them."""

    def __init__(self, endpoints: list[str], timeout: float, request_timeout: float) -> None:
        try:
            import httpx
        except ImportError:  # pragma: no cover - httpx is a dependency of the etcd extra
            raise BackendUnavailable("the etcd ledger needs httpx: pip install 'dtxfast[etcd]'") from None
        self._httpx = httpx
        self.endpoints = endpoints
        self.timeout = timeout
        self.request_timeout = request_timeout
        self._cur = 0
        self.serializable = False
        self._lock = threading.Lock()
        self._clients: dict[str, Any] = {}
        self._pid = os.getpid()

    def _client(self, ep: str) -> Any:
        if self._pid != os.getpid():  # a forked child opens its own connections
            self._clients, self._pid = {}, os.getpid()
        c = self._clients.get(ep)
        if c is None:
            c = self._httpx.Client(base_url=f"http://{ep}", timeout=self.request_timeout,
                                   limits=self._httpx.Limits(max_keepalive_connections=8))
            self._clients[ep] = c
        return c

    def close(self) -> None:
        clients, self._clients = self._clients, {}
        for c in clients.values():
            with contextlib.suppress(Exception):
                c.close()

    def call(self, path: str, body: dict[str, Any], *, on_retry: Callable[[], None] | None = None
             ) -> dict[str, Any]:
        """POST ``body`` to ``path``, moving to the next member on a connection failure, a
        timeout or an answer without a leader, until ``timeout`` seconds have passed."""
        httpx = self._httpx
        deadline = time.monotonic() + self.timeout
        last = ""
        tries = 0
        while True:
            ep = self.endpoints[self._cur % len(self.endpoints)]
            try:
                r = self._client(ep).post(path, json=body)
                data = r.json()
                if r.status_code == 200:
                    return data  # type: ignore[no-any-return]
                msg = str(data.get("error") or data.get("message") or data)
                if "too large" in msg or "too many operations" in msg:
                    raise ParameterError(f"etcd refused the request: {msg} (only metadata and "
                                         "hashes belong on the ledger; see EtcdLedger)")
                if "duplicate key" in msg or "invalid" in msg.lower() and "key" in msg.lower():
                    raise StateError(f"etcd refused the request: {msg}")
                last = f"{ep}: {msg}"
            except (httpx.TransportError, ValueError) as exc:
                if isinstance(exc, ParameterError):
                    raise
                last = f"{ep}: {type(exc).__name__} {exc}"
            tries += 1
            if on_retry is not None:
                on_retry()
            if time.monotonic() > deadline:
                raise EtcdUnavailable(f"etcd cluster {','.join(self.endpoints)} unavailable "
                                      f"after {tries} tries ({last})")
            with self._lock:
                self._cur += 1
            if tries % len(self.endpoints) == 0:
                time.sleep(min(0.05 * tries, 0.5))

    def range(self, key: bytes, end: bytes | None = None, *, linear: bool = False,
              **opts: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"key": _b64(key), **opts}
        if self.serializable and not linear:
            body["serializable"] = True
        if end is not None:
            body["range_end"] = _b64(end)
        return self.call("/v3/kv/range", body)

    def watch_once(self, key: bytes, timeout: float, created: Callable[[], bool]) -> bool:
        """Watch ``key``; once the watch is set up, ``created()`` may return True to stop early;
        otherwise wait up to ``timeout`` for the first event. True if something happened."""
        httpx = self._httpx
        ep = self.endpoints[self._cur % len(self.endpoints)]
        body = {"create_request": {"key": _b64(key)}}
        deadline = time.monotonic() + timeout
        try:
            t = httpx.Timeout(self.request_timeout, read=max(0.01, timeout))
            with self._client(ep).stream("POST", "/v3/watch", json=body, timeout=t) as r:
                if r.status_code != 200:
                    return False
                for line in r.iter_lines():
                    if not line.strip():
                        continue
                    res = json.loads(line).get("result", {})
                    if res.get("created"):
                        if created():
                            return True
                    elif res.get("events"):
                        return True
                    if time.monotonic() > deadline:
                        return False
        except (httpx.TransportError, ValueError):
            with self._lock:
                self._cur += 1
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        return False


class _EtcdTxn(WriteTxn):
    """A write transaction: reads through the ledger's cache, writes into an overlay."""

    def __init__(self, led: EtcdLedger) -> None:
        self.led = led
        self.objects: dict[tuple[str, str], tuple[bytes, list[tuple[str, str]]]] = {}
        self.block: Block | None = None
        self.entries: Sequence[Entry] = ()
        self.base: tuple[int, bytes] | None = None
        self.used: set[tuple[str, str]] = set()

    def _record(self, kind: str, key: str) -> tuple[bytes, list[tuple[str, str]]] | None:
        k = (kind, key)
        if k in self.objects:
            return self.objects[k]
        self.used.add(k)
        return self.led._cached_record(kind, key)

    def get(self, kind: str, key: str) -> bytes | None:
        rec = self._record(kind, key)
        return None if rec is None else rec[0]

    def put(self, kind: str, key: str, value: bytes, terms: Sequence[tuple[str, str]]) -> None:
        self.objects[(kind, key)] = (bytes(value), sorted(set(terms)))

    def keys(self, kind: str, attr: str, value: str) -> list[str]:
        found = set(self.led._r_keys(kind, attr, value, linear=True))
        for (k, key), (_, terms) in self.objects.items():
            if k == kind:
                if (attr, value) in terms:
                    found.add(key)
                else:
                    found.discard(key)
        return sorted(found)

    def tip(self) -> tuple[int, bytes]:
        if self.base is None:
            self.base = self.led._cached_tip()
        return self.base

    def has_tx(self, tx_id: bytes) -> bool:
        return False  # checked by the commit's guard on the x/<tx_id> keys

    def add_block(self, block: Block, entries: Sequence[Entry]) -> None:
        if self.block is not None:
            raise ParameterError("one block per etcd transaction")
        self.block = block
        self.entries = entries


class EtcdLedger(Ledger):
    """A ledger replicated by an etcd cluster (see the module docs).

    Parameters
    ----------
    endpoints : str or list of str
        ``"etcd://HOST:PORT[,...][/CHAIN]"``, or a list of ``HOST:PORT``.
    chain : str
        The chain's name (its key prefix) when ``endpoints`` is a list; several chains can share
        one cluster.
    create : bool
        Write the genesis block if the chain has none (default: it must exist).
    timeout : float, optional
        Seconds a call keeps trying other members (e.g. through a leader election) before
        :class:`EtcdUnavailable` (default: ``DTX_ETCD_TIMEOUT`` or 30).
    request_timeout : float
        Seconds one HTTP request may take before the next member is tried (a paused or
        partitioned member).
    serializable : bool
        Serve reads (queries, blocks, verification) from the member asked, without confirming
        with the leader that it is up to date: faster, possibly behind, and the way to audit what
        one member holds. Appends always read through the leader.
    clock, max_skew_ms
        As for :class:`~dtxfast.ledger.Ledger`.

    Raises
    ------
    NotFound
        No chain at this location and ``create`` is false.
    EtcdUnavailable
        No member answered.
    """

    def __init__(self, endpoints: str | Sequence[str], *, chain: str = "default",
                 create: bool = False, timeout: float | None = None,
                 request_timeout: float = 1.0, serializable: bool = False,
                 clock: Callable[[], int] | None = None,
                 max_skew_ms: int | None = 600_000) -> None:
        super().__init__(clock=clock, max_skew_ms=max_skew_ms)
        if isinstance(endpoints, str):
            eps, chain = parse_etcd_url(endpoints)
        else:
            eps = list(endpoints)
            parse_etcd_url("etcd://" + ",".join(eps) + "/" + chain)
        self.endpoints = eps
        self.chain = chain
        self.location = "etcd://" + ",".join(eps) + "/" + chain
        if timeout is None:
            timeout = float(os.environ.get("DTX_ETCD_TIMEOUT", "30"))
        self._c = _Client(eps, timeout, request_timeout)
        self._c.serializable = serializable
        p = f"dtx/{chain}/".encode()
        self._pb, self._px, self._po, self._pt = p + b"b/", p + b"x/", p + b"o/", p + b"t/"
        self._lock = threading.RLock()
        self._cache: dict[tuple[str, str], tuple[bytes, list[tuple[str, str]]] | None] = {}
        self._tip: tuple[int, bytes] | None = None
        if self._r_height() < 0:
            if not create:
                raise NotFound(f"no ledger at {self.location} (create one with: "
                               f"dtx ledger init -L {self.location})")
            with contextlib.suppress(_Retry, DuplicateTransaction), self._write() as w:
                self._make_genesis(w)

    # --- keys ---------------------------------------------------------------------------

    def _bkey(self, height: int) -> bytes:
        return self._pb + f"{height:016x}".encode()

    def _okey(self, kind: str, key: str) -> bytes:
        return self._po + f"{kind}\x00{key}".encode()

    def _tkey(self, kind: str, attr: str, value: str, key: str = "") -> bytes:
        return self._pt + f"{kind}\x00{attr}\x00{value}\x00{key}".encode()

    # --- cache (trusted only through a commit's guard) -----------------------------------

    def _cached_record(self, kind: str, key: str) -> tuple[bytes, list[tuple[str, str]]] | None:
        k = (kind, key)
        if k in self._cache:
            return self._cache[k]
        kvs = self._c.range(self._okey(kind, key), linear=True).get("kvs") or []
        rec = _obj_dec.decode(_unb64(kvs[0].get("value"))) if kvs else None
        if len(self._cache) > 100_000:
            self._cache.clear()
        self._cache[k] = rec
        return rec

    def _cached_tip(self) -> tuple[int, bytes]:
        if self._tip is None:
            kvs = self._c.range(self._pb, _prefix_end(self._pb), limit=1, sort_order="DESCEND",
                                sort_target="KEY", linear=True).get("kvs") or []
            if not kvs:
                self._tip = (-1, b"")
            else:
                b = self._decode_block(kvs[0])
                self._tip = (b.height, b.hash)
        return self._tip

    def _invalidate(self) -> None:
        self._cache.clear()
        self._tip = None

    # --- writes -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _write(self) -> Iterator[WriteTxn]:
        with self._lock:
            txn = _EtcdTxn(self)
            try:
                yield txn
            except DtxError:
                # a refusal computed on a stale cache is not an answer: re-run on fresh reads
                if txn.base is not None and self._exists(self._bkey(txn.base[0] + 1)):
                    self._invalidate()
                    raise _Retry() from None
                raise
            self._commit(txn)

    def _exists(self, key: bytes) -> bool:
        return int(self._c.range(key, count_only=True, linear=True).get("count", 0)) > 0

    def _commit(self, txn: _EtcdTxn) -> None:
        block = txn.block
        if block is None:
            return
        h = block.height
        bkey = self._bkey(h)
        compare = [{"key": _b64(bkey), "target": "CREATE", "result": "EQUAL", "create_revision": "0"}]
        ops: list[dict[str, Any]] = [{"request_put": {"key": _b64(bkey), "value": _b64(
            _enc.encode((block.header.encode(), block.hash, block.txs)))}}]
        size = len(block.txs) * 60 + sum(map(len, block.txs))
        hval = _b64(h.to_bytes(8, "big"))
        for e in txn.entries:
            xk = _b64(self._px + e.tx_id)
            compare.append({"key": xk, "target": "CREATE", "result": "EQUAL", "create_revision": "0"})
            ops.append({"request_put": {"key": xk, "value": hval}})
        for (kind, key), (value, terms) in txn.objects.items():
            size += len(value) + 100
            old = self._cached_record(kind, key)
            old_terms = set(old[1]) if old is not None else set()
            ops.append({"request_put": {"key": _b64(self._okey(kind, key)),
                                        "value": _b64(_enc.encode((value, terms)))}})
            for a, v in old_terms - set(terms):
                ops.append({"request_delete_range": {"key": _b64(self._tkey(kind, a, v, key))}})
            for a, v in set(terms) - old_terms:
                ops.append({"request_put": {"key": _b64(self._tkey(kind, a, v, key)), "value": ""}})
        body = {"compare": compare, "success": ops}
        if size > MAX_REQUEST_BYTES:
            raise ParameterError(f"a block of {len(block.txs)} entries is about {size} bytes as an etcd "
                                 f"request, over the {MAX_REQUEST_BYTES}-byte limit: only metadata "
                                 "and hashes belong on the ledger (split the batch)")
        sent = [False]

        def resent() -> None:
            sent[0] = True

        # if the guard fails, the same round trip brings back the new tip and fresh copies of
        # every record this append used, read at one revision: the retry starts warm
        fresh = sorted(txn.used | set(txn.objects))
        body["failure"] = [{"request_range": {
            "key": _b64(self._pb), "range_end": _b64(_prefix_end(self._pb)), "limit": 1,
            "sort_order": "DESCEND", "sort_target": "KEY"}}] + [
            {"request_range": {"key": _b64(self._okey(k, key))}} for k, key in fresh]
        res = self._c.call("/v3/kv/txn", body, on_retry=resent)
        if res.get("succeeded"):
            self._applied(txn)
            return
        # the guard failed: someone else's block at h, a replay, or our own earlier try landed
        responses = [r.get("response_range", {}) for r in res.get("responses", [])]
        tip_kvs = responses[0].get("kvs") or [] if responses else []
        now = self._decode_block(tip_kvs[0]) if tip_kvs else None
        if now is not None and now.height >= h:
            if now.height == h and now.hash == block.hash:  # ours landed; its answer was lost
                self._applied(txn)
                return
            self._cache.clear()
            for (k, key), rr in zip(fresh, responses[1:]):
                kvs = rr.get("kvs") or []
                self._cache[(k, key)] = _obj_dec.decode(_unb64(kvs[0].get("value"))) if kvs else None
            self._tip = (now.height, now.hash)
            if sent[0] and now.height > h:  # a resent request: was ours the block at h?
                kvs = self._c.range(bkey, linear=True).get("kvs") or []
                if kvs and self._decode_block(kvs[0]).hash == block.hash:
                    self._applied(txn)
                    return
            raise _Retry()
        self._invalidate()
        raise DuplicateTransaction("a transaction of this block is already on the ledger")

    def _applied(self, txn: _EtcdTxn) -> None:
        assert txn.block is not None
        self._cache.update(txn.objects)
        self._tip = (txn.block.height, txn.block.hash)

    def append_many(self, txs: Sequence[SignedTx | bytes]) -> list[Receipt]:
        """Append several transactions as one block (see :meth:`Ledger.append_many`); re-run on
        fresh state if another writer appended first."""
        items = [SignedTx.decode(t) if isinstance(t, (bytes, bytearray, memoryview)) else t
                 for t in txs]
        while True:
            try:
                return super().append_many(items)
            except _Retry:
                # lost the race; the guard's failure answer already refreshed the tip and the
                # records used, so the next try is one round trip too (no back-off: a sleeping
                # loser would let the writer that keeps winning starve it)
                continue

    # --- reads --------------------------------------------------------------------------

    def _decode_block(self, kv: dict[str, Any]) -> Block:
        header, bhash, raws = _block_dec.decode(_unb64(kv.get("value")))
        try:
            hdr: BlockHeader = _hdr_dec.decode(header)
        except msgspec.DecodeError:
            hdr = BlockHeader(-1, b"", 0, b"", -1, b"corrupt")
        return Block(hdr, bhash, raws)

    def _r_get(self, kind: str, key: str) -> bytes | None:
        kvs = self._c.range(self._okey(kind, key)).get("kvs") or []
        return _obj_dec.decode(_unb64(kvs[0].get("value")))[0] if kvs else None

    def _r_keys(self, kind: str, attr: str, value: str, linear: bool = False) -> list[str]:
        p = self._tkey(kind, attr, value)
        kvs = self._c.range(p, _prefix_end(p), keys_only=True, linear=linear).get("kvs") or []
        return sorted(_unb64(kv["key"])[len(p):].decode() for kv in kvs)

    def _r_all(self, kind: str) -> list[str]:
        p = self._po + f"{kind}\x00".encode()
        kvs = self._c.range(p, _prefix_end(p), keys_only=True).get("kvs") or []
        return sorted(_unb64(kv["key"])[len(p):].decode() for kv in kvs)

    def _r_records(self) -> Iterator[tuple[str, str, bytes]]:
        p = self._po
        kvs = self._c.range(p, _prefix_end(p)).get("kvs") or []
        for kv in kvs:
            kind, _, key = _unb64(kv["key"])[len(p):].decode().partition("\x00")
            yield kind, key, _obj_dec.decode(_unb64(kv.get("value")))[0]

    def _r_height(self) -> int:
        kvs = self._c.range(self._pb, _prefix_end(self._pb), limit=1, sort_order="DESCEND",
                            sort_target="KEY", keys_only=True).get("kvs") or []
        if not kvs:
            return -1
        return int(_unb64(kvs[0]["key"])[len(self._pb):], 16)

    def _r_orphans(self) -> tuple[int, int]:
        """Transaction index keys (``x/<tx_id>``) whose block key is gone: a block's key and its
        transactions' index keys are written in one etcd transaction, so only a delete behind
        the ledger's back separates them. The index is read first (linearizably), then the block
        keys: a block appended in between brings its index keys and its block key together."""
        kvs = self._c.range(self._px, _prefix_end(self._px), linear=True).get("kvs") or []
        cited = [int.from_bytes(_unb64(kv.get("value")), "big") for kv in kvs]
        if not cited:
            return 0, -1
        keys = self._c.range(self._pb, _prefix_end(self._pb), keys_only=True, linear=True).get("kvs") or []
        heights = {int(_unb64(kv["key"])[len(self._pb):], 16) for kv in keys}
        orphans = [h for h in cited if h not in heights]
        return (len(orphans), min(orphans)) if orphans else (0, -1)

    def _r_blocks(self, start: int, stop: int, chunk: int = 512) -> Iterator[Block]:
        lo = max(0, start)
        while lo < stop:
            hi = min(stop, lo + chunk)
            kvs = self._c.range(self._bkey(lo), self._bkey(hi)).get("kvs") or []
            for kv in kvs:
                b = self._decode_block(kv)
                h = int(_unb64(kv["key"])[len(self._pb):], 16)
                if b.header.height != h:  # a block stored under the wrong key is not that block
                    b = Block(BlockHeader(h, b"", 0, b"", -1, b"misplaced"), b.hash, b.txs)
                yield b
            if not kvs:
                return
            lo = hi

    def _wait(self, height: int, timeout: float) -> bool:
        if self._r_height() > height:
            return True
        return self._c.watch_once(self._bkey(height + 1), timeout,
                                  lambda: self._r_height() > height)

    # --- cluster ------------------------------------------------------------------------

    def members(self) -> list[dict[str, Any]]:
        """The cluster's members: ``name``, ``endpoints`` (client URLs), ``leader`` (bool),
        ``reachable`` (answered a status request)."""
        ml = self._c.call("/v3/cluster/member/list", {})
        leader = ""
        for ep in self.endpoints:
            with contextlib.suppress(Exception):
                c = self._c._client(ep)
                st = c.post("/v3/maintenance/status", json={}, timeout=1.0).json()
                leader = str(st.get("leader", ""))
                if leader:
                    break
        out = []
        for m in ml.get("members", []):
            urls = [u.removeprefix("http://").removeprefix("https://") for u in m.get("clientURLs", [])]
            out.append({"name": m.get("name", ""), "id": str(m.get("ID", "")), "endpoints": urls,
                        "leader": bool(leader) and str(m.get("ID", "")) == leader})
        return out

    def close(self) -> None:
        """Close the HTTP connections."""
        self._c.close()

    # test hooks: write or delete raw keys behind the ledger's back (tamper tests)
    def _raw_put(self, key: bytes, value: bytes) -> None:
        self._c.call("/v3/kv/put", {"key": _b64(key), "value": _b64(value)})
        self._invalidate()

    def _raw_delete(self, key: bytes) -> None:
        self._c.call("/v3/kv/deleterange", {"key": _b64(key)})
        self._invalidate()

