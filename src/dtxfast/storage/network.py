"""The storage network's client: a DataOwner's (or an approved executor's) side of storage nodes.

:class:`StorageNetwork` uploads a file to storage-node processes (:mod:`dtxfast.nodes.storage`)
and publishes it on the ledger, downloads it back, and lists and shows files, their placement
and health. All requests are signed (:mod:`dtxfast.transport.http_auth`).

Upload
------
The file is read slice by slice (``slice_size``, default 4 MiB); each slice becomes
``replicas`` AES-256-GCM encryptions, replica ``r`` under the key and nonce of index ``r``
(:class:`~dtxfast.crypto.aead.FileCipher`, keyed by the owner's file key of a fresh random
*content id*), each with its Merkle root. The last slice is zero-padded only to a whole Merkle
chunk, not to a whole slice. Nodes are chosen by :func:`choose_placement`: never two replicas
of one slice on one node, healthy nodes only (alive by their heartbeats, not Red), the least
loaded first. A few slices are in flight at once: their replicas are encrypted in worker
threads (the AEAD releases the GIL) while earlier ones are uploaded in parallel. Only when
every replica is stored is the file published (:class:`~dtxfast.ledger.PublishFile`, with each
replica's index, root and size); if anything fails, the replicas already stored are deleted
and nothing is published. An upload journals its placement in ``state_dir`` before its first
PUT and holds that journal locked while it runs, so when an uploader is killed midway, the
owner's next upload (or :meth:`StorageNetwork.remove_orphans`) deletes what it left on the nodes.

Download
--------
Each slice is fetched from one replica (healthy nodes first, the next replica if one fails),
decrypted and authenticated (a replica that fails its GCM tag is skipped), and written at its
offset into a temporary file that replaces the output only when every slice is in, so the
output is written all or nothing. A few worker threads each take a slice from end to end
(receive it straight into the thread's buffer, decrypt, write) while the others' slices arrive. The file key is the owner's own, or for an executor the one
its owner sealed to it in an :class:`~dtxfast.ledger.ApproveApplication`.

Examples
--------
>>> choose_placement(["a", "b", "c", "d"], slices=2, replicas=3)
[['a', 'b', 'c'], ['d', 'a', 'b']]
"""

from __future__ import annotations

import asyncio
import hashlib
import mmap
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from .._backend import num_threads
from .._fs import PositionedWriter, atomic_output
from ..crypto.aead import TAG_SIZE, FileCipher
from ..crypto.merkle import DEFAULT_CHUNK_SIZE, MerkleTree
from ..errors import (
    DtxError,
    InvalidProof,
    NotFound,
    ParameterError,
    ProtocolError,
    StateError,
    Unauthorized,
)
from ..ledger import (
    ApplicationStatus,
    CreateNamespace,
    FileRecord,
    FileStatus,
    Ledger,
    NodeIdentity,
    PublishFile,
    RegisterNode,
    ReplicaInfo,
    SliceInfo,
)
from ..ledger.contract import FILE_OWNER_ROLES
from ..ledger.health import GREEN, RED, YELLOW
from ..transport.http_auth import GMAC, SHA256
from .owner import DEFAULT_REPLICAS, DEFAULT_SLICE_SIZE, DataOwner

__all__ = [
    "DEFAULT_LIVENESS",
    "NodeStatus",
    "NodeUnreachable",
    "StorageNetwork",
    "choose_placement",
    "node_statuses",
    "replica_load",
]

#: a node whose last heartbeat is older than this (seconds) is not alive
DEFAULT_LIVENESS = 180.0
_RANK = {GREEN: 0, YELLOW: 1, RED: 2}
_SLICE_DOMAIN = b"dtxfast/slice-roots/v1\x00"
_FILE_DOMAIN = b"dtxfast/file-slices/v1\x00"


class NodeUnreachable(ProtocolError):
    """A storage node did not answer at all (connection refused, reset or timed out)."""


@dataclass(frozen=True)
class NodeStatus:
    """A storage node as a client sees it: address, health on the ledger, liveness."""

    node_id: str
    address: str
    health: str
    alive: bool
    last_heartbeat_ms: int

    @property
    def healthy(self) -> bool:
        """Alive (recent heartbeat, online) and not Red."""
        return self.alive and self.health != RED

    def to_dict(self) -> dict[str, Any]:
        return {"node_id": self.node_id, "role": "storage", "address": self.address, "health": self.health,
                "alive": self.alive, "healthy": self.healthy}


def node_statuses(ledger: Ledger, *, now_ms: int | None = None, liveness: float = DEFAULT_LIVENESS) -> dict[str, NodeStatus]:
    """Every registered storage node's status, by node id."""
    now = ledger.now_ms() if now_ms is None else now_ms
    out = {}
    for n in ledger.list_nodes(role="storage"):
        health = ledger.node_health(n.node_id, now_ms=now).level
        alive = n.online and now - n.last_heartbeat_ms <= liveness * 1000
        out[n.node_id] = NodeStatus(n.node_id, n.address, health, alive, n.last_heartbeat_ms)
    return out


