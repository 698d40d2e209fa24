"""The etcd ledger on real etcd clusters: locations, CLI, two writers, limits, and failover.

The contract suite (``test_ledger_contract.py``) runs against ``EtcdLedger`` on the session's
cluster; here are the parts only a replicated backend has. The failover tests start a cluster of
their own (members are killed and paused on purpose) and child processes that append through it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest
from ledger_helpers import ident

from dtxfast.errors import NotFound, ParameterError
from dtxfast.ledger import Heartbeat, PublishFile, RegisterNode, SliceInfo, open_ledger
from dtxfast.ledger.etcd import EtcdLedger, parse_etcd_url
from dtxfast.ledger.etcd_local import LocalEtcdCluster, etcd_binary

pytestmark = pytest.mark.skipif(etcd_binary() is None, reason="etcd is not installed")


def dtx(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dtxfast", *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})})


def _chain(tag: str) -> str:
    return f"{tag}{os.getpid()}x{time.monotonic_ns() % 10**9}"


# --- locations -------------------------------------------------------------------------------


def test_parse_locations():
    assert parse_etcd_url("etcd://a:1,b:2/c") == (["a:1", "b:2"], "c")
    assert parse_etcd_url("etcd://a:1/") == (["a:1"], "default")
    for bad in ("etcd://", "etcd:///x", "etcd://a/x", "etcd://a:0", "etcd://a:1/x y", "http://a:1"):
        with pytest.raises(ParameterError):
            parse_etcd_url(bad)


def test_open_needs_genesis_unless_created(etcd_cluster):
    url = etcd_cluster.url(_chain("open"))
    with pytest.raises(NotFound, match="dtx ledger init"):
        open_ledger(url)
    led = open_ledger(url, create=True)
    again = open_ledger(url)  # a second handle finds the same chain
    assert again.chain_id == led.chain_id and isinstance(again, EtcdLedger)
    led.close()
    again.close()


# --- the CLI ---------------------------------------------------------------------------------


def test_cli_init_once_info_show_verify(etcd_cluster):
    url = etcd_cluster.url(_chain("cli"))
    r = dtx("ledger", "init", "-L", url)
    assert r.returncode == 0, r.stderr
    assert "created ledger" in r.stdout
    r = dtx("ledger", "init", "-L", url)
    assert r.returncode != 0 and "already has a genesis block" in r.stderr
    assert "Traceback" not in r.stderr
    led = open_ledger(url)
    node = ident("cli-node")
    led.submit(node, RegisterNode(role="storage", address="127.0.0.1:9"))
    led.close()
    r = dtx("ledger", "info", env={"DTX_LEDGER": url})  # the location from the environment
    assert r.returncode == 0, r.stderr
    assert "backend  etcd" in r.stdout and "height   1" in r.stdout
    members = [ln for ln in r.stdout.splitlines() if ln.startswith("member")]
    assert len(members) == 3 and sum("(leader)" in ln for ln in members) == 1
    leader = etcd_cluster.names[etcd_cluster.leader()]
    assert f"leader   {leader}" in r.stdout
    r = dtx("ledger", "verify", "-L", url, "--replay")
    assert r.returncode == 0 and "ledger OK: 2 blocks, 1 entries" in r.stdout, r.stderr
    r = dtx("nodes", "list", "-L", url)
    assert r.returncode == 0 and node.node_id in r.stdout


def test_cli_unreachable_cluster_is_one_line():
    r = dtx("ledger", "info", "-L", "etcd://127.0.0.1:1/x", env={"DTX_ETCD_TIMEOUT": "1"})
    assert r.returncode != 0 and "unavailable" in r.stderr and "Traceback" not in r.stderr


# --- two writers, limits ----------------------------------------------------------------------


def test_two_writers_never_fork(etcd_cluster):
    url = etcd_cluster.url(_chain("two"))
    a = EtcdLedger(url, create=True)
    b = EtcdLedger(url)  # a second writer with its own cache, as another process would have
    nodes = [ident(f"w{i}") for i in range(4)]
    a.append_many([a.sign(n, RegisterNode(role="storage")) for n in nodes])
    # b's cache believes the chain ends here while a appends on: b must not fork, nor refuse
    assert b.height == 1
    b.submit(nodes[0], Heartbeat())
    errors = []

    def beat(led, who):
        try:
            for _ in range(15):
                led.submit(who, Heartbeat())
        except Exception as exc:  # surfaced below
            errors.append(exc)

    ts = [threading.Thread(target=beat, args=(led, n)) for led, n in zip((a, b, a, b), nodes)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    assert not errors
    assert a.height == 2 + 60
    assert a.verify_chain(replay=True).entries == 4 + 1 + 60
    # a node registered through one handle is known at once to the other (its cache is no excuse)
    late = ident("late")
    a.submit(late, RegisterNode(role="storage"))
    b.submit(late, Heartbeat())
    a.close()
    b.close()


def test_oversized_block_is_refused_clearly(etcd_cluster):
    led = EtcdLedger(etcd_cluster.url(_chain("big")), create=True)
    owner, s = ident("big-owner"), ident("big-s")
    led.append_many([led.sign(owner, RegisterNode(role="dataowner")),
                     led.sign(s, RegisterNode(role="storage"))])
    from dtxfast.ledger import CreateNamespace

    led.submit(owner, CreateNamespace(name="ns", replicas=1))
    h = led.height
    slices = [SliceInfo(f"s{i:05d}", bytes(32), [s.node_id]) for i in range(3000)]
    bodies = [PublishFile(namespace="ns", name=f"f{i}", size=1, digest=bytes(32),
                          expires_ms=led.now_ms() + 86_400_000, slices=slices) for i in range(5)]
    stxs = [led.sign(owner, b) for b in bodies]  # each is a valid transaction of ~0.2 MB
    with pytest.raises(ParameterError, match="only metadata and hashes"):
        led.append_many(stxs)  # together over etcd's request limit
    assert led.height == h
    led.append(stxs[0])  # alone it fits
    assert led.height == h + 1
    led.close()


# --- failover on a cluster of its own --------------------------------------------------------

CHILD = r"""
import sys
from dtxfast.ledger.etcd import EtcdLedger
from dtxfast.ledger import NodeIdentity, Heartbeat
led = EtcdLedger(sys.argv[1], timeout=60)
me = NodeIdentity.from_seed(bytes.fromhex(sys.argv[2]))
print("ready", flush=True)
while True:
    r = led.submit(me, Heartbeat())
    print(r.tx_id, r.height, flush=True)
