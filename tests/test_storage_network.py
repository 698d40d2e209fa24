"""The storage network through real node processes on loopback (dtx storage start).

A session-scoped network of 5 nodes serves the tests that leave it as they found it; the tests
that kill nodes build their own. Every process is stopped by the fixtures' finalizers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from node_procs import dtx_command
from storagenet_helpers import HEARTBEAT, LIVENESS, Cluster, make_cluster, random_file

from dtxfast.errors import InvalidProof, NotFound, ParameterError, StateError, Unauthorized
from dtxfast.ledger import (
    ApplyFile,
    CreateNamespace,
    ApproveApplication,
    ChallengeStatus,
    ExpireFile,
    ExtendFile,
    NodeIdentity,
    RegisterNode,
    SetNamespaceReplicas,
)
from dtxfast.ledger.records import FileStatus
from dtxfast.storage.applications import revoke_application
from dtxfast.storage.monitor import StorageMonitor
from dtxfast.storage.network import DEFAULT_REPLICAS
from dtxfast.transport.http_auth import RequestSigner

pytestmark = pytest.mark.integration

SLICE = 64 * 1024  # small slices: a 200 KiB file has several
CHUNK = 4096


@pytest.fixture(scope="session")
def net5(session_node_launcher, tmp_path_factory) -> Cluster:
    return make_cluster(session_node_launcher, tmp_path_factory.mktemp("net5"))


@pytest.fixture
def fresh5(node_launcher, tmp_path) -> Cluster:
    return make_cluster(node_launcher, tmp_path / "fresh5")


def _upload(c: Cluster, tmp_path: Path, size: int = 3 * SLICE + 1234, seed: int = 1, **kw) -> tuple[str, bytes]:
    src = tmp_path / f"in-{seed}.bin"
    data = random_file(src, size, seed)
    fid = c.network().upload(src, slice_size=SLICE, chunk_size=CHUNK, **kw)
    return fid, data


def _download(c: Cluster, fid: str, tmp_path: Path, identity: NodeIdentity | None = None) -> bytes:
    out = tmp_path / f"out-{fid}.bin"
    c.network(identity).download(fid, out)
    return out.read_bytes()


def _full(c: Cluster, fid: str, replicas: int = 3) -> bool:
    """Every slice has ``replicas`` replicas, all on live node processes."""
    f = c.ledger.get_file(fid)
    return all(len(s.nodes) == replicas and all(c.proc_of(n).alive for n in s.nodes) for s in f.slices)


def _signed(c: Cluster, ident: NodeIdentity, node: int, method: str, path: str, body: bytes = b"",
            headers: dict | None = None) -> tuple[int, bytes]:
    h = headers if headers is not None else RequestSigner(ident).headers(method, path, body, to=c.ids[node])
    req = urllib.request.Request(c.procs[node].url + path, data=body or None, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


# ------------------------------------------------------------------------- upload and download


def test_upload_download_multislice_bit_exact(net5, tmp_path):
    fid, data = _upload(net5, tmp_path)
    f = net5.ledger.get_file(fid)
    assert len(f.slices) == 4 and f.size == len(data)
    for s in f.slices:  # never two replicas of one slice on one node; distinct keys → distinct roots
        assert len(set(s.nodes)) == 3
        assert len({r.root for r in s.replicas}) == 3
    assert _download(net5, fid, tmp_path) == data


def test_replicas_spread_and_last_slice_padded_to_a_chunk_only(net5, tmp_path):
    size = 2 * SLICE + 100  # the last slice holds 100 bytes
    fid, _ = _upload(net5, tmp_path, size=size, seed=2)
    f = net5.ledger.get_file(fid)
    last = f.slices[-1]
    assert {r.size for r in last.replicas} == {CHUNK + 16}  # 100 bytes → one chunk + the GCM tag
    on_disk = sum(p.stat().st_size for i in range(5) for p in net5.replica_files(i) if f.content_id.hex() in str(p))
    assert on_disk == 3 * (2 * (SLICE + 16) + CHUNK + 16)


def test_show_and_list_json_shapes(net5, tmp_path):
    fid, data = _upload(net5, tmp_path, size=SLICE + 1, seed=3)
    out = subprocess.run(dtx_command("file", "show", fid, "-L", str(net5.ledger_path), "--json",
                                     "--liveness", str(LIVENESS)), capture_output=True, text=True, check=True)
    info = json.loads(out.stdout)
    assert {"file_id", "size", "expires_at", "slices"} <= set(info)
    assert info["file_id"] == fid and info["size"] == len(data) and len(info["slices"]) == 2
    rep = info["slices"][0]["replicas"][0]
    assert set(rep) == {"node_id", "address", "healthy"} and rep["healthy"] is True
    assert info["slices"][1]["index"] == 1
    listed = json.loads(subprocess.run(dtx_command("file", "list", "-L", str(net5.ledger_path), "--json"),
                                       capture_output=True, text=True, check=True).stdout)
    assert fid in {r["file_id"] for r in listed}
    nodes = json.loads(subprocess.run(dtx_command("nodes", "list", "-L", str(net5.ledger_path), "--json"),
                                      capture_output=True, text=True, check=True).stdout)
    storage = [n for n in nodes if n["role"] == "storage"]
    assert {n["node_id"] for n in storage} >= set(net5.ids)
    assert all({"node_id", "role", "address", "health"} <= set(n) and n["address"].startswith("http://")
               for n in storage)


def test_cli_upload_and_download(net5, tmp_path):
    key = tmp_path / "cli-owner.key"
    NodeIdentity.generate().save(key)
    src = tmp_path / "cli.bin"
    data = random_file(src, 2 * SLICE + 7, seed=4)
    led = str(net5.ledger_path)
    up = subprocess.run(dtx_command("file", "upload", str(src), "--key", str(key), "-L", led, "--json",
                                    "--slice-size", str(SLICE), "--liveness", str(LIVENESS)),
                        capture_output=True, text=True, check=False)
    assert up.returncode == 0, up.stderr
    fid = json.loads(up.stdout)["file_id"]
    out = tmp_path / "cli.out"
    down = subprocess.run(dtx_command("file", "download", fid, "--key", str(key), "-L", led, "-o", str(out), "-q",
                                      "--liveness", str(LIVENESS)), capture_output=True, text=True, check=False)
    assert down.returncode == 0, down.stderr
    assert out.read_bytes() == data


def test_too_few_healthy_nodes_is_a_clear_error(net5, tmp_path):
    src = tmp_path / "small.bin"
    random_file(src, 1000)
    with pytest.raises(StateError, match="only 5 healthy storage nodes for 6 replicas"):
        net5.network().upload(src, namespace="six", replicas=6, slice_size=SLICE)


def test_freshly_started_nodes_take_an_upload_at_once(node_launcher, tmp_path):
    """Three node processes that heartbeat once an hour: each is alive on the ledger from its
    readiness line on (its first heartbeat is sent before it), so an upload started right away
    places three replicas per slice (it used to see "only 2 healthy" when the last node's first
    heartbeat had not landed yet)."""
    base = tmp_path / "fresh3"
    base.mkdir()
    c = Cluster(base, base / "ledger.db", node_launcher)
    for _ in range(3):
        c.add_node("--heartbeat", "3600")
    fid, data = _upload(c, tmp_path, replicas=3)
    assert all(sorted(s.nodes) == sorted(c.ids) for s in c.ledger.get_file(fid).slices)
    assert _download(c, fid, tmp_path) == data


def test_replicas_larger_than_a_send_piece_arrive_exact(net5, tmp_path):
    """Replicas of 1 MiB + 16 bytes are sent in 256 KiB pieces (and a 16-byte last one): every
    node's GMAC check passes and the file comes back bit-exact."""
    src = tmp_path / "big.bin"
    data = random_file(src, 2 * (1 << 20) + 777, seed=7)
    fid = net5.network().upload(src, slice_size=1 << 20, chunk_size=CHUNK)
    assert [r.size for r in net5.ledger.get_file(fid).slices[0].replicas] == [(1 << 20) + 16] * 3
    assert _download(net5, fid, tmp_path) == data