def choose_placement(nodes: Sequence[str], *, slices: int, replicas: int,
                     load: dict[str, int] | None = None) -> list[list[str]]:
    """The nodes for each slice's replicas: distinct within a slice, least loaded first.

    ``nodes`` are the healthy candidates, best first (ties in load go to the earlier one);
    ``load`` counts replicas a node already holds (updated in place as slices are placed).

    Raises
    ------
    StateError
        Fewer candidates than ``replicas``.
    """
    if replicas < 1 or slices < 0:
        raise ParameterError("replicas must be at least 1")
    if len(set(nodes)) < replicas:
        raise StateError(f"only {len(set(nodes))} healthy storage nodes for {replicas} replicas per slice; "
                         "start more nodes or ask for fewer replicas")
    load = {} if load is None else load
    order = {n: i for i, n in enumerate(dict.fromkeys(nodes))}
    placement = []
    for _ in range(slices):
        chosen = sorted(order, key=lambda n: (load.get(n, 0), order[n]))[:replicas]
        for n in chosen:
            load[n] = load.get(n, 0) + 1
        placement.append(chosen)
    return placement


def replica_load(ledger: Ledger, nodes: Iterable[str]) -> dict[str, int]:
    """How many replicas of published files each node holds (the ledger's placement)."""
    out = {}
    for n in nodes:
        out[n] = sum(s.nodes.count(n) for f in ledger.list_files(node=n) for s in f.slices)
    return out


def _default_state_dir() -> Path:
    if os.environ.get("DTX_STATE_DIR"):
        return Path(os.environ["DTX_STATE_DIR"])
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "dtxfast"


def slice_digest(roots: Iterable[bytes]) -> bytes:
    """What the ledger records as a slice's digest: SHA-256 over its replicas' Merkle roots."""
    return hashlib.sha256(_SLICE_DOMAIN + b"".join(roots)).digest()


#: bodies at least this big are sent in pieces of this size (see _SlicedBody)
_SLICED = 1 << 18


def _sliced_body_class() -> type:
    from aiohttp.payload import BytesPayload

    class SlicedBody(BytesPayload):  # type: ignore[misc]
        """A large body written to the connection in pieces of :data:`_SLICED` bytes.

        aiohttp writes a bytes-like body in one call, which on Python < 3.12.9 joins the headers
        and the whole body into one new bytes object (a copy of every replica, into fresh pages)
        and then copies whatever the socket did not take at once into the transport's buffer (a
        second copy of most of it). Written in pieces, each waiting for the transport to drain,
        only the first piece is joined with the headers and little is ever left to buffer: the
        kernel reads the rest straight from the caller's buffer. The bytes sent are the same.
        """

        async def write_with_length(self, writer: Any, content_length: int | None) -> None:
            view = self._value if content_length is None else self._value[:content_length]
            for start in range(0, len(view), _SLICED):
                await writer.write(view[start:start + _SLICED])

        async def write(self, writer: Any) -> None:
            await self.write_with_length(writer, None)

    return SlicedBody


_sliced_body: type | None = None


def _SlicedBody(view: memoryview) -> Any:
    global _sliced_body
    if _sliced_body is None:
        _sliced_body = _sliced_body_class()
    return _sliced_body(view.cast("B"))


class _Http:
    """Signed requests to storage nodes over one aiohttp session (HTTP framing lives here)."""

    def __init__(self, identity: NodeIdentity, clock: Callable[[], int], timeout: float, parallel: int) -> None:
        import aiohttp

        from ..transport.http_auth import RequestSigner

        self.signer = RequestSigner(identity, clock=clock)
        self.session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=timeout, connect=min(timeout, 5.0)),
            connector=aiohttp.TCPConnector(limit=max(8, parallel * 4), limit_per_host=max(4, parallel)),
            auto_decompress=False,
            read_bufsize=1 << 20,  # replicas are MiBs: fewer pause/resume cycles of the socket reader
        )

    async def close(self) -> None:
        await self.session.close()

    async def request(self, node: NodeStatus, method: str, path: str, body: bytes | bytearray | memoryview = b"",
                      body_digest: bytes | None = None, digest_kind: str = SHA256,
                      peer_key: bytes | None = None, headers: dict[str, str] | None = None) -> bytes:
        """Send a signed request; the response body, or raise (ProtocolError / Unauthorized / NotFound).

        ``headers`` are the request's signature headers when the caller made them already
        (:meth:`RequestSigner.headers`, e.g. in a worker thread); otherwise they are made here.
        """
        import aiohttp

        if headers is None:
            headers = self.signer.headers(method, path, body, to=node.node_id, body_digest=body_digest,
                                          digest_kind=digest_kind, peer_key=peer_key)
        data = _SlicedBody(memoryview(body)) if len(body) >= _SLICED else memoryview(body) if body else None
        try:
            async with self.session.request(method, node.address + path, data=data, headers=headers) as resp:
                data = await resp.read()
                if resp.status < 300:
                    return data
                await self._refused(node, resp, data)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise NodeUnreachable(f"node {node.node_id} at {node.address} is unreachable ({type(exc).__name__}: {exc})") from None
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    async def _refused(node: NodeStatus, resp: Any, data: bytes) -> None:
        """Raise the error an answer of status 300 or more stands for."""
        raise _refusal(node, resp.status, data)

    def replica_path(self, content_id: bytes, slice_index: int, index: int) -> str:
        return f"/v1/replicas/{content_id.hex()}/{slice_index}/{index}"

    async def put(self, node: NodeStatus, content_id: bytes, s: int, r: int, data: bytes | bytearray | memoryview,
                  body_digest: bytes | None = None, digest_kind: str = SHA256,
                  peer_key: bytes | None = None, headers: dict[str, str] | None = None) -> None:
        await self.request(node, "PUT", self.replica_path(content_id, s, r), data, body_digest, digest_kind,
                           peer_key, headers)

    async def delete(self, node: NodeStatus, content_id: bytes, s: int, r: int) -> None:
        await self.request(node, "DELETE", self.replica_path(content_id, s, r))

    async def get(self, node: NodeStatus, file_id: str, s: int, r: int) -> bytes:
        return await self.request(node, "GET", f"/v1/files/{file_id}/{s}/{r}")