"""


class _Appender:
    """A child process appending heartbeats; collects the acknowledged transaction ids."""

    def __init__(self, url: str, seed: bytes) -> None:
        self.p = subprocess.Popen([sys.executable, "-c", CHILD, url, seed.hex()],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.acked: list[str] = []
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self) -> None:
        assert self.p.stdout is not None
        for line in self.p.stdout:
            parts = line.split()
            if len(parts) == 2:
                self.acked.append(parts[0])

    def wait_for(self, n: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acked) < n:
            if self.p.poll() is not None:
                raise AssertionError(f"appender died: {self.p.stderr.read()}")  # type: ignore[union-attr]
            assert time.monotonic() < deadline, f"only {len(self.acked)} of {n} appends acknowledged"
            time.sleep(0.02)

    def stop(self) -> list[str]:
        self.p.kill()
        self.p.wait()
        self._t.join(10)
        return list(self.acked)


@pytest.fixture(scope="module")
def cluster():
    c = LocalEtcdCluster(3)
    try:
        yield c
    finally:
        c.stop()


def _serializable(cluster: LocalEtcdCluster, i: int, chain: str) -> EtcdLedger:
    """A ledger reading member ``i``'s own copy of the data (no leader round trip)."""
    return EtcdLedger([cluster.endpoints[i]], chain=chain, serializable=True, timeout=10)


