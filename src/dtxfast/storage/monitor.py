"""The data owner's monitor: challenge every replica on a schedule, record the outcomes, repair.

One round (:meth:`StorageMonitor.run_round`) does, for every live file of the owner in the
storage network:

1. **Challenge.** Every replica on a live node (recent heartbeat) gets a fresh
   :class:`~dtxfast.protocols.storage.Challenge` (a random 32-byte nonce from which the node and
   the monitor both derive the chunk indices); the challenges of one node go in one signed
   request, all nodes at once. The answers of all nodes are verified in one batch by the
   compiled Merkle verifier (:func:`~dtxfast.protocols.storage.check_answers`).
2. **Record.** Each challenge and its outcome go on the ledger
   (:class:`~dtxfast.ledger.IssueChallenge` then :class:`~dtxfast.ledger.ResolveChallenge`,
   the reason of a failure as evidence), so node health is computed from them. A replica on a
   node without a recent heartbeat is recorded as failed without asking.
3. **Repair.** A replica that failed (no answer, no heartbeat, a wrong proof, a damaged or
   missing replica) is rebuilt: a good replica of the slice is fetched from another node and
   authenticated (AES-GCM), re-encrypted as a *new* replica (the next unused replica index of
   the slice: a fresh key and nonce, a new Merkle root), uploaded to a healthy node that holds
   no replica of that slice, and the move recorded (:class:`~dtxfast.ledger.MigrateSlice`).
   A slice with fewer replicas than its namespace now keeps gets new ones the same way
   (:class:`~dtxfast.ledger.AddReplica`).
4. **Expiry.** Files expired longer ago than the retention period are marked deleted
   (:class:`~dtxfast.ledger.DeleteFile`); their nodes then drop the replicas.

So repair waits at most one interval after a node dies, not an hourly job.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import msgspec

from ..crypto.aead import FileCipher
from ..crypto.merkle import MerkleTree
from ..errors import DtxError, MalformedInput, ParameterError, ProtocolError
from ..ledger import (
    AddReplica,
    DeleteFile,
    FileRecord,
    FileStatus,
    IssueChallenge,
    MigrateSlice,
    ReplicaInfo,
    ResolveChallenge,
)
from ..ledger.contract import object_id
from ..protocols.storage import (
    DEFAULT_CHALLENGE_SIZE,
    MAX_CHALLENGE_SIZE,
    Answer,
    Challenge,
    ReplicaCommitment,
    ReplicaId,
    check_answers,
)
from ..transport.http_auth import GMAC
from .network import _RANK, NodeStatus, NodeUnreachable, StorageNetwork, _Http, replica_load

__all__ = ["RoundReport", "StorageMonitor"]

_DAY_MS = 86_400_000


@dataclass
class RoundReport:
    """What one round did."""

    challenged: int = 0
    proved: int = 0
    failed: list[tuple[str, str, str, str]] = field(default_factory=list)  # file, slice, node, reason
    repaired: list[tuple[str, str, str, str]] = field(default_factory=list)  # file, slice, from, to
    added: list[tuple[str, str, str]] = field(default_factory=list)  # file, slice, node
    deleted: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for a log."""
        parts = [f"challenged {self.challenged}", f"proved {self.proved}", f"failed {len(self.failed)}",
                 f"repaired {len(self.repaired)}"]
        if self.added:
            parts.append(f"added {len(self.added)}")
        if self.deleted:
            parts.append(f"deleted files {len(self.deleted)}")
        line = ", ".join(parts)
        for fid, sid, node, why in self.failed:
            line += f"\n  FAIL file {fid} slice {sid} on {node}: {why}"
        for fid, sid, src, dst in self.repaired:
            line += f"\n  repaired file {fid} slice {sid}: {src} -> {dst}"
        for err in self.errors:
            line += f"\n  error: {err}"
        return line