def _refusal(node: NodeStatus, status: int, data: bytes) -> DtxError:
    """The error a node's answer of status 300 or more stands for (its JSON ``error``, if any)."""
    try:
        reason = str(msgspec.json.decode(data).get("error", ""))
    except Exception:
        reason = data[:200].decode(errors="replace")
    msg = f"node {node.node_id} answered {status}: {reason}"
    if status == 403:
        return Unauthorized(msg)
    if status == 404:
        return NotFound(msg)
    if status == 410:
        return StateError(msg)
    return ProtocolError(msg)


class _BlockingHttp:
    """Signed replica GETs from worker threads, over the standard library's
    :mod:`http.client`, on kept-alive connections the threads share (a connection serves one
    request at a time; one that the node closed while idle is reopened once, with a fresh
    signature, since a signed request is accepted only once).

    Why beside :class:`_Http`: a replica moved through aiohttp's client passes the event loop
    (its bytes arrive as 256 KiB chunks that are copied again into the caller's buffer, and each
    crosses the thread that also schedules every other request), and on two cores that loop
    thread was the download's bottleneck: 256 MiB fetched in 0.21-0.26 s for 0.20-0.25 CPU-s of
    the client, against 0.13-0.15 s for 0.11-0.12 CPU-s from four threads that read each answer
    straight into their buffer (``readinto``, i.e. ``recv_into``) and then decrypt and write it
    themselves (same nodes, same load). The requests are the same signed requests.
    """

    def __init__(self, signer: Any, timeout: float) -> None:
        self.signer = signer
        self.timeout = timeout
        self._lock = threading.Lock()
        self._idle: dict[str, list[Any]] = {}  # kept-alive connections not in use, by node address
        self._closed = False

    def _connection(self, node: NodeStatus) -> tuple[Any, bool]:
        """(an idle connection to ``node``, or a new one; whether it served a request before)."""
        import http.client
        from urllib.parse import urlsplit

        with self._lock:
            idle = self._idle.get(node.address)
            if idle:
                return idle.pop(), True
        url = urlsplit(node.address)
        if url.scheme != "http" or not url.hostname:
            raise NodeUnreachable(f"node {node.node_id} has an address this client cannot reach: {node.address!r}")
        return http.client.HTTPConnection(url.hostname, url.port or 80, timeout=self.timeout), False

    def _release(self, node: NodeStatus, conn: Any) -> None:
        with self._lock:
            if not self._closed:
                self._idle.setdefault(node.address, []).append(conn)
                return
        conn.close()

    def _exchange(self, node: NodeStatus, method: str, path: str, headers: Callable[[], dict[str, str]],
                  read: Callable[[Any], None]) -> None:
        """Send one bodiless request (``headers()`` signs it afresh for each attempt) and
        ``read(response)`` a 2xx answer; a kept-alive connection the node closed meanwhile is
        reopened once."""
        import http.client

        for attempt in (0, 1):
            conn, reused = self._connection(node)
            try:
                conn.request(method, path, headers=headers())
                resp = conn.getresponse()
                if resp.status >= 300:
                    raise _refusal(node, resp.status, resp.read())
                read(resp)
            except DtxError:  # before OSError: Unauthorized is also a PermissionError
                conn.close()
                raise
            except (http.client.HTTPException, OSError) as exc:
                conn.close()
                stale = isinstance(exc, (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError))
                if attempt == 0 and reused and stale:
                    continue  # the node closed an idle connection: a new one, a new signature
                raise NodeUnreachable(f"node {node.node_id} at {node.address} is unreachable "
                                      f"({type(exc).__name__}: {exc})") from None
            except BaseException:
                conn.close()
                raise
            self._release(node, conn)
            return

    def get_into(self, node: NodeStatus, file_id: str, s: int, r: int, out: memoryview) -> None:
        """GET a replica straight into ``out`` (exactly its size, known from the ledger); an answer
        of any other length is InvalidProof."""
        path = f"/v1/files/{file_id}/{s}/{r}"
        want = len(out)

        def read(resp: Any) -> None:
            if resp.length is not None and resp.length != want:
                raise InvalidProof(f"{resp.length} bytes, the ledger records {want}")
            n = 0
            while n < want:
                got = resp.readinto(out[n:])
                if not got:
                    break
                n += got
            if n != want or resp.read(1):
                raise InvalidProof(f"not the {want} bytes the ledger records")

        self._exchange(node, "GET", path, lambda: self.signer.headers("GET", path, b"", to=node.node_id), read)

    def close(self) -> None:
        """Close the idle connections (those in use are closed by their request's end)."""
        with self._lock:
            idle, self._idle, self._closed = self._idle, {}, True
        for conns in idle.values():
            for conn in conns:
                conn.close()