def test_namespace_sets_the_replica_count(net5, tmp_path):
    net = net5.network()
    fid, _ = _upload(net5, tmp_path, size=SLICE + 5, seed=5, namespace="two", replicas=2)
    assert all(len(s.nodes) == 2 for s in net5.ledger.get_file(fid).slices)
    src = tmp_path / "x.bin"
    random_file(src, 10)
    with pytest.raises(ParameterError, match="keeps 2 replicas"):
        net.upload(src, namespace="two", replicas=3, slice_size=SLICE)
    # raising the namespace's count adds a replica to every slice, on a node without one
    net5.ledger.submit(net5.owner, SetNamespaceReplicas(name="two", replicas=3))
    report = StorageMonitor(net, interval=1).run_round()
    assert len(report.added) == 2 and not report.errors
    f = net5.ledger.get_file(fid)
    assert all(len(set(s.nodes)) == 3 and len({r.index for r in s.replicas}) == 3 for s in f.slices)


class _NamespaceRaceLedger:
    """The owner's ledger, on which another upload of the same owner creates the namespace between
    this upload's lookup and its CreateNamespace (as two tasks' results published at once)."""

    def __init__(self, ledger, owner, name):
        self._ledger, self._owner, self._name, self.raced = ledger, owner, name, False

    def __getattr__(self, attr):
        return getattr(self._ledger, attr)

    def get_namespace(self, ns_id):
        # the lookup that decides whether to create it (not the earlier replica-count one)
        if not self.raced and ns_id.endswith("/" + self._name) and sys._getframe(1).f_code.co_name == "_ensure_owner":
            self.raced = True
            self._ledger.submit(self._owner, CreateNamespace(name=self._name, replicas=DEFAULT_REPLICAS))
            raise NotFound(ns_id)
        return self._ledger.get_namespace(ns_id)