@dataclass
class _Item:
    f: FileRecord
    slice_id: str
    node: str
    info: ReplicaInfo
    challenge: Challenge


class StorageMonitor:
    """Challenges, records and repairs an owner's files (see the module docstring).

    Parameters
    ----------
    network : StorageNetwork
        The owner's client (its identity signs everything).
    interval : float
        Seconds between the starts of two rounds.
    k : int
        Chunks per challenge.
    retention_days : float
        Days after expiry before a file is marked deleted.
    rng : callable, default os.urandom
        Challenge nonces.
    """

    def __init__(self, network: StorageNetwork, *, interval: float = 60.0, k: int = DEFAULT_CHALLENGE_SIZE,
                 retention_days: float = 7.0, rng: Callable[[int], bytes] = os.urandom) -> None:
        if not interval > 0 or not 1 <= k <= MAX_CHALLENGE_SIZE:
            raise ParameterError(f"interval must be positive and k in [1, {MAX_CHALLENGE_SIZE}]")
        self.net = network
        self.interval = float(interval)
        self.k = k
        self.retention_ms = int(retention_days * _DAY_MS)
        self._rng = rng
        #: nodes that did not answer, with their last heartbeat then: not a repair target until
        #: they heartbeat again (a killed node's heartbeat stays fresh for a while on the ledger)
        self._suspects: dict[str, int] = {}

    # -- the loop -------------------------------------------------------------------------------
    def run(self, *, rounds: int | None = None, on_round: Callable[[RoundReport], Any] | None = None,
            stop: threading.Event | None = None, before_round: Callable[[], Any] | None = None) -> None:
        """Run rounds every ``interval`` seconds until ``stop`` is set (or ``rounds`` were run).

        ``before_round()`` is called before each round (e.g. to refuse a ledger that went back:
        what it raises ends the run); ``on_round(report)`` after each."""
        stop = stop or threading.Event()
        done = 0
        while not stop.is_set():
            started = time.monotonic()
            if before_round is not None:
                before_round()
            report = self.run_round()
            if on_round is not None:
                on_round(report)
            done += 1
            if rounds is not None and done >= rounds:
                return
            stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def run_round(self) -> RoundReport:
        """One round: challenge, verify, record, repair, expire."""
        return asyncio.run(self._round())

    # -- one round ------------------------------------------------------------------------------
    async def _round(self) -> RoundReport:
        net, led = self.net, self.net.ledger
        me = net.identity.node_id
        report = RoundReport()
        now = net._clock()
        mine = led.list_files(owner=me)
        self._expire(mine, now, report)
        files = [f for f in mine if f.content_id and f.is_live(now)]
        nodes = net.nodes()
        for n, beat in list(self._suspects.items()):
            if n not in nodes or nodes[n].last_heartbeat_ms > beat:
                del self._suspects[n]
        http = _Http(net.identity, net._clock, min(net.timeout, max(5.0, self.interval * 2)), net.parallel)
        pool = ThreadPoolExecutor(net.threads)
        try:
            per_node: dict[str, list[_Item]] = defaultdict(list)
            outcomes: list[tuple[_Item, str | None]] = []  # (item, failure reason or None)
            for f in files:
                for s in f.slices:
                    for node, info in zip(s.nodes, s.replicas):
                        rid = ReplicaId(f.content_id, int(s.slice_id), info.index)
                        ch = Challenge(rid, bytes(self._rng(32)), -(-info.size // f.chunk_size), self.k)
                        item = _Item(f, s.slice_id, node, info, ch)
                        st = nodes.get(node)
                        if st is None or not st.alive:
                            outcomes.append((item, "no recent heartbeat"))
                        else:
                            per_node[node].append(item)
            answered = await asyncio.gather(*(self._ask(http, nodes[n], items) for n, items in per_node.items()))
            to_verify: list[tuple[_Item, Answer]] = []
            for results in answered:
                for item, res in results:
                    if isinstance(res, Answer):
                        to_verify.append((item, res))
                    else:
                        outcomes.append((item, res))
            checks = check_answers([
                (ReplicaCommitment(it.challenge.replica, it.info.root, it.info.size, it.f.chunk_size), it.challenge, a)
                for it, a in to_verify])
            for (it, _), err in zip(to_verify, checks):
                outcomes.append((it, None if err is None else f"wrong proof: {err}"))
            report.challenged = len(outcomes)
            report.proved = sum(1 for _, why in outcomes if why is None)
            report.failed = [(it.f.file_id, it.slice_id, it.node, why) for it, why in outcomes if why is not None]
            self._record(outcomes, report)  # ledger calls stay in this thread (one connection per thread)
            await self._repair(http, pool, files, nodes, report)
        finally:
            await http.close()
            pool.shutdown(wait=False, cancel_futures=True)
        return report

    async def _ask(self, http: _Http, node: NodeStatus, items: list[_Item]) -> list[tuple[_Item, Answer | str]]:
        body = msgspec.msgpack.encode([[it.f.file_id, it.challenge.to_bytes()] for it in items])
        try:
            raw = await http.request(node, "POST", "/v1/challenges", body)
            results = msgspec.msgpack.decode(raw)
            if not isinstance(results, list) or len(results) != len(items):
                raise MalformedInput("the node answered a different number of challenges")
        except DtxError as exc:
            if isinstance(exc, NodeUnreachable):
                self._suspects[node.node_id] = node.last_heartbeat_ms
            return [(it, f"no answer: {exc}") for it in items]
        out: list[tuple[_Item, Answer | str]] = []
        for it, res in zip(items, results):
            if isinstance(res, list) and len(res) == 2 and res[0] == "ok" and isinstance(res[1], bytes):
                try:
                    out.append((it, Answer.from_bytes(res[1])))
                except MalformedInput as exc:
                    out.append((it, f"malformed answer: {exc}"))
            else:
                why = f"{res[0]}: {res[1]}" if isinstance(res, list) and len(res) == 2 else "malformed answer"
                out.append((it, str(why)[:500]))
        return out

    def _record(self, outcomes: list[tuple[_Item, str | None]], report: RoundReport) -> None:
        led, ident = self.net.ledger, self.net.identity
        if not outcomes:
            return
        try:
            issues = [led.sign(ident, IssueChallenge(node=it.node, file_id=it.f.file_id, slice_id=it.slice_id,
                                                     challenge=it.challenge.to_bytes())) for it, _ in outcomes]
            led.append_many(issues)
            resolves = [led.sign(ident, ResolveChallenge(challenge_id=object_id(tx.tx_id), proved=why is None,
                                                         evidence=(why or "").encode()[:4096]))
                        for tx, (_, why) in zip(issues, outcomes)]
            led.append_many(resolves)
        except DtxError as exc:
            report.errors.append(f"recording the challenges failed: {exc}")

    def _expire(self, files: list[FileRecord], now: int, report: RoundReport) -> None:
        for f in files:
            if f.status != FileStatus.DELETED and now > f.expires_ms + self.retention_ms:
                try:
                    self.net.ledger.submit(self.net.identity, DeleteFile(file_id=f.file_id))
                    report.deleted.append(f.file_id)
                except DtxError as exc:
                    report.errors.append(f"marking file {f.file_id} deleted failed: {exc}")

    async def _repair(self, http: _Http, pool: ThreadPoolExecutor, files: list[FileRecord],
                      nodes: dict[str, NodeStatus], report: RoundReport) -> None:
        led = self.net.ledger
        bad_nodes = {node for _, _, node, _ in report.failed}
        todo: dict[tuple[str, str], list[str | None]] = defaultdict(list)
        for fid, sid, node, _ in report.failed:
            todo[(fid, sid)].append(node)
        for f in files:  # slices short of their namespace's replica count get new replicas
            try:
                want = led.get_namespace(f.namespace).replicas
            except DtxError:
                continue
            for s in f.slices:
                todo[(f.file_id, s.slice_id)].extend([None] * max(0, want - len(s.nodes)))
        if not todo:
            return
        healthy = [n for n in nodes.values()
                   if n.healthy and n.node_id not in bad_nodes and n.node_id not in self._suspects]
        load = replica_load(led, [n.node_id for n in healthy])
        order = sorted(healthy, key=lambda n: (_RANK[n.health], n.node_id))
        lock = asyncio.Lock()

        async def fix(fid: str, sid: str, olds: list[str | None]) -> None:
            for old in olds:
                try:
                    await self._fix_one(http, pool, fid, sid, old, nodes, order, load, lock, bad_nodes, report)
                except (DtxError, OSError) as exc:
                    report.errors.append(f"repairing file {fid} slice {sid} (from {old}) failed: {exc}")

        await asyncio.gather(*(fix(fid, sid, olds) for (fid, sid), olds in todo.items()))

    async def _fix_one(self, http: _Http, pool: ThreadPoolExecutor, fid: str, sid: str, old: str | None,
                       nodes: dict[str, NodeStatus], order: list[NodeStatus], load: dict[str, int],
                       lock: asyncio.Lock, bad_nodes: set[str], report: RoundReport) -> None:
        net, led = self.net, self.net.ledger
        loop = asyncio.get_running_loop()
        f = led.get_file(fid)
        s = f.slice(sid)
        if s is None or (old is not None and old not in s.nodes):
            return
        cipher = FileCipher(net.file_key(f), f.content_id)
        plain, _ = await net.fetch_slice(http, f, cipher, s, nodes, pool, skip=bad_nodes | ({old} if old else set()))
        index = max(r.index for r in s.replicas) + 1
        def encrypt() -> tuple[bytearray, bytes]:  # in a worker thread (the AEAD and the tree release the GIL)
            data = cipher.encrypt(int(sid), index, plain)
            return data, MerkleTree.from_bytes(data, f.chunk_size, threads=1).root

        data, root = await loop.run_in_executor(pool, encrypt)
        tried: set[str] = set()
        while True:
            async with lock:  # pick the target and count it before the next repair picks
                choices = [n for n in order if n.node_id not in s.nodes and n.node_id not in tried
                           and n.node_id not in self._suspects]
                if not choices:
                    raise ProtocolError("no healthy node without a replica of this slice is left; start more nodes")
                target = min(choices, key=lambda n: load.get(n.node_id, 0))
                load[target.node_id] = load.get(target.node_id, 0) + 1
            try:
                await http.put(target, f.content_id, int(sid), index, data, digest_kind=GMAC,
                               peer_key=led.get_node(target.node_id).public_key)
                break
            except ProtocolError as exc:
                tried.add(target.node_id)
                if isinstance(exc, NodeUnreachable):
                    self._suspects[target.node_id] = target.last_heartbeat_ms
        info = ReplicaInfo(index=index, root=root, size=len(data))
        if old is None:
            body: Any = AddReplica(file_id=fid, slice_id=sid, node=target.node_id, replica=info)
        else:
            body = MigrateSlice(file_id=fid, slice_id=sid, from_node=old, to_node=target.node_id, replica=info)
        try:
            led.submit(net.identity, body)
        except BaseException:
            await asyncio.gather(http.delete(target, f.content_id, int(sid), index), return_exceptions=True)
            raise
        if old is None:
            report.added.append((fid, sid, target.node_id))
            return
        report.repaired.append((fid, sid, old, target.node_id))
        old_info = next(r for n, r in zip(s.nodes, s.replicas) if n == old)
        st = nodes.get(old)
        if st is not None and st.alive:  # the old node may still hold a (bad) copy: ask it to drop it
            await asyncio.gather(http.delete(st, f.content_id, int(sid), old_info.index), return_exceptions=True)
