"""A storage network of real node processes for the tests (ledger, keys, nodes, an owner)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from node_procs import NodeLauncher, NodeProcess, dtx_command

from dtxfast.ledger import NodeIdentity, SQLiteLedger
from dtxfast.storage.network import StorageNetwork

HEARTBEAT = 0.5  # seconds between node heartbeats in the tests
LIVENESS = 6.0  # a node is down after this long without one (generous for a loaded CI machine)


@dataclass
class Cluster:
    base: Path
    ledger_path: Path
    launcher: NodeLauncher
    keys: list[Path] = field(default_factory=list)
    procs: list[NodeProcess] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.ledger = SQLiteLedger(self.ledger_path, create=True)
        self.owner = NodeIdentity.generate()

    def data_dir(self, i: int) -> Path:
        return self.base / f"data{i}"

    def argv(self, i: int, port: int = 0, *extra: str) -> list[str]:
        return dtx_command("storage", "start", "--key", str(self.keys[i]), "-L", str(self.ledger_path),
                           "--data-dir", str(self.data_dir(i)), "--listen", f"127.0.0.1:{port}",
                           "--heartbeat", str(HEARTBEAT), *extra)

    def add_node(self, *extra: str) -> NodeProcess:
        i = len(self.keys)
        ident = NodeIdentity.generate()
        key = self.base / f"node{i}.key"
        ident.save(key)
        self.keys.append(key)
        self.ids.append(ident.node_id)
        p = self.launcher.start(self.argv(i, 0, *extra), name=f"storage{i}-{self.base.name}")
        self.procs.append(p)
        return p

    def proc_of(self, node_id: str) -> NodeProcess:
        return self.procs[self.ids.index(node_id)]

    def network(self, identity: NodeIdentity | None = None, **kw: object) -> StorageNetwork:
        kw.setdefault("liveness", LIVENESS)
        return StorageNetwork(self.ledger, identity or self.owner, **kw)  # type: ignore[arg-type]

    def replica_files(self, i: int) -> list[Path]:
        d = self.data_dir(i)
        return sorted(p for p in d.rglob("*") if p.is_file() and not p.name.startswith("."))


def make_cluster(launcher: NodeLauncher, base: Path, n: int = 5) -> Cluster:
    base.mkdir(parents=True, exist_ok=True)
    c = Cluster(base, base / "ledger.db", launcher)
    for _ in range(n):
        c.add_node()
    return c


def random_file(path: Path, size: int, seed: int = 0) -> bytes:
    import random

    data = random.Random(seed).randbytes(size)
    path.write_bytes(data)
    return data


_ = os