def test_upload_into_a_namespace_another_upload_just_created(net5, tmp_path):
    """The check-then-create race of two uploads into a new namespace: the loser's CreateNamespace
    is refused (it exists), so it takes the namespace the winner made (with the same default
    replica count) instead of failing the upload."""
    net = net5.network()
    net.ledger = race = _NamespaceRaceLedger(net.ledger, net5.owner, "raced")
    src = tmp_path / "r.bin"
    data = random_file(src, SLICE + 3, seed=11)
    fid = net.upload(src, namespace="raced", slice_size=SLICE, chunk_size=CHUNK)
    assert race.raced
    assert all(len(s.nodes) == DEFAULT_REPLICAS for s in net5.ledger.get_file(fid).slices)
    assert _download(net5, fid, tmp_path) == data


# ------------------------------------------------------------------------- who may read


def test_unauthorized_key_gets_403_and_an_approved_executor_reads(net5, tmp_path):
    fid, data = _upload(net5, tmp_path, size=SLICE + 99, seed=6)
    f = net5.ledger.get_file(fid)
    ex = NodeIdentity.generate()
    net5.ledger.submit(ex, RegisterNode(role="executor"))
    s0 = f.slices[0]
    node = net5.ids.index(s0.nodes[0])
    status, body = _signed(net5, ex, node, "GET", f"/v1/files/{fid}/0/{s0.replicas[0].index}")
    assert status == 403 and b"approved executor" in body
    with pytest.raises(Unauthorized):
        _download(net5, fid, tmp_path, ex)  # nor does it hold the key
    app_id = net5.ledger.submit(ex, ApplyFile(file_id=fid)).object_id
    net = net5.network()
    net5.ledger.submit(net5.owner, ApproveApplication(application_id=app_id, expires_ms=f.expires_ms,
                                                      sealed_key=net.sealed_file_key(fid, ex.node_id)))
    status, _ = _signed(net5, ex, node, "GET", f"/v1/files/{fid}/0/{s0.replicas[0].index}")
    assert status == 200
    assert _download(net5, fid, tmp_path, ex) == data
    # a revoked approval: the storage nodes refuse the executor again and its client has no key
    revoke_application(net, app_id, "study over")
    status, body = _signed(net5, ex, node, "GET", f"/v1/files/{fid}/0/{s0.replicas[0].index}")
    assert status == 403 and b"approved executor" in body
    with pytest.raises(Unauthorized):
        _download(net5, fid, tmp_path, ex)


