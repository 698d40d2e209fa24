"""Shared fixtures of the ledger tests: backends, a controllable clock, a small world of nodes.

The contract suite (``test_ledger_contract.py``) runs once per name in :data:`BACKENDS`; a new
backend (e.g. a replicated one) joins it by adding its name here and a branch to
:func:`make_ledger` (plus, for the tamper helpers, a branch to :func:`tamper_record`).
"""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path
from typing import Any

from dtxfast.ledger import (
    ApplyFile,
    ApproveApplication,
    ConfirmTask,
    CreateNamespace,
    Ledger,
    MemoryLedger,
    NodeIdentity,
    PublishFile,
    PublishTask,
    RegisterNode,
    SliceInfo,
    SQLiteLedger,
    TaskParty,
    seal_to,
)
from dtxfast.ledger.tx import TxBody

T0 = 1_700_000_000_000
HOUR = 3_600_000
DAY = 24 * HOUR
BACKENDS = ["memory", "sqlite", "etcd"]
#: the session's etcd cluster, set by the ``etcd_cluster`` fixture before an etcd ledger is made
ETCD: dict[str, Any] = {}


class Clock:
    """A settable clock in milliseconds."""

    def __init__(self, now: int = T0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> None:
        self.now += ms


def make_ledger(kind: str, tmp_path: Path, clock: Clock | None = None, **kw: Any) -> Ledger:
    if kind == "memory":
        return MemoryLedger(clock=clock, **kw)
    if kind == "sqlite":
        return SQLiteLedger(tmp_path / "ledger.db", create=True, clock=clock, **kw)
    if kind == "etcd":
        from dtxfast.ledger.etcd import EtcdLedger

        chain = "t" + uuid.uuid4().hex[:12]  # a fresh chain per ledger on the session's cluster
        return EtcdLedger(ETCD["cluster"].url(chain), create=True, clock=clock, **kw)
    raise ValueError(kind)


def tamper_record(led: Ledger, kind: str, key: str, value: bytes) -> None:
    """Overwrite a stored record behind the contract's back."""
    if isinstance(led, MemoryLedger):
        led._s.objects[(kind, key)] = value
    elif type(led).__name__ == "EtcdLedger":
        import msgspec

        okey = led._okey(kind, key)
        old = msgspec.msgpack.decode(_etcd_get(led, okey))
        led._raw_put(okey, msgspec.msgpack.encode((value, old[1])))
    else:
        c = led._conn()
        c.execute("UPDATE objects SET value=? WHERE kind=? AND key=?", (value, kind, key))


def remove_tip_block(led: Ledger) -> None:
    """Delete the tip block behind the ledger's back, leaving whatever each backend stores apart
    from it (SQLite's entry rows, etcd's transaction index keys; nothing in memory)."""
    h = led.height
    if isinstance(led, MemoryLedger):
        led._raw_blocks().pop()
    elif type(led).__name__ == "EtcdLedger":
        led._raw_delete(led._bkey(h))
    else:
        c = led._conn()
        c.execute("DELETE FROM blocks WHERE height = ?", (h,))


def _etcd_get(led: Any, key: bytes) -> bytes:
    import base64

    kvs = led._c.range(key).get("kvs") or []
    return base64.b64decode(kvs[0]["value"])


def force_block(led: Ledger, stxs: list) -> None:
    """Append a well-formed, signed block without running the contract (a dishonest writer; its
    header commits to the state as it is, which the block leaves unchanged)."""
    from dtxfast.ledger.block import Block, BlockHeader, Entry, tx_root
    from dtxfast.ledger.statehash import STATE_KEY, STATE_KIND, StateHash

    with led._write() as w:
        h, prev = w.tip()
        raws = [s.encode() for s in stxs]
        root = StateHash.from_bytes(w.get(STATE_KIND, STATE_KEY)).root()
        header = BlockHeader(h + 1, prev, led.now_ms(), tx_root(raws), len(raws), state_root=root)
        entries = [Entry(h + 1, i, s.tx_id, s.unsigned()) for i, s in enumerate(stxs)]
        w.add_block(Block(header, header.hash(), raws), entries)


def ident(name: str) -> NodeIdentity:
    """A deterministic identity per name (fast, reproducible)."""
    return NodeIdentity.from_seed(hashlib.sha256(name.encode()).digest())


class World:
    """Registered nodes: 3 storage, 2 data owners, 2 executors, 2 requesters, 1 unregistered."""

    def __init__(self, led: Ledger, clock: Clock) -> None:
        self.led, self.clock = led, clock
        self.s = [ident(f"storage{i}") for i in range(3)]
        self.owner, self.owner2 = ident("owner"), ident("owner2")
        self.ex1, self.ex2 = ident("exec1"), ident("exec2")
        self.req, self.req2 = ident("req"), ident("req2")
        self.stranger = ident("stranger")
        roles = [(n, "storage") for n in self.s] + [
            (self.owner, "dataowner"), (self.owner2, "dataowner"), (self.ex1, "executor"),
            (self.ex2, "executor"), (self.req, "requester"), (self.req2, "requester")]
        for i, (node, role) in enumerate(roles):
            self.submit(node, RegisterNode(role=role, address=f"127.0.0.1:{7000 + i}"))
        self.submit(self.owner, CreateNamespace(name="ns", replicas=2))
        self.submit(self.owner2, CreateNamespace(name="ns", replicas=1))

    def submit(self, who: NodeIdentity, body: TxBody, ts: int | None = None) -> Any:
        return self.led.submit(who, body, ts_ms=ts)

    def publish(self, owner: NodeIdentity | None = None, *, nodes: list[list[int]] | None = None,
                expires_in: int = 30 * DAY, ns: str = "ns") -> str:
        owner = owner or self.owner
        nodes = nodes or ([[0, 1], [1, 2]] if owner is self.owner else [[0], [2]])
        slices = [SliceInfo(f"s{i}", hashlib.sha256(bytes([i])).digest(),
                            [self.s[j].node_id for j in js]) for i, js in enumerate(nodes)]
        r = self.submit(owner, PublishFile(namespace=ns, name="data.csv", size=1000,
                                           digest=bytes(32), expires_ms=self.clock() + expires_in,
                                           slices=slices))
        return r.object_id

    def apply(self, executor: NodeIdentity, file_id: str) -> str:
        return self.submit(executor, ApplyFile(file_id=file_id, purpose="train")).object_id

    def approve(self, executor: NodeIdentity, file_id: str, owner: NodeIdentity | None = None,
                secret: bytes = b"file-key-0123456789abcdef") -> str:
        app_id = self.apply(executor, file_id)
        f = self.led.get_file(file_id)
        self.submit(owner or self.owner, ApproveApplication(
            application_id=app_id, expires_ms=f.expires_ms,
            sealed_key=seal_to(executor.public_key_bytes, secret)))
        return app_id

    def two_party_task(self, *, approve: bool = True, task_type: str = "train",
                       model_task: str = "") -> tuple[str, str, str]:
        f1 = self.publish(self.owner)
        f2 = self.publish(self.owner2)
        if approve:
            self.approve(self.ex1, f1)
            self.approve(self.ex2, f2, owner=self.owner2)
        r = self.submit(self.req, PublishTask(
            task_type=task_type, algorithm="linear-vfl", model_task=model_task,
            parties=[TaskParty(self.ex1.node_id, [f1]), TaskParty(self.ex2.node_id, [f2])],
            params={"epochs": 5, "lr": 0.1, "label": "y"}))
        return r.object_id, f1, f2

    def ready_task(self) -> str:
        task_id, _, _ = self.two_party_task()
        self.submit(self.ex1, ConfirmTask(task_id=task_id))
        self.submit(self.ex2, ConfirmTask(task_id=task_id))
        return task_id


# Child process of the crash and concurrency tests: appends heartbeats in a loop, printing the
# id of each acknowledged transaction. argv: ledger path, seed hex, count (0 = forever), durability.
CHILD = r"""
import sys
from dtxfast.ledger import SQLiteLedger, NodeIdentity, Heartbeat
path, seed, count = sys.argv[1], bytes.fromhex(sys.argv[2]), int(sys.argv[3])
led = SQLiteLedger(path, durability=sys.argv[4] if len(sys.argv) > 4 else "normal")
me = NodeIdentity.from_seed(seed)
i = 0
print("ready", flush=True)
while count == 0 or i < count:
    r = led.submit(me, Heartbeat())
    print(r.tx_id, flush=True)
    i += 1
"""