def _fmt_time(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ms / 1000))


class StorageNetwork:
    """A party's client of the storage network (see the module docstring).

    Parameters
    ----------
    ledger : Ledger
    identity : NodeIdentity
        The data owner (or executor) whose requests are signed.
    liveness : float
        Seconds without a heartbeat after which a node is not alive (not chosen, read last).
    parallel : int, optional
        Slices in flight at once (default: twice the worker threads).
    timeout : float
        Seconds a single request may take.
    clock : callable, optional
        Milliseconds since the epoch.
    state_dir : path, optional
        Where uploads in progress are journaled (see :meth:`remove_orphans`); default
        ``$DTX_STATE_DIR``, else ``$XDG_STATE_HOME/dtxfast``, else ``~/.local/state/dtxfast``.
    """

    def __init__(self, ledger: Ledger, identity: NodeIdentity, *, liveness: float = DEFAULT_LIVENESS,
                 parallel: int | None = None, timeout: float = 120.0,
                 clock: Callable[[], int] | None = None, state_dir: str | os.PathLike[str] | None = None) -> None:
        self.ledger = ledger
        self.identity = identity
        self.liveness = float(liveness)
        self.threads = num_threads()
        self.parallel = parallel or max(2, 2 * self.threads)
        self.timeout = float(timeout)
        self._clock = clock or ledger.now_ms
        self._owner = DataOwner(identity.private_key)
        self._state_dir = Path(state_dir) if state_dir is not None else _default_state_dir()
        self._free: list[tuple[mmap.mmap, mmap.mmap]] = []  # download buffers, see _buffers
        self._free_lock = threading.Lock()

    def _bulk(self) -> _BlockingHttp:
        """Connections for one upload's or download's replicas (shared by its worker threads,
        closed at its end)."""
        from ..transport.http_auth import RequestSigner

        return _BlockingHttp(RequestSigner(self.identity, clock=self._clock), self.timeout)

    # -- ledger views --------------------------------------------------------------------
    def nodes(self) -> dict[str, NodeStatus]:
        """Every storage node's status (see :func:`node_statuses`)."""
        return node_statuses(self.ledger, now_ms=self._clock(), liveness=self.liveness)

    def file_key(self, f: FileRecord) -> bytes:
        """The key of a file: the owner's own, or the one sealed to this executor by the owner."""
        if f.owner == self.identity.node_id:
            return self._owner.file_key(f.content_id)
        now = self._clock()
        for app in self.ledger.list_applications(file_id=f.file_id, executor=self.identity.node_id,
                                                 status=ApplicationStatus.APPROVED):
            if now < app.expires_ms:
                return self.identity.unseal(app.sealed_key)
        raise Unauthorized(f"{self.identity.node_id} neither owns file {f.file_id} nor holds an approval for it")

    def sealed_file_key(self, file_id: str, executor: str) -> bytes:
        """The owner's file key sealed to an executor (the ``sealed_key`` of an approval)."""
        from ..ledger import seal_to

        f = self.ledger.get_file(file_id)
        if f.owner != self.identity.node_id:
            raise Unauthorized(f"only the owner of file {file_id} can hand out its key")
        return seal_to(self.ledger.get_node(executor).public_key, self._owner.file_key(f.content_id))

    def show(self, file_id: str) -> dict[str, Any]:
        """A file, its placement and health, as JSON-ready data."""
        f = self.ledger.get_file(file_id)
        nodes = self.nodes()
        now = self._clock()
        slices = []
        for s in sorted(f.slices, key=lambda x: int(x.slice_id) if x.slice_id.isdigit() else 0):
            reps = []
            for n in s.nodes:
                st = nodes.get(n)
                reps.append({"node_id": n, "address": st.address if st else "", "healthy": bool(st and st.healthy)})
            slices.append({"index": int(s.slice_id) if s.slice_id.isdigit() else s.slice_id, "replicas": reps})
        return {
            "file_id": f.file_id, "name": f.name, "owner": f.owner, "namespace": f.namespace.split("/", 1)[-1],
            "size": f.size, "expires_at": f.expires_ms // 1000, "status": self._status(f, now),
            "health": self.ledger.file_health(f.file_id, now_ms=now).level, "slices": slices,
        }

    @staticmethod
    def _status(f: FileRecord, now: int) -> str:
        if f.status == FileStatus.PUBLISHED and now >= f.expires_ms:
            return FileStatus.EXPIRED
        return f.status

    def list_files(self, *, owner: str | None = None) -> list[dict[str, Any]]:
        """Files on the ledger (of one owner if given) as JSON-ready summaries."""
        now = self._clock()
        out = []
        for f in self.ledger.list_files(owner=owner):
            out.append({"file_id": f.file_id, "name": f.name, "owner": f.owner,
                        "namespace": f.namespace.split("/", 1)[-1], "size": f.size,
                        "slices": len(f.slices), "replicas": len(f.slices[0].nodes) if f.slices else 0,
                        "expires_at": f.expires_ms // 1000, "status": self._status(f, now),
                        "health": self.ledger.file_health(f.file_id, now_ms=now).level})
        return out

    # -- owner set-up -----------------------------------------------------------------------
    def _replica_count(self, namespace: str, replicas: int | None) -> int:
        """The replica count an upload to ``namespace`` will use (checked as ``_ensure_owner`` does)."""
        try:
            ns = self.ledger.get_namespace(f"{self.identity.node_id}/{namespace}")
        except NotFound:
            return DEFAULT_REPLICAS if replicas is None else replicas
        if replicas is not None and replicas != ns.replicas:
            raise ParameterError(f"namespace {namespace!r} keeps {ns.replicas} replicas; "
                                 f"drop --replicas or raise the namespace's count (dtx file namespace)")
        return ns.replicas

    def _ensure_owner(self, namespace: str, replicas: int | None) -> int:
        """Register as a data owner and create the namespace if needed; its replica count."""
        me = self.identity.node_id
        try:
            node = self.ledger.get_node(me)
            if node.role not in FILE_OWNER_ROLES:
                raise StateError(f"key {me} is registered as a {node.role}; a data owner needs its own key")
        except NotFound:
            self.ledger.submit(self.identity, RegisterNode(role="dataowner"))
        try:
            ns = self.ledger.get_namespace(f"{me}/{namespace}")
        except NotFound:
            want = DEFAULT_REPLICAS if replicas is None else replicas
            try:
                self.ledger.submit(self.identity, CreateNamespace(name=namespace, replicas=want))
                return want
            except StateError:
                # another upload of this owner created it since the lookup (an executor publishing
                # two tasks' results at once): use it; any other refusal stands
                try:
                    ns = self.ledger.get_namespace(f"{me}/{namespace}")
                except NotFound:
                    raise
        if replicas is not None and replicas != ns.replicas:
            raise ParameterError(f"namespace {namespace!r} keeps {ns.replicas} replicas; "
                                 f"drop --replicas or raise the namespace's count (dtx file namespace)")
        return ns.replicas

    # -- orphans of uploads that died ---------------------------------------------------------
    def _journal_dir(self) -> Path:
        return self._state_dir / "uploads" / self.identity.node_id

    def _journal_open(self, cid: bytes, placement: list[list[str]]) -> int:
        """Record an upload before its first PUT (which replicas go where); returns the journal's
        descriptor, locked for as long as this upload runs."""
        import fcntl

        d = self._journal_dir()
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = d / f"{cid.hex()}.json"
        entry = {"content_id": cid.hex(), "replicas": [[n, s, r] for s, nodes in enumerate(placement)
                                                        for r, n in enumerate(nodes)]}
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.write(fd, msgspec.json.encode(entry))
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        return fd

    def _journal_close(self, cid: bytes, fd: int) -> None:
        """The upload is over (published, or its replicas taken back): forget it."""
        (self._journal_dir() / f"{cid.hex()}.json").unlink(missing_ok=True)
        os.close(fd)

    def remove_orphans(self) -> int:
        """Delete the replicas of this owner's uploads that died midway; returns how many went.

        Every upload journals its placement (in ``state_dir``) before its first PUT and holds a
        lock on that journal while it runs; a failed upload takes its replicas back itself and
        drops the journal. A journal that nobody holds locked belongs to an uploader that was
        killed (or lost its machine's power): unless its content was published after all, each
        replica it placed is deleted (signed DELETEs, as the owner), and the journal goes once
        every node answered. :meth:`upload` calls this first, so the owner's next upload cleans
        up after the last one; nodes also drop unplaced replicas on their own after
        ``orphan_hours``.
        """
        import fcntl

        d = self._journal_dir()
        if not d.is_dir():
            return 0
        published = None
        removed = 0
        for path in sorted(d.glob("*.json")):
            try:
                fd = os.open(path, os.O_RDWR)
            except FileNotFoundError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # an upload in progress (this process or another)
                try:
                    entry = msgspec.json.decode(path.read_bytes())
                    cid = bytes.fromhex(entry["content_id"])
                    todo = [(str(n), int(s), int(r)) for n, s, r in entry["replicas"]]
                except (ValueError, KeyError, TypeError, msgspec.DecodeError):
                    path.unlink(missing_ok=True)  # not ours to read: drop it, the nodes age orphans out
                    continue
                if published is None:
                    published = {f.content_id for f in self.ledger.list_files(owner=self.identity.node_id)}
                if cid not in published:
                    n, left = asyncio.run(self._delete_all(cid, todo))
                    removed += n
                    if left:
                        continue  # a node did not answer: try again next time
                path.unlink(missing_ok=True)
            finally:
                os.close(fd)
        return removed

    async def _delete_all(self, cid: bytes, todo: list[tuple[str, int, int]]) -> tuple[int, int]:
        """DELETE each (node, slice, replica) of a content id; (deleted, not reached)."""
        nodes = self.nodes()
        http = _Http(self.identity, self._clock, self.timeout, self.parallel)
        try:
            async def one(n: str, s: int, r: int) -> int:
                if n not in nodes:
                    return 0  # no longer registered: nothing to ask
                data = await http.request(nodes[n], "DELETE", http.replica_path(cid, s, r))
                return int(msgspec.json.decode(data).get("deleted", 0))
            out = await asyncio.gather(*(one(*t) for t in todo), return_exceptions=True)
        finally:
            await http.close()
        return sum(x for x in out if isinstance(x, int)), sum(1 for x in out if isinstance(x, BaseException))

    # -- upload --------------------------------------------------------------------------------
    def upload(self, path: str | os.PathLike[str], *, name: str | None = None, namespace: str = "default",
               replicas: int | None = None, expire_days: float = 365.0, description: str = "",
               slice_size: int = DEFAULT_SLICE_SIZE, chunk_size: int = DEFAULT_CHUNK_SIZE,
               progress: Callable[[int], None] | None = None) -> str:
        """Encrypt, replicate and upload a file, publish it; returns its file id (see the module docstring).

        ``progress(n)`` is called with the plaintext bytes of each slice once all its replicas
        are stored.
        """
        if not 1 <= chunk_size <= slice_size <= (1 << 30):
            raise ParameterError("need 1 <= chunk_size <= slice_size <= 1 GiB")
        if not expire_days > 0:
            raise ParameterError("--expire-days must be positive")
        size = os.path.getsize(path)
        if size == 0:
            raise ParameterError(f"{path} is empty; there is nothing to store")
        count = self._replica_count(namespace, replicas)
        nodes = self.nodes()
        healthy = sorted((n for n in nodes.values() if n.healthy), key=lambda n: (_RANK[n.health], n.node_id))
        load = replica_load(self.ledger, [n.node_id for n in healthy])
        n_slices = -(-size // slice_size)
        # placement first: an upload that cannot be placed writes nothing on the ledger
        placement = choose_placement([n.node_id for n in healthy], slices=n_slices, replicas=count, load=load)
        self._ensure_owner(namespace, replicas)
        try:
            self.remove_orphans()  # what an earlier upload that died left on the nodes
        except (DtxError, OSError):
            pass  # best effort: it is tried again next time, and nodes age orphans out
        now = self._clock()
        return asyncio.run(self._upload(
            os.fspath(path), size, placement, nodes, name=name or os.path.basename(os.fspath(path)),
            namespace=namespace, expires_ms=now + int(expire_days * 86_400_000), description=description,
            slice_size=slice_size, chunk_size=chunk_size, progress=progress))

    @staticmethod
    def _encrypt(cipher: FileCipher, s: int, r: int, plain: memoryview, out: mmap.mmap, chunk_size: int,
                 sign: Callable[[memoryview], dict[str, str]] | None = None
                 ) -> tuple[memoryview, bytes, dict[str, str] | None]:
        """(replica, Merkle root, its PUT's signature headers): encrypted into ``out`` and, if
        ``sign`` is given, signed (a GMAC over the replica and an Ed25519 signature), in a worker
        thread (GIL released), so the event loop only moves bytes."""
        data = memoryview(out)[:len(plain) + TAG_SIZE]
        cipher.encrypt_into(s, r, plain, data)
        return data, MerkleTree.from_bytes(data, chunk_size, threads=1).root, None if sign is None else sign(data)

    async def _upload(self, path: str, size: int, placement: list[list[str]], nodes: dict[str, NodeStatus], *,
                      name: str, namespace: str, expires_ms: int, description: str, slice_size: int,
                      chunk_size: int, progress: Callable[[int], None] | None) -> str:
        cid = os.urandom(16)
        cipher = FileCipher(self._owner.file_key(cid), cid)
        # each PUT's body is authenticated to its node by a GMAC under a key only the two share
        # (http_auth): ~0.15 ms per 4 MiB replica for the node to check, against ~3 ms for
        # hashing it; the Merkle roots the owner vouches for go on the ledger
        keys = {n: self.ledger.get_node(n).public_key for n in {n for p in placement for n in p}}
        loop = asyncio.get_running_loop()
        pool = ThreadPoolExecutor(self.threads)
        http = _Http(self.identity, self._clock, self.timeout, self.parallel)
        stored: list[tuple[str, int, int]] = []
        roots: list[list[bytes]] = [[] for _ in placement]
        sizes = [0] * len(placement)
        gate = asyncio.Semaphore(self.parallel)
        fd = os.open(path, os.O_RDONLY)
        try:
            journal = self._journal_open(cid, placement)
        except OSError:  # no writable state folder: upload unjournaled (nodes still age orphans out)
            journal = -1
        except BaseException:
            os.close(fd)
            await http.close()
            pool.shutdown(wait=False)
            raise

        # reused buffers (a slice's plaintext, its replicas): a fresh 4 MiB buffer costs a page
        # fault per 4 KiB; taken back only after the replicas' PUTs ended normally
        cap = slice_size + (-slice_size % chunk_size)
        free_plain: list[mmap.mmap] = []
        free_reps: list[mmap.mmap] = []

        def read(s: int, buf: mmap.mmap) -> memoryview:
            want = min(slice_size, size - s * slice_size)
            view = memoryview(buf)[:want + (-want % chunk_size)]  # the last slice: padded to a whole chunk only
            got = os.preadv(fd, [view[:want]], s * slice_size)
            if got != want:
                raise ProtocolError(f"{path} changed while it was read")
            view[want:] = bytes(len(view) - want)
            return view

        failed = asyncio.Event()

        async def one(s: int) -> None:
            async with gate:
                if failed.is_set():  # stop starting slices once one failed; let those in flight end
                    return
                pbuf = free_plain.pop() if free_plain else mmap.mmap(-1, cap)
                rbufs = [free_reps.pop() if free_reps else mmap.mmap(-1, cap + TAG_SIZE) for _ in placement[s]]
                plain = await loop.run_in_executor(pool, read, s, pbuf)

                def signer(r: int) -> Callable[[memoryview], dict[str, str]]:
                    node = placement[s][r]
                    return lambda body: http.signer.headers("PUT", http.replica_path(cid, s, r), body, to=node,
                                                            digest_kind=GMAC, peer_key=keys[node])

                encs = await asyncio.gather(*(loop.run_in_executor(pool, self._encrypt, cipher, s, r, plain, rbufs[r],
                                                                   chunk_size, signer(r))
                                              for r in range(len(placement[s]))))
                plain.release()
                free_plain.append(pbuf)
                roots[s] = [root for _, root, _ in encs]
                sizes[s] = len(encs[0][0])

                async def put(r: int) -> None:
                    node = nodes[placement[s][r]]
                    stored.append((node.node_id, s, r))  # attempted: may be stored even if it fails here
                    await http.put(node, cid, s, r, encs[r][0], headers=encs[r][2])

                results = await asyncio.gather(*(put(r) for r in range(len(encs))), return_exceptions=True)
                errors = [e for e in results if isinstance(e, BaseException)]
                if errors:
                    failed.set()
                    raise errors[0]
                free_reps.extend(rbufs)  # every body was sent (each node answered): reusable
            if progress is not None:
                progress(min(slice_size, size - s * slice_size))

        try:
            outcome = await asyncio.gather(*(one(s) for s in range(len(placement))), return_exceptions=True)
            errors = [e for e in outcome if isinstance(e, BaseException)]
            if errors:
                raise errors[0]
            slices = [SliceInfo(slice_id=str(s), digest=slice_digest(roots[s]), nodes=placement[s],
                                replicas=[ReplicaInfo(index=r, root=roots[s][r], size=sizes[s])
                                          for r in range(len(placement[s]))])
                      for s in range(len(placement))]
            body = PublishFile(namespace=namespace, name=name, size=size,
                               digest=hashlib.sha256(_FILE_DOMAIN + b"".join(x.digest for x in slices)).digest(),
                               expires_ms=expires_ms, slices=slices, description=description, content_id=cid,
                               slice_size=slice_size, chunk_size=chunk_size)
            receipt = self.ledger.submit(self.identity, body)  # in this thread: one ledger connection
            return receipt.object_id
        except BaseException:
            # nothing was published: take back every replica stored so far (best effort; what
            # is not reached stays journaled for remove_orphans)
            took = await asyncio.gather(*(http.delete(nodes[n], cid, s, r) for n, s, r in stored),
                                        return_exceptions=True)
            if journal >= 0 and not any(isinstance(x, BaseException) for x in took):
                self._journal_close(cid, journal)
                journal = -1
            raise
        else:
            if journal >= 0:
                self._journal_close(cid, journal)
                journal = -1
        finally:
            os.close(fd)
            if journal >= 0:
                os.close(journal)  # unlocked: the next remove_orphans finishes the job
            await http.close()
            pool.shutdown(wait=False, cancel_futures=True)

    # -- download ------------------------------------------------------------------------------
    def live_file(self, file_id: str) -> FileRecord:
        """The file's record if it can be read now; StateError saying why not otherwise."""
        f = self.ledger.get_file(file_id)
        now = self._clock()
        if f.status == FileStatus.DELETED:
            raise StateError(f"file {file_id} was deleted")
        if f.status == FileStatus.EXPIRED or now >= f.expires_ms:
            raise StateError(f"file {file_id} expired on {_fmt_time(f.expires_ms)}; "
                             "its owner can extend it (dtx file extend) during the retention period")
        if not f.content_id:
            raise ParameterError(f"file {file_id} is not stored in the storage network")
        return f

    def download(self, file_id: str, out: str | os.PathLike[str], *,
                 progress: Callable[[int], None] | None = None, key: bytes | None = None) -> int:
        """Fetch, verify and decrypt a file into ``out`` (all or nothing); returns its size.

        ``key`` is the file key when it came another way than ownership or an approval (a
        prediction result's key, sealed to its requester on the task); default :meth:`file_key`.
        """
        f = self.live_file(file_id)
        key = self.file_key(f) if key is None else key
        with atomic_output(out, "wb") as fh:
            fh.flush()
            os.ftruncate(fh.fileno(), f.size)
            self._download(f, key, fh.fileno(), progress)
        return f.size

    def _order(self, s: SliceInfo, nodes: dict[str, NodeStatus]) -> list[tuple[NodeStatus, ReplicaInfo]]:
        pairs = [(nodes[n], info) for n, info in zip(s.nodes, s.replicas) if n in nodes]
        return sorted(pairs, key=lambda p: (not p[0].healthy, _RANK.get(p[0].health, 3)))

    async def fetch_slice(self, http: _Http, f: FileRecord, cipher: FileCipher, s: SliceInfo,
                          nodes: dict[str, NodeStatus], pool: ThreadPoolExecutor,
                          skip: Iterable[str] = ()) -> tuple[bytes, str]:
        """The padded plaintext of one slice from any good replica, and the node it came from."""
        loop = asyncio.get_running_loop()
        index = int(s.slice_id)
        problems = []
        for node, info in self._order(s, nodes):
            if node.node_id in skip:
                continue
            try:
                data = await http.get(node, f.file_id, index, info.index)
                if len(data) != info.size:
                    raise InvalidProof(f"{len(data)} bytes, the ledger records {info.size}")
                plain = await loop.run_in_executor(pool, cipher.decrypt, index, info.index, data)
                return plain, node.node_id
            except (DtxError, OSError) as exc:
                problems.append(f"{node.node_id}: {exc}")
        raise InvalidProof(f"no intact replica of slice {index} of file {f.file_id}: " + "; ".join(problems))

    def _fetch_into(self, http: _BlockingHttp, f: FileRecord, cipher: FileCipher, s: SliceInfo,
                    nodes: dict[str, NodeStatus], recv: mmap.mmap, plain: mmap.mmap) -> int:
        """Receive one slice's replica into ``recv`` and decrypt it into ``plain`` (any good replica,
        as :meth:`fetch_slice`), in the calling worker thread; returns the padded plaintext's length."""
        index = int(s.slice_id)
        problems = []
        for node, info in self._order(s, nodes):
            try:
                if not TAG_SIZE <= info.size <= min(len(recv), len(plain) + TAG_SIZE):
                    raise InvalidProof(f"the ledger records a replica of {info.size} bytes")
                data = memoryview(recv)[:info.size]
                http.get_into(node, f.file_id, index, info.index, data)
                return cipher.decrypt_into(index, info.index, data, memoryview(plain)[:info.size - TAG_SIZE])
            except (DtxError, OSError) as exc:
                problems.append(f"{node.node_id}: {exc}")
        raise InvalidProof(f"no intact replica of slice {index} of file {f.file_id}: " + "; ".join(problems))

    def _buffers(self, cap: int) -> tuple[mmap.mmap, mmap.mmap]:
        """A (receive, plaintext) pair of page-aligned buffers of ``cap`` bytes, reused between
        downloads (a fresh 4 MiB buffer costs a page fault per 4 KiB)."""
        with self._free_lock:
            for k, (recv, plain) in enumerate(self._free):
                if len(recv) >= cap:
                    return self._free.pop(k)
        return mmap.mmap(-1, cap), mmap.mmap(-1, max(1, cap - TAG_SIZE))

    def _download(self, f: FileRecord, key: bytes, fd: int, progress: Callable[[int], None] | None) -> None:
        """Every slice into ``fd`` (sized already), each by one worker thread from end to end: the
        replica is received straight into the thread's buffer, authenticated and decrypted into
        its second buffer and written at its offset around the page cache where it can
        (:class:`~dtxfast._fs.PositionedWriter`), while the other threads' slices arrive."""
        cipher = FileCipher(key, f.content_id)
        nodes = self.nodes()
        http = self._bulk()
        out = PositionedWriter(fd)
        cap = max((r.size for s in f.slices for r in s.replicas), default=TAG_SIZE)
        local = threading.local()
        taken: list[tuple[mmap.mmap, mmap.mmap]] = []
        stop = threading.Event()

        def one(s: SliceInfo) -> int:
            if stop.is_set():  # another slice failed: start no more
                return 0
            bufs = getattr(local, "bufs", None)
            if bufs is None:
                bufs = local.bufs = self._buffers(cap)
                with self._free_lock:
                    taken.append(bufs)
            recv, plain = bufs
            index = int(s.slice_id)
            length = min(f.slice_size, f.size - index * f.slice_size)
            n = self._fetch_into(http, f, cipher, s, nodes, recv, plain)
            if n < length:
                raise InvalidProof(f"slice {index} of file {f.file_id} decrypts to {n} bytes, not {length}")
            out.pwrite(memoryview(plain)[:length], index * f.slice_size)
            return length

        pool = ThreadPoolExecutor(self.parallel)
        try:
            futures = [pool.submit(one, s) for s in f.slices]
            try:
                for fut in as_completed(futures):
                    n = fut.result()
                    if progress is not None:
                        progress(n)
            except BaseException:
                stop.set()
                for fut in futures:
                    fut.cancel()
                raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)  # no thread writes into fd after this returns
            http.close()
            out.close()
            with self._free_lock:
                self._free.extend(taken[:max(0, self.parallel - len(self._free))])