def test_expired_file_is_refused(net5, tmp_path):
    fid, _ = _upload(net5, tmp_path, size=100, seed=7)
    net5.ledger.submit(net5.owner, ExpireFile(file_id=fid))
    with pytest.raises(StateError, match="expired"):
        _download(net5, fid, tmp_path)
    s0 = net5.ledger.get_file(fid).slices[0]
    status, body = _signed(net5, net5.owner, net5.ids.index(s0.nodes[0]), "GET", f"/v1/files/{fid}/0/0")
    assert status == 410 and b"expired" in body
    out = subprocess.run(dtx_command("file", "download", fid, "--key", str(_save(net5.owner, tmp_path)), "-L",
                                     str(net5.ledger_path), "-o", str(tmp_path / "never")),
                         capture_output=True, text=True, check=False)
    assert out.returncode != 0 and "expired" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "never").exists()


def _save(ident: NodeIdentity, tmp_path: Path) -> Path:
    p = tmp_path / f"{ident.node_id}.key"
    if not p.exists():
        ident.save(p)
    return p


# ------------------------------------------------------------------------- refused requests


def test_an_expired_file_is_kept_for_the_retention_period_then_dropped_and_marked_deleted(node_launcher, tmp_path):
    """Real node processes with a 5 s retention: an expired file is refused but its replicas stay
    (its owner can still extend it), then every node drops them and the monitor marks it deleted."""
    retention_s = 5.0
    base = tmp_path / "ret"
    base.mkdir()
    c = Cluster(base, base / "ledger.db", node_launcher)
    for _ in range(4):
        c.add_node("--retention-days", repr(retention_s / 86400))
    fid, data = _upload(c, tmp_path, size=SLICE + 5, seed=13, expire_days=4.0 / 86400)
    f = c.ledger.get_file(fid)

    def held() -> int:
        return sum(1 for i in range(4) for p in c.replica_files(i) if p.parent.name == f.content_id.hex())

    assert held() == 6 and _download(c, fid, tmp_path) == data
    time.sleep(max(0.0, (f.expires_ms - c.ledger.now_ms()) / 1000) + 0.05)
    with pytest.raises(StateError, match="expired"):
        _download(c, fid, tmp_path)
    net = c.network()
    # in the retention period: the owner extends it, and it is read again
    c.ledger.submit(c.owner, ExtendFile(file_id=fid, expires_ms=c.ledger.now_ms() + 1000))
    assert _download(c, fid, tmp_path) == data
    expires = c.ledger.get_file(fid).expires_ms
    time.sleep(max(0.0, (expires - c.ledger.now_ms()) / 1000) + 2 * HEARTBEAT)
    assert held() == 6  # expired again, still kept (the nodes' housekeeping ran meanwhile)
    mon = StorageMonitor(net, interval=1, retention_days=retention_s / 86400)
    assert fid not in mon.run_round().deleted  # not yet past the retention
    deadline = time.monotonic() + 60
    while held() and time.monotonic() < deadline:  # the nodes drop them on their own
        time.sleep(HEARTBEAT / 2)
    assert held() == 0 and c.ledger.now_ms() > expires + retention_s * 1000
    assert fid in mon.run_round().deleted
    assert c.ledger.get_file(fid).status == FileStatus.DELETED
    with pytest.raises(StateError, match="deleted"):
        _download(c, fid, tmp_path)


def test_bad_requests_are_refused_and_the_node_keeps_serving(net5, tmp_path):
    fid, data = _upload(net5, tmp_path, size=SLICE, seed=8)
    s0 = net5.ledger.get_file(fid).slices[0]
    node = net5.ids.index(s0.nodes[0])
    path = f"/v1/files/{fid}/0/{s0.replicas[0].index}"
    owner = net5.owner
    # a good request passes; the very same request again is a replay
    h = RequestSigner(owner).headers("GET", path, to=net5.ids[node])
    assert _signed(net5, owner, node, "GET", path, headers=h)[0] == 200
    status, body = _signed(net5, owner, node, "GET", path, headers=h)
    assert status == 401 and b"replayed" in body
    # unsigned
    assert _signed(net5, owner, node, "GET", path, headers={})[0] == 401
    # stale: signed ten minutes ago
    old = RequestSigner(owner, clock=lambda: int(time.time() * 1000) - 600_000).headers("GET", path, to=net5.ids[node])
    status, body = _signed(net5, owner, node, "GET", path, headers=old)
    assert status == 401 and b"stale" in body
    # badly signed: another body digest / a flipped signature
    h = RequestSigner(owner).headers("GET", path, b"other body", to=net5.ids[node])
    assert _signed(net5, owner, node, "GET", path, headers=h)[0] == 401
    # meant for another node
    h = RequestSigner(owner).headers("GET", path, to=net5.ids[(node + 1) % 5])
    assert _signed(net5, owner, node, "GET", path, headers=h)[0] == 421
    # an unknown sender
    stranger = NodeIdentity.generate()
    status, body = _signed(net5, stranger, node, "GET", path)
    assert status == 401 and b"unknown sender" in body
    # oversized body (the nodes run with the default 64 MiB limit; claim more)
    big = f"/v1/replicas/{'ab' * 16}/0/0"
    h = RequestSigner(owner).headers("PUT", big, b"x", to=net5.ids[node])
    req = urllib.request.Request(net5.procs[node].url + big, data=b"x", method="PUT",
                                 headers={**h, "Content-Length": str(65 * 1024 * 1024)})
    with pytest.raises((urllib.error.HTTPError, urllib.error.URLError, ConnectionError)) as info:
        urllib.request.urlopen(req, timeout=10)
    if isinstance(info.value, urllib.error.HTTPError):
        assert info.value.code == 413
    # the node is still up and serving, and it logged one line per refusal
    assert net5.procs[node].alive
    assert _download(net5, fid, tmp_path) == data
    log = net5.procs[node].log()
    for why in ("replayed", "unsigned", "stale", "bad signature", "addressed to node", "unknown sender"):
        assert why in log, why


