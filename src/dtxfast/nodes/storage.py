"""A storage node: an HTTP server that keeps encrypted replicas on disk and proves it holds them.

What ``dtx storage start`` runs, built by :func:`build_storage_node` from a
:class:`StorageNodeConfig` (TOML file < ``DTX_*`` environment < flags), so a test builds in-process
exactly what the command runs as a process.

HTTP stack: **aiohttp**. One dependency gives both the server and the client (the DataOwner
client and the monitor upload, download and challenge in parallel from one event loop), it is
mature and small (no ASGI server beside it), its middlewares are the one place requests are
checked (:func:`dtxfast.transport.http_auth.auth_middleware`), and it moves ~690 MiB/s over
loopback on this machine, more than the AES-GCM pipeline, so it is not the bottleneck.

Routes (every one but ``GET /v1/health`` signed, see :mod:`dtxfast.transport.http_auth`):

``PUT /v1/replicas/{content_id}/{slice}/{index}``
    A registered data owner stores one encrypted replica (atomic: temp file, fsync, rename).
    The first owner to store under a content id owns it on this node.
``GET /v1/files/{file_id}/{slice}/{index}``
    The replica of a published file, for its owner, an executor the ledger shows the owner
    approved, or the requester of a finished task whose results name the file and whose executor
    owns it (a prediction result; 403 otherwise; 410 once the file expired). The replica is checked against the
    size and Merkle root the ledger records before it is sent: a damaged one is reported
    (409 and a log line), never served.
``POST /v1/challenges``
    The file's owner sends a batch of proof-of-storage challenges (msgpack list of
    ``[file_id, challenge bytes]``); each answer (``["ok", answer]``, or ``["damaged" |
    "missing" | "forbidden", reason]``) is computed from the replica after the same check.
``DELETE /v1/replicas/{content_id}/{slice}/{index}``
    The owner of the content id drops a replica (a failed upload, a migrated replica).

The node registers itself on the ledger (role ``storage``, its URL) when it starts, sends a
heartbeat every ``heartbeat`` seconds, and drops the replicas of files that were deleted on
the ledger or expired longer than ``retention_days`` ago. SIGTERM / SIGINT stop it after the
requests in flight; a replica being written is either complete or absent.

Examples
--------
>>> cfg = StorageNodeConfig.load(None, env={"DTX_LISTEN": "127.0.0.1:7001"}, heartbeat=5)
>>> cfg.listen, cfg.heartbeat
('127.0.0.1:7001', 5.0)
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import msgspec

from ..crypto.merkle import MerkleTree
from ..errors import DtxError, MalformedInput, NotFound, ParameterError, StateError
from ..ledger import Heartbeat, Ledger, NodeIdentity, RegisterNode, open_ledger
from ..ledger.contract import FILE_OWNER_ROLES
from ..ledger.records import (
    RESULT_PREFIX,
    ApplicationStatus,
    FileRecord,
    FileStatus,
    TaskStatus,
    decode_record,
)
from ..protocols.storage import Challenge, ReplicaId, StorageProver
from ..storage.store import DirectoryReplicaStore
from ._config import NodeConfig, parse_listen
from ..transport.http_auth import (
    DEFAULT_MAX_BODY,
    DEFAULT_SKEW_MS,
    RequestVerifier,
    auth_middleware,
)

__all__ = ["StorageNode", "StorageNodeConfig", "build_storage_node", "run_storage_node"]

_log = logging.getLogger("dtxfast.nodes.storage")
_OWNER_MARK = ".owner"
_MAX_CHALLENGES = 4096
_DAY_MS = 86_400_000
#: a replica file changed less than this long (ns) before it was checked is checked again next
#: time: file timestamps come from a coarse clock (one tick, at most 10 ms), see _VerifiedReplicas
_RACY_NS = 100_000_000
#: entries kept by each of a node's look-up caches (roles, file records, content owners)
_CACHED = 1 << 14


class _VerifiedReplicas:
    """Which replica files this node checked against which Merkle root, keyed so a change shows.

    A replica is served only after it matched the root the ledger records. Re-hashing a 4 MiB
    replica on every read costs ~3 ms of CPU; instead, a successful check is remembered with
    the file's ``(device, inode, size, mtime, ctime)`` as ``fstat`` gave it before the bytes
    were read. Any write to the file through the file system changes its ctime (which, unlike
    mtime, cannot be set back: ``os.utime`` itself sets ctime to now), a replaced file has
    another inode, so a later read whose ``fstat`` differs re-checks the bytes. Timestamps
    come from a coarse clock, so a change within the same tick as the last one could leave
    them equal: like git's "racily clean" index entries, a check made less than
    :data:`_RACY_NS` after the file's last change is not remembered (the next read checks
    again). What this does not see is damage below the file system (a sector rotting on the
    disk): that is what the owner's challenges are for (they always hash the whole replica),
    and a reader still authenticates every replica with its AES-GCM tag. Kept in memory only:
    a restarted node checks each replica again on its first read. Thread-safe.
    """

    def __init__(self, max_entries: int = 1 << 16) -> None:
        self._seen: dict[Any, tuple[tuple[int, ...], bytes, int]] = {}
        self._lock = threading.Lock()
        self._max = max_entries

    @staticmethod
    def _key(st: os.stat_result) -> tuple[int, ...]:
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def is_verified(self, replica: Any, st: os.stat_result, root: bytes, chunk_size: int) -> bool:
        """True if this file, unchanged since, was checked against ``root`` in ``chunk_size`` leaves."""
        with self._lock:
            seen = self._seen.get(replica)
        return (seen is not None and seen[0] == self._key(st) and seen[2] == chunk_size
                and hmac.compare_digest(seen[1], root))

    def record(self, replica: Any, st: os.stat_result, root: bytes, chunk_size: int, checked_ns: int) -> bool:
        """Remember a successful check of the bytes read after ``st`` (taken at ``checked_ns``
        or before); False (not remembered) when the file changed too shortly before it."""
        if checked_ns - max(st.st_mtime_ns, st.st_ctime_ns) < _RACY_NS:
            return False
        with self._lock:
            if len(self._seen) >= self._max:
                self._seen.pop(next(iter(self._seen)))
            self._seen[replica] = (self._key(st), bytes(root), chunk_size)
        return True

    def forget(self, replica: Any) -> None:
        with self._lock:
            self._seen.pop(replica, None)


@dataclass
class StorageNodeConfig(NodeConfig):
    """How a storage node runs.

    Attributes
    ----------
    key : str
        The node's key file (``dtx keys new``).
    ledger : str
        The ledger location (a SQLite path, ``sqlite:PATH``).
    data_dir : str
        Where replicas are kept.
    listen : str
        ``HOST:PORT`` to listen on (port 0: any free port).
    heartbeat : float
        Seconds between heartbeats on the ledger.
    max_body : int
        Largest request body accepted, in bytes.
    skew : float
        Clock-skew window of signed requests, in seconds.
    retention_days : float
        How long replicas of an expired file are kept (its owner may still extend it).
    orphan_hours : float
        Replicas that no published file places on this node (an upload that failed midway, a
        replica migrated away) are dropped when they are older than this.
    name : str
        A name recorded with the node's registration.
    """

    key: str = ""
    ledger: str = ""
    data_dir: str = ""
    listen: str = "127.0.0.1:0"
    heartbeat: float = 60.0
    max_body: int = DEFAULT_MAX_BODY
    skew: float = DEFAULT_SKEW_MS / 1000
    retention_days: float = 7.0
    orphan_hours: float = 24.0
    name: str = ""

    SECTION = "storage"

    def validate(self) -> None:
        parse_listen(self.listen)
        if not self.heartbeat > 0 or not self.skew > 0 or self.retention_days < 0:
            raise ParameterError("heartbeat and skew must be positive, retention_days at least 0")
        if not 1 <= self.max_body <= 1 << 34:
            raise ParameterError("max_body must be in [1, 2^34]")


def _json(data: Any, status: int = 200) -> Any:
    from aiohttp import web

    return web.json_response(data, status=status)


class StorageNode:
    """A storage node (see the module docstring); :func:`build_storage_node` builds one.

    Parameters
    ----------
    config : StorageNodeConfig
    identity : NodeIdentity
        The node's key.
    ledger : Ledger
    clock : callable, optional
        Milliseconds since the epoch (signed-request window, expiry, retention).
    """

    def __init__(self, config: StorageNodeConfig, identity: NodeIdentity, ledger: Ledger, *,
                 clock: Callable[[], int] | None = None) -> None:
        if not config.data_dir:
            raise ParameterError("a storage node needs a data directory (--data-dir)")
        self.config = config
        self.identity = identity
        self.node_id = identity.node_id
        self.ledger = ledger
        self._clock = clock or (lambda: int(time.time() * 1000))
        self.store = DirectoryReplicaStore(config.data_dir)
        from ..ledger.watermark import HighWaterMark

        self._mark = HighWaterMark(Path(config.data_dir) / ".ledger-mark.json")
        self.verifier = RequestVerifier(self.node_id, self._public_key, clock=self._clock,
                                        skew_ms=int(config.skew * 1000), identity=identity)
        self._keys: dict[str, bytes] = {}
        self._verified = _VerifiedReplicas()
        self._roles: dict[str, str] = {}
        self._files: dict[str, tuple[bytes, FileRecord]] = {}
        self._owners: dict[bytes, str] = {}
        self._runner: Any = None
        self._tasks: list[asyncio.Task[Any]] = []
        self.url = ""

    # -- ledger look-ups ------------------------------------------------------------------
    def _public_key(self, node_id: str) -> bytes | None:
        key = self._keys.get(node_id)
        if key is None:
            try:
                key = self.ledger.get_node(node_id).public_key
            except NotFound:
                return None
            self._keys[node_id] = key
        return key

    def _role(self, node_id: str) -> str | None:
        # a node's role never changes once registered (the contract refuses another role for a
        # registered id), so a role found is kept; an unknown sender is looked up again on each
        # request, so a registration in any later block is seen at once
        role = self._roles.get(node_id)
        if role is None:
            try:
                role = self.ledger.get_node(node_id).role
            except NotFound:
                return None
            if len(self._roles) >= _CACHED:
                self._roles.pop(next(iter(self._roles)))
            self._roles[node_id] = role
        return role

    def _file(self, file_id: str) -> FileRecord:
        """A file's record, decoded once per version of it.

        Its stored bytes are read on every call (one indexed read, ~7 us on SQLite) and compared
        with those the cached record was decoded from, so a record that changed in any later block
        (extended, migrated, expired, deleted) is seen at once; what is saved is decoding it again
        (~160 us for a 64-slice file, on every replica read).
        """
        raw = self.ledger.raw_record(FileRecord.KIND, file_id)
        if raw is None:
            raise NotFound(f"file {file_id} does not exist")
        hit = self._files.get(file_id)
        if hit is not None and hit[0] == raw:
            return hit[1]
        rec = decode_record(FileRecord, raw)
        if len(self._files) >= _CACHED:
            self._files.pop(next(iter(self._files)))
        self._files[file_id] = (raw, rec)
        return rec

    def _content_owner(self, cid: bytes) -> str | None:
        """Who owns a content id on this node (its owner mark), None if nobody yet.

        A mark is created once, by the first upload under the content id (atomically: a second
        creator fails and reads the first one's), and never rewritten, so an owner read is kept.
        """
        owner = self._owners.get(cid)
        if owner is None:
            mark = self._owner_mark(cid)
            try:
                owner = mark.read_text()
            except FileNotFoundError:
                return None
            self._remember_owner(cid, owner)
        return owner

    def _remember_owner(self, cid: bytes, owner: str) -> None:
        if len(self._owners) >= _CACHED:
            self._owners.pop(next(iter(self._owners)))
        self._owners[cid] = owner

    def _may_read(self, sender: str, f: FileRecord, now: int) -> bool:
        if sender == f.owner:
            return True
        for app in self.ledger.list_applications(file_id=f.file_id, executor=sender,
                                                 status=ApplicationStatus.APPROVED):
            if now < app.expires_ms:
                return True
        # a prediction result: its requester, once an executor of the task (the file's owner)
        # recorded it among the finished task's results
        mark = RESULT_PREFIX + f.file_id
        return any(mark in t.results and f.owner in t.executors
                   for t in self.ledger.list_tasks(requester=sender, status=TaskStatus.FINISHED))

    def _held(self, f: FileRecord, slice_index: int, index: int) -> tuple[ReplicaId, int, bytes]:
        """(replica id, size, root) of a replica the ledger says this node holds; NotFound otherwise."""
        s = f.slice(str(slice_index))
        if s is None or not f.content_id:
            raise NotFound(f"file {f.file_id} has no slice {slice_index} in the storage network")
        for node, info in zip(s.nodes, s.replicas):
            if node == self.node_id and info.index == index:
                return ReplicaId(f.content_id, slice_index, index), info.size, info.root
        raise NotFound(f"this node holds no replica {index} of slice {slice_index} of file {f.file_id}")

    # -- replica checks (run in a worker thread: hashing releases the GIL) ----------------------
    def _checked_bytes(self, rid: ReplicaId, size: int, root: bytes, chunk_size: int) -> bytes:
        data = self.store.get(rid)
        if len(data) != size:
            raise MalformedInput(f"replica {rid.slice_index}.{rid.replica_index} is {len(data)} bytes, "
                                 f"the ledger records {size}")
        if MerkleTree.from_bytes(data, chunk_size).root != root:
            raise MalformedInput(f"replica {rid.slice_index}.{rid.replica_index} does not match its Merkle root")
        return data

    def _open_checked(self, rid: ReplicaId, size: int, root: bytes, chunk_size: int
                      ) -> tuple[IO[bytes] | None, bytes]:
        """A replica ready to serve: ``(open file, b"")`` when this very file was checked before
        and is unchanged (:class:`_VerifiedReplicas`; sent with ``sendfile``), else ``(None,
        bytes)`` read from it and checked now. MalformedInput if it is damaged, NotFound if absent."""
        fobj = self.store.open(rid)
        try:
            before = os.fstat(fobj.fileno())
            if before.st_size == size and self._verified.is_verified(rid, before, root, chunk_size):
                served, fobj = fobj, None
                return served, b""
            checked_ns = time.time_ns()
            data = fobj.read()
            if len(data) != size:
                raise MalformedInput(f"replica {rid.slice_index}.{rid.replica_index} is {len(data)} bytes, "
                                     f"the ledger records {size}")
            if not hmac.compare_digest(MerkleTree.from_bytes(data, chunk_size).root, root):
                raise MalformedInput(f"replica {rid.slice_index}.{rid.replica_index} does not match its Merkle root")
            if _VerifiedReplicas._key(os.fstat(fobj.fileno())) == _VerifiedReplicas._key(before):
                self._verified.record(rid, before, root, chunk_size, checked_ns)
            return None, data
        finally:
            if fobj is not None:
                fobj.close()

    def _answer(self, f: FileRecord, challenge: Challenge) -> list[Any]:
        rid = challenge.replica
        if rid.file_id != f.content_id:
            return ["missing", "the challenge names another content id"]
        try:
            rid2, size, root = self._held(f, rid.slice_index, rid.replica_index)
            data = self._checked_bytes(rid2, size, root, f.chunk_size)
        except NotFound as exc:
            return ["missing", str(exc)]
        except MalformedInput as exc:
            _log.error("damaged replica of file %s: %s", f.file_id, exc)
            return ["damaged", str(exc)]
        try:
            answer = StorageProver(rid, data, f.chunk_size).answer(challenge)
        except DtxError as exc:
            return ["damaged", str(exc)]
        return ["ok", answer.to_bytes()]

    # -- handlers -----------------------------------------------------------------------
    @staticmethod
    def _replica_path(request: Any) -> tuple[bytes, int, int]:
        try:
            cid = bytes.fromhex(request.match_info["cid"])
            s, i = int(request.match_info["slice"]), int(request.match_info["index"])
            ReplicaId(cid, s, i)
        except (ValueError, DtxError):
            raise MalformedInput("bad replica path") from None
        return cid, s, i

    def _owner_mark(self, cid: bytes) -> Path:
        return self.store.root / cid.hex() / _OWNER_MARK

    async def _put(self, request: Any) -> Any:
        sender = request["dtx_sender"]
        cid, s, i = self._replica_path(request)
        body = request["dtx_body"]
        if self._role(sender) not in FILE_OWNER_ROLES:
            return self._refuse(request, 403, "only a registered data owner (or an executor storing a result) stores replicas")
        if not body:
            return self._refuse(request, 400, "an empty replica")
        owner = self._content_owner(cid)
        if owner is not None and owner != sender:
            return self._refuse(request, 403, f"content {cid.hex()} belongs to another owner")
        rid = ReplicaId(cid, s, i)
        mark = self._owner_mark(cid)

        def write() -> str:
            first = owner
            if first is None:
                mark.parent.mkdir(parents=True, exist_ok=True)
                tmp = mark.with_name(f".tmp-owner-{os.getpid()}-{id(request)}")
                tmp.write_text(sender)
                try:
                    os.link(tmp, mark)  # fails if another upload created the mark meanwhile
                    first = sender
                except FileExistsError:
                    first = mark.read_text()
                finally:
                    tmp.unlink()
                if first != sender:
                    return first
            self._verified.forget(rid)
            self.store.put(rid, body)
            return first

        first = await asyncio.get_running_loop().run_in_executor(None, write)
        self._remember_owner(cid, first)
        if first != sender:
            return self._refuse(request, 403, f"content {cid.hex()} belongs to another owner")
        return _json({"stored": len(body)}, 201)

    async def _delete(self, request: Any) -> Any:
        sender = request["dtx_sender"]
        cid, s, i = self._replica_path(request)
        owner = self._content_owner(cid)
        if owner is None:  # nothing was ever stored under this content id here
            return _json({"deleted": 0})
        if owner != sender:
            return self._refuse(request, 403, "only the owner of the content deletes its replicas")
        self._verified.forget(ReplicaId(cid, s, i))
        try:
            self.store.delete(ReplicaId(cid, s, i))
        except NotFound:
            return _json({"deleted": 0})
        return _json({"deleted": 1})

    async def _get(self, request: Any) -> Any:
        from aiohttp import web

        sender = request["dtx_sender"]
        file_id = request.match_info["fid"]
        try:
            s, i = int(request.match_info["slice"]), int(request.match_info["index"])
            f = self._file(file_id)
        except ValueError:
            return self._refuse(request, 400, "bad replica path")
        except (NotFound, MalformedInput):
            return self._refuse(request, 404, f"file {file_id[:64]} is not on the ledger")
        now = self._clock()
        if not self._may_read(sender, f, now):
            return self._refuse(request, 403, f"{sender} is neither the owner of file {f.file_id} nor an approved executor")
        if not f.is_live(now):
            return self._refuse(request, 410, f"file {f.file_id} expired")
        loop = asyncio.get_running_loop()
        try:
            rid, size, root = self._held(f, s, i)
            fobj, data = await loop.run_in_executor(None, self._open_checked, rid, size, root, f.chunk_size)
        except NotFound as exc:
            return self._refuse(request, 404, str(exc))
        except MalformedInput as exc:
            _log.error("damaged replica of file %s: %s", f.file_id, exc)
            return _json({"error": f"damaged replica: {exc}"}, 409)
        if fobj is None:
            return web.Response(body=data, content_type="application/octet-stream")
        # checked before and unchanged since: the kernel sends it from the page cache (no copy
        # through this process), from the file descriptor whose fstat was just compared
        with fobj:
            resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
            resp.content_length = size
            await resp.prepare(request)
            transport = request.transport
            if transport is None:
                raise ConnectionResetError("the client went away")
            try:
                await loop.sendfile(transport, fobj, 0, size)
            except NotImplementedError:  # a transport without sendfile (TLS): write it
                await resp.write(await loop.run_in_executor(None, os.pread, fobj.fileno(), size, 0))
            except (ConnectionError, OSError) as exc:  # the client went away mid-body: nothing to answer
                _log.warning("GET %s from %s ended early: %s", request.path, sender, exc)
                return resp
            await resp.write_eof()
        return resp

    async def _challenges(self, request: Any) -> Any:
        from aiohttp import web

        sender = request["dtx_sender"]
        try:
            items = msgspec.msgpack.decode(request["dtx_body"], type=list[tuple[str, bytes]])
        except (msgspec.DecodeError, msgspec.ValidationError):
            return self._refuse(request, 400, "challenges must be a msgpack list of [file id, challenge]")
        if len(items) > _MAX_CHALLENGES:
            return self._refuse(request, 413, f"more than {_MAX_CHALLENGES} challenges in one request")
        files: dict[str, FileRecord | None] = {}
        work: list[tuple[int, FileRecord, Challenge]] = []
        out: list[Any] = [None] * len(items)
        for n, (fid, raw) in enumerate(items):
            if fid not in files:
                try:
                    files[fid] = self._file(fid)
                except (NotFound, MalformedInput):
                    files[fid] = None
            f = files[fid]
            if f is None:
                out[n] = ["missing", f"file {fid[:64]} is not on the ledger"]
            elif f.owner != sender:
                out[n] = ["forbidden", "only the file's owner challenges its replicas"]
            else:
                try:
                    work.append((n, f, Challenge.from_bytes(raw)))
                except MalformedInput as exc:
                    out[n] = ["missing", str(exc)]
        loop = asyncio.get_running_loop()
        results = await asyncio.gather(*(loop.run_in_executor(None, self._answer, f, c) for _, f, c in work))
        for (n, _, _), res in zip(work, results):
            out[n] = res
        return web.Response(body=msgspec.msgpack.encode(out), content_type="application/msgpack")

    async def _health(self, request: Any) -> Any:
        return _json({"node_id": self.node_id, "role": "storage"})

    def _refuse(self, request: Any, status: int, reason: str) -> Any:
        _log.warning("refused %s %s from %s@%s: %d %s", request.method, request.path,
                     request.get("dtx_sender") or "?", request.remote, status, reason)
        return _json({"error": reason}, status)

    def application(self) -> Any:
        """The aiohttp application (routes behind the signed-request middleware)."""
        from aiohttp import web

        @web.middleware
        async def errors(request: Any, handler: Any) -> Any:
            try:
                return await handler(request)
            except web.HTTPException:
                raise
            except MalformedInput as exc:
                return self._refuse(request, 400, str(exc))
            except Exception as exc:  # a bug must not take the node down: log it, answer 500
                _log.exception("error serving %s %s", request.method, request.path)
                return _json({"error": f"internal error ({type(exc).__name__})"}, 500)

        app = web.Application(
            client_max_size=self.config.max_body,
            middlewares=[errors, auth_middleware(self.verifier, max_body=self.config.max_body,
                                                 public=lambda m, p: p == "/v1/health", log=_log)],
        )
        rp = "/v1/replicas/{cid:[0-9a-f]{2,128}}/{slice:[0-9]{1,19}}/{index:[0-9]{1,10}}"
        app.router.add_put(rp, self._put)
        app.router.add_delete(rp, self._delete)
        # no HEAD: the handler sends the body with sendfile, past aiohttp's writer
        app.router.add_get("/v1/files/{fid:[0-9a-f]{32}}/{slice:[0-9]{1,19}}/{index:[0-9]{1,10}}", self._get,
                           allow_head=False)
        app.router.add_post("/v1/challenges", self._challenges)
        app.router.add_get("/v1/health", self._health)
        return app

    # -- lifecycle --------------------------------------------------------------------------
    def _register(self) -> None:
        self._mark.check(self.ledger)  # refuse a ledger that went back below what this node saw
        try:
            node = self.ledger.get_node(self.node_id)
        except NotFound:
            node = None
        if node is not None and node.role != "storage":
            raise StateError(f"key {self.node_id} is registered as a {node.role}, not a storage node")
        if node is None or node.address != self.url or node.name != self.config.name:
            self.ledger.submit(self.identity, RegisterNode(role="storage", address=self.url, name=self.config.name))
        if node is not None and not node.online:
            from ..ledger import SetNodeStatus

            self.ledger.submit(self.identity, SetNodeStatus(online=True))

    def _announce(self) -> None:
        """Register (if needed) and send the first heartbeat."""
        self._register()
        self._beat()

    def _beat(self) -> None:
        self._mark.check(self.ledger)  # a ledger that went back is refused, not heartbeaten on
        self.ledger.submit(self.identity, Heartbeat())

    def housekeeping(self) -> int:
        """Drop replicas of files deleted on the ledger or expired beyond the retention; returns how many."""
        now = self._clock()
        keep_ms = int(self.config.retention_days * _DAY_MS)
        dropped = 0
        by_content = {f.content_id: f for f in self.ledger.list_files(node=self.node_id) if f.content_id}
        placed: dict[bytes, set[tuple[int, int]]] = {}  # per file, built once (not once per replica)
        orphan_s = self.config.orphan_hours * 3600
        for rid in self.store.list():
            f = by_content.get(rid.file_id)
            if f is not None and rid.file_id not in placed:
                placed[rid.file_id] = {(int(s.slice_id), r.index) for s in f.slices
                                       for n, r in zip(s.nodes, s.replicas) if n == self.node_id}
            if f is not None and (f.status == FileStatus.DELETED or now > f.expires_ms + keep_ms):
                drop = True
            elif f is None or (rid.slice_index, rid.replica_index) not in placed[rid.file_id]:
                # not placed here by any published file: an upload or repair under way, one that
                # failed midway, or a replica migrated away; dropped once older than orphan_hours
                try:
                    drop = time.time() - os.stat(self.store.path(rid)).st_mtime > orphan_s
                except FileNotFoundError:
                    drop = False
            else:
                drop = False
            if drop:
                try:
                    self.store.delete(rid)
                    dropped += 1
                except NotFound:
                    pass
        if dropped:
            _log.info("dropped %d replicas (deleted, expired or orphaned)", dropped)
        return dropped

    async def _background(self) -> None:
        """Housekeeping now, then a heartbeat and housekeeping every ``heartbeat`` seconds (the
        first heartbeat was sent by :meth:`start`)."""
        loop = asyncio.get_running_loop()
        beat = False
        while True:
            try:
                if beat:
                    await loop.run_in_executor(None, self._beat)
                await loop.run_in_executor(None, self.housekeeping)
            except Exception as exc:  # the ledger may be busy; the next beat retries
                _log.warning("heartbeat failed: %s", exc)
            beat = True
            await asyncio.sleep(self.config.heartbeat)

    async def start(self) -> str:
        """Listen, register on the ledger, send a first heartbeat, start the heartbeats; returns
        ``http://HOST:PORT``.

        The first heartbeat is on the ledger before this returns (before ``dtx storage start``
        prints its readiness line): a client counts a node as alive only by its heartbeats, so a
        node that said it was ready but had not beaten yet was not chosen by an upload started at
        once (three fresh nodes, an upload asking for three replicas: "only 2 healthy").
        """
        from aiohttp import web

        host, port = parse_listen(self.config.listen)
        self._runner = web.AppRunner(self.application(), access_log=None, handle_signals=False,
                                     shutdown_timeout=5.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound = self._runner.addresses[0]
        shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        self.url = f"http://{shown}:{bound[1]}"
        await asyncio.get_running_loop().run_in_executor(None, self._announce)
        self._tasks.append(asyncio.create_task(self._background()))
        return self.url

    async def stop(self) -> None:
        """Stop the heartbeats and the server (requests in flight finish first)."""
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        self._tasks.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def serve(self, stop: asyncio.Event, ready: Callable[[str], None] | None = None) -> None:
        """Start, call ``ready(url)``, run until ``stop`` is set, then stop."""
        url = await self.start()
        try:
            if ready is not None:
                ready(url)
            await stop.wait()
        finally:
            await self.stop()


def build_storage_node(config: StorageNodeConfig, *, identity: NodeIdentity | None = None,
                       ledger: Ledger | None = None, clock: Callable[[], int] | None = None) -> StorageNode:
    """The one factory: a :class:`StorageNode` from its config (key and ledger opened from it
    unless given)."""
    config.validate()
    if identity is None:
        if not config.key:
            raise ParameterError("a storage node needs its key file (--key)")
        identity = NodeIdentity.load(config.key)
    if ledger is None:
        if not config.ledger:
            raise ParameterError("a storage node needs a ledger (-L)")
        ledger = open_ledger(config.ledger)
    return StorageNode(config, identity, ledger, clock=clock)


def run_storage_node(config: StorageNodeConfig) -> None:
    """Run a node in the foreground until SIGTERM or SIGINT; prints ``listening on URL`` when ready."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    node = build_storage_node(config)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await node.serve(stop, ready=lambda url: print(f"listening on {url}", flush=True))

    try:
        asyncio.run(main())
    finally:
        node.ledger.close()