@pytest.mark.integration
def test_leader_sigkill_during_two_writers(cluster):
    chain = _chain("kill")
    url = cluster.url(chain)
    led = EtcdLedger(url, create=True)
    seeds = [os.urandom(32) for _ in range(2)]
    from dtxfast.ledger import NodeIdentity

    led.append_many([led.sign(NodeIdentity.from_seed(s), RegisterNode(role="storage")) for s in seeds])
    kids = [_Appender(url, s) for s in seeds]
    try:
        for k in kids:
            k.wait_for(15)
        victim = cluster.leader()
        cluster.kill(victim)
        marks = [len(k.acked) for k in kids]
        for k, m in zip(kids, marks):  # appends resume on the new leader
            k.wait_for(m + 15)
        assert cluster.leader() != victim
    finally:
        acked = [k.stop() for k in kids]
    all_acked = [t for a in acked for t in a]
    assert len(all_acked) == len(set(all_acked))
    cluster.restart(victim)
    tip = led.height
    tip_hash = led.block(tip).hash
    # the restarted member catches up: its own copy reaches the same tip, block for block
    back = _serializable(cluster, victim, chain)
    deadline = time.monotonic() + 30
    while back.height < tip:
        assert time.monotonic() < deadline, "the restarted member did not catch up"
        time.sleep(0.05)
    assert back.block(tip).hash == tip_hash
    on_chain = {e.tx_id.hex() for e in led.entries(1) if e.kind == "heartbeat"}
    assert set(all_acked) <= on_chain  # nothing acknowledged is lost
    rep = led.verify_chain(replay=True)
    assert rep.entries == 2 + len(on_chain)
    back.close()
    led.close()
    for i in range(3):  # every member's endpoint serves a chain that verifies
        r = dtx("ledger", "verify", "-L", cluster.member_url(i, chain))
        assert r.returncode == 0, r.stderr
        assert f"{tip + 1} blocks" in r.stdout


@pytest.mark.integration
def test_paused_member_does_not_stop_the_majority(cluster):
    chain = _chain("pause")
    led = EtcdLedger(cluster.url(chain), create=True, request_timeout=0.5)
    node = ident("pause-node")
    led.submit(node, RegisterNode(role="storage"))
    victim = cluster.leader()
    cluster.pause(victim)  # SIGSTOP: to the others (and to clients) it is cut off
    try:
        for _ in range(10):
            led.submit(node, Heartbeat())
        assert cluster.leader() != victim
    finally:
        cluster.resume(victim)
    h = led.height
    assert h == 11
    back = _serializable(cluster, victim, chain)
    deadline = time.monotonic() + 30
    while back.height < h:
        assert time.monotonic() < deadline, "the resumed member did not catch up"
        time.sleep(0.05)
    assert back.verify_chain(replay=True).entries == 11
    back.close()
    led.close()


def test_state_changed_in_etcd_is_caught_at_every_member(etcd_cluster):
    chain = _chain("tamper")
    led = EtcdLedger(etcd_cluster.url(chain), create=True)
    node = ident("tamper-node")
    led.submit(node, RegisterNode(role="storage", address="127.0.0.1:9"))
    from ledger_helpers import tamper_record

    from dtxfast.ledger.records import encode_record

    rec = led.get_node(node.node_id)
    rec.address = "10.6.6.6:1"  # written into etcd directly, not through the ledger
    tamper_record(led, "node", node.node_id, encode_record(rec))
    led.close()
    for i in range(3):  # each member serves its own copy of the records; each is checked
        r = dtx("ledger", "verify", "-L", etcd_cluster.member_url(i, chain))
        assert r.returncode != 0 and "state root" in r.stderr, r.stdout + r.stderr
        assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