def test_a_restarted_node_serves_its_replicas_again(net5, tmp_path):
    fid, data = _upload(net5, tmp_path, size=2 * SLICE, seed=9)
    f = net5.ledger.get_file(fid)
    victim = f.slices[0].nodes[0]
    proc = net5.proc_of(victim)
    port = proc.port
    assert proc.stop() == 0  # SIGTERM: a clean exit
    i = net5.ids.index(victim)
    proc.restart(net5.argv(i, port))
    assert proc.port == port
    status, body = _signed(net5, net5.owner, i, "GET", f"/v1/files/{fid}/0/{f.slices[0].replicas[0].index}")
    assert status == 200 and len(body) == f.slices[0].replicas[0].size
    assert _download(net5, fid, tmp_path) == data


def test_a_download_takes_the_next_replica_and_writes_all_or_nothing(net5, tmp_path):
    """A slice whose first replica is damaged on disk comes from another; when no replica of a
    slice is intact, the download fails and the output keeps what it held, with no file left."""
    fid, data = _upload(net5, tmp_path, size=4 * SLICE, seed=13)
    f = net5.ledger.get_file(fid)
    s = f.slices[1]
    paths = [net5.data_dir(net5.ids.index(n)) / f.content_id.hex() / f"1.{r.index}"
             for n, r in zip(s.nodes, s.replicas)]
    originals = [p.read_bytes() for p in paths]

    def damage(p: Path) -> None:
        b = bytearray(p.read_bytes())
        b[len(b) // 3] ^= 0x40
        p.write_bytes(b)

    out = tmp_path / "out.bin"
    out.write_bytes(b"what the user had")
    try:
        damage(paths[0])
        net5.network().download(fid, out)
        assert out.read_bytes() == data
        out.write_bytes(b"what the user had")
        for p in paths[1:]:
            damage(p)
        with pytest.raises(InvalidProof, match="no intact replica of slice 1"):
            net5.network().download(fid, out)
        assert out.read_bytes() == b"what the user had"
        assert sorted(x.name for x in tmp_path.iterdir() if x.name.startswith(".out")) == []
    finally:
        for p, b in zip(paths, originals):
            p.write_bytes(b)
    assert _download(net5, fid, tmp_path) == data


def test_a_replica_changed_on_disk_after_it_was_served_is_refused(net5, tmp_path):
    """A node sends a replica it checked before without hashing it again (sendfile), but a byte
    flipped on disk afterwards (mtime put back) is still caught before anything is served."""
    fid, _ = _upload(net5, tmp_path, size=2 * SLICE, seed=12)
    f = net5.ledger.get_file(fid)
    s = f.slices[0]
    node, info = s.nodes[0], s.replicas[0]
    i = net5.ids.index(node)
    path = net5.data_dir(i) / f.content_id.hex() / f"0.{info.index}"
    original = path.read_bytes()
    url = f"/v1/files/{fid}/0/{info.index}"
    time.sleep(0.2)  # past the node's window for files changed just before a check
    for _ in range(3):  # hashed, then sent as checked
        assert _signed(net5, net5.owner, i, "GET", url) == (200, original)
    st = path.stat()
    flipped = bytearray(original)
    flipped[len(flipped) // 2] ^= 0x01
    with open(path, "r+b") as fh:
        fh.write(flipped)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    try:
        status, body = _signed(net5, net5.owner, i, "GET", url)
        assert status == 409 and b"damaged" in body
    finally:
        path.write_bytes(original)
    assert _signed(net5, net5.owner, i, "GET", url) == (200, original)


# ------------------------------------------------------------------------- challenges and repair


def test_damaged_replicas_are_caught_and_repaired(net5, tmp_path):
    fid, data = _upload(net5, tmp_path, size=3 * SLICE, seed=10)
    f = net5.ledger.get_file(fid)
    net = net5.network()
    mon = StorageMonitor(net, interval=1)
    assert not mon.run_round().failed  # all intact first (other files too)
    damaged = {}
    for s, how in ((f.slices[0], "truncate"), (f.slices[2], "flip")):
        node, info = s.nodes[1], s.replicas[1]
        path = net5.data_dir(net5.ids.index(node)) / f.content_id.hex() / f"{s.slice_id}.{info.index}"
        raw = bytearray(path.read_bytes())
        if how == "truncate":
            path.write_bytes(raw[: len(raw) // 2])
        else:
            raw[len(raw) // 3] ^= 0x10
            path.write_bytes(raw)
        damaged[(s.slice_id, node)] = info.index
    report = mon.run_round()
    failed = {(sid, node) for fid2, sid, node, _ in report.failed if fid2 == fid}
    assert failed == set(damaged)
    assert all("damaged" in why for fid2, _, _, why in report.failed if fid2 == fid)
    assert {(sid, old) for fid2, sid, old, _ in report.repaired if fid2 == fid} == set(damaged)
    # the outcomes are on the ledger, and the replicas are new (fresh index: key and nonce)
    bad = net5.ledger.list_challenges(file_id=fid, status=ChallengeStatus.FAILED)
    assert {(c.slice_id, c.node) for c in bad} == set(damaged)
    g = net5.ledger.get_file(fid)
    for (sid, old), index in damaged.items():
        s = g.slice(sid)
        assert old not in s.nodes and len(set(s.nodes)) == 3
        assert max(r.index for r in s.replicas) > index
    assert len(net5.ledger.list_migrations(file_id=fid)) == 2
    assert not [x for x in mon.run_round().failed if x[0] == fid]
    assert _download(net5, fid, tmp_path) == data


def test_a_killed_node_is_replaced_within_the_bound(fresh5, tmp_path):
    c = fresh5
    fid, data = _upload(c, tmp_path, size=6 * SLICE + 3, seed=11)
    f = c.ledger.get_file(fid)
    victim = max(c.ids, key=lambda n: sum(n in s.nodes for s in f.slices))
    held = sum(victim in s.nodes for s in f.slices)
    assert held >= 1
    c.proc_of(victim).kill()  # SIGKILL
    mon = StorageMonitor(c.network(), interval=1)
    deadline = time.monotonic() + 60
    rounds = 0
    while not _full(c, fid) and time.monotonic() < deadline:
        mon.run_round()
        rounds += 1
    assert _full(c, fid), f"not back to 3 live replicas per slice after {rounds} rounds"
    moves = c.ledger.list_migrations(file_id=fid)
    assert len(moves) == held and {m.from_node for m in moves} == {victim}
    assert _download(c, fid, tmp_path) == data


def test_a_failed_upload_leaves_no_replicas_and_no_metadata(fresh5, tmp_path):
    c = fresh5
    # a sixth "node" on the ledger that heartbeats but answers nothing: placement will use it
    ghost = NodeIdentity.generate()
    from node_procs import free_port

    from dtxfast.ledger import Heartbeat

    c.ledger.submit(ghost, RegisterNode(role="storage", address=f"http://127.0.0.1:{free_port()}"))
    c.ledger.submit(ghost, Heartbeat())
    before = len(c.ledger.list_files())
    src = tmp_path / "doomed.bin"
    random_file(src, 8 * SLICE, seed=12)
    with pytest.raises(Exception, match="unreachable"):
        c.network().upload(src, slice_size=SLICE, chunk_size=CHUNK)
    assert len(c.ledger.list_files()) == before
    assert not any(c.replica_files(i) for i in range(5))



_KILLED_UPLOADER = """
import sys
from dtxfast.ledger import NodeIdentity, SQLiteLedger
from dtxfast.storage.network import StorageNetwork
led = SQLiteLedger(sys.argv[1])
net = StorageNetwork(led, NodeIdentity.load(sys.argv[2]), liveness=60.0, parallel=1, state_dir=sys.argv[4])
net.upload(sys.argv[3], slice_size=65536, chunk_size=4096)
"""


def test_the_replicas_of_a_killed_uploader_go_on_the_owners_next_run(net5, tmp_path):
    """An uploader SIGKILLed midway leaves replicas on the nodes and nothing on the ledger; the
    owner's next run (remove_orphans, which every upload calls first) deletes them all, and
    leaves alone an upload still in progress (its journal is locked)."""
    import fcntl
    import signal

    key = tmp_path / "owner.key"
    net5.owner.save(key)
    state = tmp_path / "state"
    src = tmp_path / "big.bin"
    random_file(src, 400 * 65536, seed=14)
    proc = subprocess.Popen([*dtx_command()[:1], "-c", _KILLED_UPLOADER, str(net5.ledger_path), str(key), str(src),
                             str(state)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    journals = state / "uploads" / net5.owner.node_id

    def on_nodes(cid: str) -> int:
        return sum(1 for i in range(5) for p in net5.replica_files(i) if p.parent.name == cid)

    try:
        deadline = time.monotonic() + 60
        cid = ""
        while time.monotonic() < deadline and proc.poll() is None:
            found = list(journals.glob("*.json")) if journals.is_dir() else []
            if found and on_nodes(found[0].stem) >= 3:  # killed early: some nodes got nothing yet
                cid = found[0].stem
                break
            time.sleep(0.02)
        assert cid, f"the uploader never got going: {proc.stderr.read() if proc.poll() is not None else ''}"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    left, settled = on_nodes(cid), time.monotonic()
    while time.monotonic() - settled < 1.0:  # PUTs the nodes had received in full still land
        time.sleep(0.1)
        if on_nodes(cid) != left:
            left, settled = on_nodes(cid), time.monotonic()
    assert left >= 3 and not [f for f in net5.ledger.list_files(owner=net5.owner.node_id) if f.content_id.hex() == cid]
    net = net5.network(state_dir=state)
    with open(journals / f"{cid}.json") as held:  # as if that upload were still running
        fcntl.flock(held, fcntl.LOCK_EX)
        assert net.remove_orphans() == 0 and on_nodes(cid) == left
    assert net.remove_orphans() == left
    assert on_nodes(cid) == 0 and not list(journals.glob("*.json"))
    assert net.remove_orphans() == 0
    # no writable state folder: the upload still works (unjournaled)
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the state folder would be")
    small = tmp_path / "small.bin"
    data = random_file(small, 3 * 65536 + 5, seed=15)
    fid = net5.network(state_dir=blocked).upload(small, slice_size=65536, chunk_size=4096)
    assert _download(net5, fid, tmp_path) == data


def test_storage_demo_runs_end_to_end(tmp_path):
    out = subprocess.run(dtx_command("storage", "demo", "--size-mib", "1", "--interval", "0.5", "--nodes", "4",
                                     "--keep", str(tmp_path / "demo")),
                         capture_output=True, text=True, check=False, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    for what in ("started 4 storage nodes", "challenge round: challenged", "SIGKILLed node", "back to 3 live replicas",
                 "bit-exact", "stopped every node"):
        assert what in out.stdout, what


def test_dtx_monitor_reports_rounds_and_stops_on_sigterm(net5, tmp_path):
    import signal

    fid, _ = _upload(net5, tmp_path, size=SLICE, seed=13)
    proc = subprocess.Popen(dtx_command("monitor", "--key", str(_save(net5.owner, tmp_path)), "-L",
                                        str(net5.ledger_path), "--interval", "0.5", "--liveness", str(LIVENESS)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        assert first.startswith("challenged "), first + proc.stderr.read()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        proc.kill()
        proc.wait()
    assert net5.ledger.list_challenges(file_id=fid, status=ChallengeStatus.PROVED)
