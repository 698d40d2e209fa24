"""Storage network pieces without processes: the ledger kinds it adds, signed requests, node
configuration and replica placement."""

from __future__ import annotations

import hashlib
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ledger_helpers import BACKENDS, DAY, ETCD, Clock, World, make_ledger

from dtxfast.crypto.merkle import MerkleTree
from dtxfast.errors import NotFound, ParameterError, StateError, Unauthorized
from dtxfast.ledger import (
    AddReplica,
    CreateNamespace,
    DeleteFile,
    ExpireFile,
    ExtendFile,
    MigrateSlice,
    NodeIdentity,
    PublishFile,
    RegisterNode,
    ReplicaInfo,
    SetNamespaceReplicas,
    SliceInfo,
)
from dtxfast.ledger.tx import decode_tx, sign_tx
from dtxfast.nodes.storage import StorageNodeConfig
from dtxfast.storage.network import choose_placement
from dtxfast.transport.http_auth import AuthError, ReplayCache, RequestSigner, RequestVerifier

# ------------------------------------------------------------------------- ledger kinds


@pytest.fixture(params=BACKENDS)
def world(request, tmp_path):
    clock = Clock()
    if request.param == "etcd":
        ETCD["cluster"] = request.getfixturevalue("etcd_cluster")
    led = make_ledger(request.param, tmp_path, clock)
    w = World(led, clock)
    s3 = NodeIdentity.from_seed(hashlib.sha256(b"storage3").digest())
    w.submit(s3, RegisterNode(role="storage"))
    w.s.append(s3)
    yield w
    led.close()


def _rep(i: int) -> ReplicaInfo:
    return ReplicaInfo(index=i, root=hashlib.sha256(bytes([i])).digest(), size=4112)


def _publish_net(w: World, expires_in: int = DAY) -> str:
    slices = [SliceInfo(slice_id=str(i), digest=bytes(32), nodes=[w.s[0].node_id, w.s[1].node_id],
                        replicas=[_rep(0), _rep(1)]) for i in range(2)]
    return w.submit(w.owner, PublishFile(namespace="ns", name="f", size=5000, digest=bytes(32),
                                         expires_ms=w.clock() + expires_in, slices=slices,
                                         content_id=b"c" * 16, slice_size=4096, chunk_size=4096)).object_id


def test_publish_records_replicas_and_sizes(world):
    fid = _publish_net(world)
    f = world.led.get_file(fid)
    assert f.content_id == b"c" * 16 and f.slice_size == 4096 and f.chunk_size == 4096
    assert [r.index for r in f.slices[0].replicas] == [0, 1]


def test_publish_refuses_inconsistent_replicas(world):
    w = world
    bad = [SliceInfo(slice_id="0", digest=bytes(32), nodes=[w.s[0].node_id, w.s[1].node_id], replicas=[_rep(0)])]
    with pytest.raises(ParameterError, match="describes 1 replicas"):
        w.submit(w.owner, PublishFile(namespace="ns", name="f", size=1, digest=bytes(32),
                                      expires_ms=w.clock() + DAY, slices=bad, content_id=b"c" * 16,
                                      slice_size=1, chunk_size=1))
    same = [SliceInfo(slice_id="0", digest=bytes(32), nodes=[w.s[0].node_id, w.s[1].node_id],
                      replicas=[_rep(0), _rep(0)])]
    with pytest.raises(ParameterError, match="index twice"):
        w.submit(w.owner, PublishFile(namespace="ns", name="f", size=1, digest=bytes(32),
                                      expires_ms=w.clock() + DAY, slices=same, content_id=b"c" * 16,
                                      slice_size=1, chunk_size=1))


def test_a_file_stored_by_content_id_needs_its_sizes(world):
    w = world
    sl = [SliceInfo(slice_id="0", digest=bytes(32), nodes=[w.s[0].node_id, w.s[1].node_id],
                    replicas=[_rep(0), _rep(1)])]
    with pytest.raises(ParameterError, match="slice and chunk sizes"):
        w.submit(w.owner, PublishFile(namespace="ns", name="f", size=1, digest=bytes(32),
                                      expires_ms=w.clock() + DAY, slices=sl, content_id=b"c" * 16))


def test_migrate_slice_needs_a_fresh_replica_index(world):
    w = world
    fid = _publish_net(w)
    move = dict(file_id=fid, slice_id="0", from_node=w.s[0].node_id, to_node=w.s[2].node_id)
    with pytest.raises(ParameterError, match="describe the new one"):
        w.submit(w.owner, MigrateSlice(**move))
    with pytest.raises(ParameterError, match="above every current one"):
        w.submit(w.owner, MigrateSlice(**move, replica=_rep(1)))
    w.submit(w.owner, MigrateSlice(**move, replica=_rep(2)))
    s = w.led.get_file(fid).slice("0")
    assert s.nodes == [w.s[2].node_id, w.s[1].node_id] and [r.index for r in s.replicas] == [2, 1]
    with pytest.raises(Unauthorized):
        w.submit(w.owner2, MigrateSlice(file_id=fid, slice_id="1", from_node=w.s[0].node_id,
                                        to_node=w.s[2].node_id, replica=_rep(5)))


def test_raising_a_namespace_allows_added_replicas(world):
    w = world
    fid = _publish_net(w)
    add = AddReplica(file_id=fid, slice_id="1", node=w.s[3].node_id, replica=_rep(2))
    with pytest.raises(StateError, match="already has the 2 replicas"):
        w.submit(w.owner, add)
    with pytest.raises(ParameterError, match="only be raised"):
        w.submit(w.owner, SetNamespaceReplicas(name="ns", replicas=2))
    with pytest.raises(NotFound):
        w.submit(w.owner, SetNamespaceReplicas(name="nope", replicas=3))
    w.submit(w.owner, SetNamespaceReplicas(name="ns", replicas=3))
    assert w.led.get_namespace(f"{w.owner.node_id}/ns").replicas == 3
    with pytest.raises(ParameterError, match="already holds"):
        w.submit(w.owner, AddReplica(file_id=fid, slice_id="1", node=w.s[0].node_id, replica=_rep(2)))
    w.submit(w.owner, add)
    s = w.led.get_file(fid).slice("1")
    assert s.nodes[-1] == w.s[3].node_id and s.replicas[-1].index == 2
    assert w.s[3].node_id in {n for f in w.led.list_files(node=w.s[3].node_id) for s in f.slices for n in s.nodes}


def test_extend_in_retention_then_expire_and_delete(world):
    w = world
    fid = _publish_net(w, expires_in=DAY)
    with pytest.raises(StateError, match="has not expired"):
        w.submit(w.owner, DeleteFile(file_id=fid))
    w.clock.advance(2 * DAY)  # past its expiry: not live, but its owner may still extend it
    assert not w.led.get_file(fid).is_live(w.clock())
    with pytest.raises(ParameterError, match="into the future"):
        w.submit(w.owner, ExtendFile(file_id=fid, expires_ms=w.clock() - 1))
    w.submit(w.owner, ExtendFile(file_id=fid, expires_ms=w.clock() + DAY))
    assert w.led.get_file(fid).is_live(w.clock())
    w.submit(w.owner, ExpireFile(file_id=fid))
    with pytest.raises(Unauthorized):
        w.submit(w.owner2, DeleteFile(file_id=fid))
    w.submit(w.owner, DeleteFile(file_id=fid))
    assert w.led.get_file(fid).status == "Deleted"
    with pytest.raises(StateError):
        w.submit(w.owner, DeleteFile(file_id=fid))
    with pytest.raises(StateError):
        w.submit(w.owner, ExtendFile(file_id=fid, expires_ms=w.clock() + 5 * DAY))


def test_new_fields_round_trip_canonically():
    ident = NodeIdentity.generate()
    body = PublishFile(namespace="n", name="f", size=1, digest=bytes(32), expires_ms=5,
                       slices=[SliceInfo(slice_id="0", digest=bytes(32), nodes=["a" * 16], replicas=[_rep(3)])],
                       content_id=b"x" * 16, slice_size=7, chunk_size=7)
    tx = decode_tx(sign_tx(ident, body, chain_id=bytes(32)).encode())
    assert tx.body == body
    plain = PublishFile(namespace="n", name="f", size=1, digest=bytes(32), expires_ms=5,
                        slices=[SliceInfo(slice_id="0", digest=bytes(32), nodes=["a" * 16])])
    payload = sign_tx(ident, plain, chain_id=bytes(32)).payload
    # unset storage fields are not encoded, and the rest keeps its old form (description "" included),
    # so files published before the storage network existed still decode canonically
    assert b"content_id" not in payload and b"description" in payload
    assert decode_tx(sign_tx(ident, plain, chain_id=bytes(32)).encode()).body == plain
    assert decode_tx(sign_tx(ident, CreateNamespace(name="a", replicas=1), chain_id=bytes(32)).encode())


# ------------------------------------------------------------------------- signed requests


class _Clock:
    def __init__(self, now: int = 1_700_000_000_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def _pair(skew_ms: int = 60_000):
    a = NodeIdentity.generate()
    clock = _Clock()
    v = RequestVerifier("node-b", {a.node_id: a.public_key_bytes}.get, clock=clock, skew_ms=skew_ms)
    return a, RequestSigner(a, clock=clock), v, clock


def _refusal(v, *args) -> tuple[int, str]:
    with pytest.raises(AuthError) as info:
        v.verify(*args)
    return info.value.status, info.value.reason


def test_a_signed_request_passes_once():
    a, signer, v, _ = _pair()
    h = signer.headers("POST", "/v1/challenges", b"body", to="node-b")
    assert v.verify("POST", "/v1/challenges", h, b"body") == a.node_id
    assert _refusal(v, "POST", "/v1/challenges", h, b"body") == (401, "replayed request (nonce already seen)")


@pytest.mark.parametrize("what", ["method", "path", "body"])
def test_the_signature_binds_method_path_and_body(what):
    _, signer, v, _ = _pair()
    h = signer.headers("PUT", "/v1/replicas/ab/0/0", b"body", to="node-b")
    args = {"method": ("GET", "/v1/replicas/ab/0/0", b"body"), "path": ("PUT", "/v1/replicas/ab/0/1", b"body"),
            "body": ("PUT", "/v1/replicas/ab/0/0", b"bodY")}[what]
    assert _refusal(v, args[0], args[1], h, args[2]) == (401, "bad signature")


def test_stale_and_future_requests_are_refused_at_the_window_edge():
    _, signer, v, clock = _pair(skew_ms=1000)
    h = signer.headers("GET", "/p", to="node-b")
    clock.now += 1001
    assert _refusal(v, "GET", "/p", h, b"")[1].startswith("stale request")
    clock.now -= 1001
    h2 = signer.headers("GET", "/p", to="node-b")
    clock.now -= 1000  # exactly at the edge: accepted
    assert v.verify("GET", "/p", h2, b"")


def test_unsigned_unknown_misaddressed_and_malformed():
    _, signer, v, _ = _pair()
    assert _refusal(v, "GET", "/p", {}, b"")[0] == 401
    h = signer.headers("GET", "/p", to="node-c")
    assert _refusal(v, "GET", "/p", h, b"")[0] == 421
    stranger = RequestSigner(NodeIdentity.generate(), clock=v._clock)
    assert "unknown sender" in _refusal(v, "GET", "/p", stranger.headers("GET", "/p", to="node-b"), b"")[1]
    h = signer.headers("GET", "/p", to="node-b")
    for bad in ({"X-Dtx-Nonce": "zz"}, {"X-Dtx-Time": "soon"}, {"X-Dtx-Signature": "00" * 63}):
        assert _refusal(v, "GET", "/p", {**h, **bad}, b"") == (401, "malformed signature headers")


def test_replay_cache_forgets_only_after_the_window():
    cache = ReplayCache(max_entries=4)
    assert cache.check_and_add("a", b"n1", forget_after_ms=100, now_ms=0)
    assert not cache.check_and_add("a", b"n1", forget_after_ms=100, now_ms=50)
    assert cache.check_and_add("b", b"n1", forget_after_ms=100, now_ms=50)  # per sender
    for i in range(10):
        cache.check_and_add("c", bytes([i]), forget_after_ms=10_000, now_ms=200)
    assert len(cache) <= 4


# ------------------------------------------------------------------------- configuration


def test_config_precedence_toml_env_flags(tmp_path):
    toml = tmp_path / "node.toml"
    toml.write_text('[storage]\nlisten = "127.0.0.1:1"\nheartbeat = 7\ndata-dir = "/d"\nname = "t"\n')
    env = {"DTX_LISTEN": "127.0.0.1:2", "DTX_HEARTBEAT": "8"}
    cfg = StorageNodeConfig.load(toml, env=env, heartbeat=9.0, key=None)
    assert (cfg.listen, cfg.heartbeat, cfg.data_dir, cfg.name) == ("127.0.0.1:2", 9.0, "/d", "t")
    with pytest.raises(ParameterError, match="unknown setting"):
        toml.write_text("colour = 1\n")
        StorageNodeConfig.load(toml, env={})
    with pytest.raises(ParameterError, match="HOST:PORT"):
        StorageNodeConfig.load(None, env={"DTX_LISTEN": "nowhere"})
    with pytest.raises(ParameterError, match="not a float"):
        StorageNodeConfig.load(None, env={"DTX_HEARTBEAT": "often"})


# ------------------------------------------------------------------------- placement


@given(nodes=st.integers(1, 12), replicas=st.integers(1, 6), slices=st.integers(0, 40))
def test_placement_never_puts_two_replicas_of_a_slice_on_one_node(nodes, replicas, slices):
    names = [f"n{i}" for i in range(nodes)]
    if nodes < replicas:
        with pytest.raises(StateError, match=f"only {nodes} healthy storage nodes for {replicas}"):
            choose_placement(names, slices=slices, replicas=replicas)
        return
    load: dict[str, int] = {}
    placement = choose_placement(names, slices=slices, replicas=replicas, load=load)
    assert len(placement) == slices
    assert all(len(set(p)) == replicas and set(p) <= set(names) for p in placement)
    if slices:
        counts = [load.get(n, 0) for n in names]
        assert max(counts) - min(counts) <= 1  # spread evenly


# ------------------------------------------------------------------------- node housekeeping


def test_node_drops_deleted_expired_and_orphaned_replicas(tmp_path):
    """An in-process node (the same factory `dtx storage start` uses) with an injected clock."""
    import os as _os

    from dtxfast.ledger import Heartbeat, MemoryLedger
    from dtxfast.nodes.storage import StorageNodeConfig, build_storage_node
    from dtxfast.protocols.storage import ReplicaId

    clock = Clock()
    led = MemoryLedger(clock=clock)
    me = NodeIdentity.generate()
    owner = NodeIdentity.generate()
    led.submit(me, RegisterNode(role="storage"))
    led.submit(me, Heartbeat())
    led.submit(owner, RegisterNode(role="dataowner"))
    led.submit(owner, CreateNamespace(name="ns", replicas=1))
    cfg = StorageNodeConfig.load(None, env={}, data_dir=str(tmp_path / "d"), retention_days=1, orphan_hours=1)
    node = build_storage_node(cfg, identity=me, ledger=led, clock=clock)

    def publish(cid: bytes, expires: int) -> str:
        s = SliceInfo(slice_id="0", digest=bytes(32), nodes=[me.node_id], replicas=[_rep(0)])
        return led.submit(owner, PublishFile(namespace="ns", name="f", size=10, digest=bytes(32), expires_ms=expires,
                                             slices=[s], content_id=cid, slice_size=10, chunk_size=10)).object_id

    live, old, gone = b"L" * 16, b"O" * 16, b"G" * 16
    publish(live, clock() + 10 * DAY)
    publish(old, clock() + DAY)
    gone_id = publish(gone, clock() + DAY)
    for cid in (live, old, gone):
        node.store.put(ReplicaId(cid, 0, 0), b"x")
    node.store.put(ReplicaId(live, 0, 7), b"orphan")  # a replica no published file places here
    node.store.put(ReplicaId(b"U" * 16, 0, 0), b"unpublished")
    assert node.housekeeping() == 0  # nothing is old enough yet
    clock.advance(DAY + 1)
    led.submit(owner, DeleteFile(file_id=gone_id))  # expired by time: its owner may delete it now
    assert node.housekeeping() == 1 and ReplicaId(gone, 0, 0) not in node.store
    clock.advance(DAY)  # `old` is now past expiry + 1 day of retention
    assert node.housekeeping() == 1 and ReplicaId(old, 0, 0) not in node.store
    for rid in (ReplicaId(live, 0, 7), ReplicaId(b"U" * 16, 0, 0)):  # orphans age by their files' mtime
        p = node.store.path(rid)
        _os.utime(p, (p.stat().st_mtime - 7200, p.stat().st_mtime - 7200))
    assert node.housekeeping() == 2
    assert node.store.list() == [ReplicaId(live, 0, 0)]


def test_a_checked_replica_is_trusted_only_while_its_file_is_unchanged(tmp_path):
    """The node's verified-replica cache: a replica it checked is sent without hashing it again,
    but any change on disk (even one that restores the mtime) makes it check again and refuse."""
    import time as _time

    from dtxfast.errors import MalformedInput
    from dtxfast.ledger import MemoryLedger
    from dtxfast.nodes import storage as node_mod
    from dtxfast.nodes.storage import StorageNodeConfig, build_storage_node
    from dtxfast.protocols.storage import ReplicaId

    cfg = StorageNodeConfig.load(None, env={}, data_dir=str(tmp_path / "d"))
    node = build_storage_node(cfg, identity=NodeIdentity.generate(), ledger=MemoryLedger())
    rid = ReplicaId(b"C" * 16, 0, 1)
    data = os.urandom(5 * 4096 + 16)
    root = MerkleTree.from_bytes(data, 4096).root
    node.store.put(rid, data)

    def check() -> str:
        fobj, got = node._open_checked(rid, len(data), root, 4096)
        if fobj is not None:
            fobj.close()
            return "cached"
        assert got == data
        return "hashed"

    assert check() == "hashed" and check() == "hashed"  # just written: racy, not remembered
    _time.sleep(node_mod._RACY_NS / 1e9 + 0.02)
    assert check() == "hashed" and check() == "cached"
    with pytest.raises(MalformedInput):  # trusted for its own root only: another one is checked, and fails
        node._open_checked(rid, len(data), bytes(32), 4096)
    assert check() == "cached"
    path = node.store.path(rid)
    st = path.stat()
    with open(path, "r+b") as f:  # a byte flipped in place, then the mtime put back
        f.seek(len(data) // 2)
        b = f.read(1)
        f.seek(len(data) // 2)
        f.write(bytes([b[0] ^ 0x04]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_mtime_ns == st.st_mtime_ns and path.stat().st_size == st.st_size
    with pytest.raises(MalformedInput, match="Merkle root"):
        node._open_checked(rid, len(data), root, 4096)
    path.write_bytes(data[:-1])  # truncated
    with pytest.raises(MalformedInput, match="bytes"):
        node._open_checked(rid, len(data), root, 4096)
    node.store.put(rid, data)  # stored again (a new file): checked again before it is trusted
    assert check() == "hashed"


def test_node_lookups_are_kept_only_while_the_ledger_says_the_same(tmp_path):
    """A node keeps roles, file records and content owners between requests, but sees a sender
    registered, or a file changed, in a later block at once (the next request)."""
    import threading

    from dtxfast.ledger import MemoryLedger
    from dtxfast.ledger.records import FileStatus
    from dtxfast.nodes.storage import build_storage_node

    led = MemoryLedger()
    me, owner, other = NodeIdentity.generate(), NodeIdentity.generate(), NodeIdentity.generate()
    led.submit(me, RegisterNode(role="storage"))
    cfg = StorageNodeConfig.load(None, env={}, data_dir=str(tmp_path / "d"))
    node = build_storage_node(cfg, identity=me, ledger=led)
    assert node._role(owner.node_id) is None  # not registered: not remembered either
    led.submit(owner, RegisterNode(role="dataowner"))
    assert node._role(owner.node_id) == "dataowner"
    led.submit(owner, CreateNamespace(name="ns", replicas=1))
    s = SliceInfo(slice_id="0", digest=bytes(32), nodes=[me.node_id], replicas=[_rep(0)])
    fid = led.submit(owner, PublishFile(namespace="ns", name="f", size=10, digest=bytes(32),
                                        expires_ms=led.now_ms() + DAY, slices=[s], content_id=b"c" * 16,
                                        slice_size=10, chunk_size=10)).object_id
    first = node._file(fid)
    assert node._file(fid) is first  # unchanged: not decoded again
    led.submit(owner, ExtendFile(file_id=fid, expires_ms=first.expires_ms + DAY))
    assert node._file(fid).expires_ms == first.expires_ms + DAY
    led.submit(owner, ExpireFile(file_id=fid))
    assert node._file(fid).status == FileStatus.EXPIRED
    with pytest.raises(NotFound):
        node._file("0" * 32)


def test_two_owners_racing_for_a_new_content_id_one_wins_for_good(tmp_path):
    """Through the node's own HTTP server (in process, real loopback): of two data owners storing
    under one new content id at once, exactly one is accepted, and only it, ever after."""
    import asyncio

    import aiohttp

    from dtxfast.ledger import MemoryLedger
    from dtxfast.nodes.storage import build_storage_node

    led = MemoryLedger()
    me, a, b = NodeIdentity.generate(), NodeIdentity.generate(), NodeIdentity.generate()
    for who in (a, b):
        led.submit(who, RegisterNode(role="dataowner"))
    cfg = StorageNodeConfig.load(None, env={}, data_dir=str(tmp_path / "d"), listen="127.0.0.1:0")
    node = build_storage_node(cfg, identity=me, ledger=led)
    body = os.urandom(100_000)

    async def main() -> list[list[int]]:
        url = await node.start()
        rounds = []
        try:
            async with aiohttp.ClientSession() as http:
                async def put(who: NodeIdentity, r: int) -> int:
                    path = f"/v1/replicas/{'ab' * 16}/0/{r}"
                    h = RequestSigner(who).headers("PUT", path, body, to=me.node_id)
                    async with http.put(url + path, data=body, headers=h) as resp:
                        return resp.status
                for r in range(3):
                    rounds.append(list(await asyncio.gather(put(a, r), put(b, r))))
        finally:
            await node.stop()
        return rounds

    rounds = asyncio.run(main())
    assert sorted(rounds[0]) == [201, 403]
    assert rounds[1] == rounds[2] == rounds[0]  # the winner stays the owner (the mark is never rewritten)
    winner = (a, b)[rounds[0].index(201)]
    assert node._owner_mark(bytes.fromhex("ab" * 16)).read_text() == winner.node_id


def _gmac_pair():
    a, b, e = NodeIdentity.generate(), NodeIdentity.generate(), NodeIdentity.generate()
    keys = {x.node_id: x.public_key_bytes for x in (a, b, e)}.get
    clock = _Clock()
    v = RequestVerifier(b.node_id, keys, clock=clock, identity=b)
    return a, b, e, clock, v


def test_a_gmac_body_passes_once_and_binds_the_body_to_its_two_nodes():
    from dtxfast.transport.http_auth import GMAC, H_DIGEST

    a, b, e, clock, v = _gmac_pair()
    body = os.urandom(200_000)
    sign = RequestSigner(a, clock=clock)
    h = sign.headers("PUT", "/r", body, to=b.node_id, digest_kind=GMAC, peer_key=b.public_key_bytes)
    assert h[H_DIGEST] == GMAC
    assert v.verify("PUT", "/r", h, body) == a.node_id
    assert _refusal(v, "PUT", "/r", h, body)[1].startswith("replayed")
    h = sign.headers("PUT", "/r", body, to=b.node_id, digest_kind=GMAC, peer_key=b.public_key_bytes)
    for at in (0, len(body) // 2, len(body) - 1):  # a byte changed in transit
        forged = bytearray(body)
        forged[at] ^= 0x80
        assert _refusal(v, "PUT", "/r", h, bytes(forged)) == (401, "bad signature")
    assert _refusal(v, "PUT", "/r", h, body[:-1]) == (401, "bad signature")
    # the kind is signed: the same signature does not pass as one over a SHA-256 or a Merkle root
    for kind in ("sha256", "merkle-4096"):
        assert _refusal(v, "PUT", "/r", {**h, H_DIGEST: kind}, body) == (401, "bad signature")
    # a MAC made with a key the sender shares with another node (e) does not pass at b
    h_e = sign.headers("PUT", "/r", body, to=b.node_id, digest_kind=GMAC, peer_key=e.public_key_bytes)
    assert _refusal(v, "PUT", "/r", h_e, body) == (401, "bad signature")
    # a third node (e) that sees the body and the headers cannot re-MAC another body: its pair
    # key with b is not a's, and a's signature covers the tag
    forged = os.urandom(len(body))
    h_x = RequestSigner(e, clock=clock).headers("PUT", "/r", forged, to=b.node_id, digest_kind=GMAC,
                                                peer_key=b.public_key_bytes)
    assert _refusal(v, "PUT", "/r", {**h, "X-Dtx-Signature": h_x["X-Dtx-Signature"]}, forged) == (401, "bad signature")
    assert v.verify("PUT", "/r", h, body) == a.node_id  # the untouched request still passes once
    # a verifier that was not given its key refuses the kind instead of skipping the check
    plain = RequestVerifier(b.node_id, {a.node_id: a.public_key_bytes}.get, clock=clock)
    h = sign.headers("PUT", "/r", body, to=b.node_id, digest_kind=GMAC, peer_key=b.public_key_bytes)
    assert _refusal(plain, "PUT", "/r", h, body)[0] == 401
    with pytest.raises(ParameterError):
        sign.headers("PUT", "/r", body, to=b.node_id, digest_kind=GMAC)
    with pytest.raises(ParameterError):
        RequestVerifier(a.node_id, {}.get, identity=b)


@given(body=st.binary(max_size=5000), nonce=st.binary(min_size=16, max_size=16))
def test_body_mac_is_the_same_on_both_aead_backends_and_at_both_ends(body, nonce):
    from Crypto.Cipher import AES

    from dtxfast.crypto.aead import hkdf_sha256
    from dtxfast.transport import http_auth

    a, b = _MAC_IDS
    tag = http_auth.body_mac(a.pair_key(b.public_key), nonce, a.node_id, b.node_id, body)
    assert tag == http_auth.body_mac(b.pair_key(a.public_key), nonce, a.node_id, b.node_id, body)
    # the definition, computed with pycryptodome's GCM: GMAC of the body under the per-request key
    key = hkdf_sha256(a.pair_key(b.public_key), nonce,
                      b"dtxfast/http-body-mac/v1" + a.node_id.encode() + b"\x00" + b.node_id.encode(), 32)
    c = AES.new(key, AES.MODE_GCM, nonce=bytes(12), mac_len=16)
    c.update(body)
    assert tag == c.digest()
    assert tag != http_auth.body_mac(a.pair_key(b.public_key), nonce, b.node_id, a.node_id, body)  # direction


_MAC_IDS = (NodeIdentity.generate(), NodeIdentity.generate())


def test_a_digest_computed_elsewhere_signs_the_same():
    a, signer, v, _ = _pair()
    body = b"replica bytes" * 1000
    h = signer.headers("PUT", "/r", body, to="node-b", body_digest=hashlib.sha256(body).digest())
    assert v.verify("PUT", "/r", h, body) == a.node_id
    h = signer.headers("PUT", "/r", body, to="node-b", body_digest=hashlib.sha256(b"other").digest())
    assert _refusal(v, "PUT", "/r", h, body) == (401, "bad signature")
    h = signer.headers("PUT", "/r", body, to="node-b")  # the verifier's own digest must match a given one
    with pytest.raises(AuthError, match="bad signature"):
        v.verify("PUT", "/r", h, body, body_digest=hashlib.sha256(b"lie").digest())


# ------------------------------------------------------------------------- Merkle-root body digests


def test_a_request_signed_over_the_merkle_root_passes_once_and_binds_the_body():
    from dtxfast.crypto.merkle import MerkleTree

    a, signer, v, _ = _pair()
    body = os.urandom(3 * 4096 + 16)
    root = MerkleTree.from_bytes(body, 4096).root
    h = signer.headers("PUT", "/r", body, to="node-b", body_digest=root, digest_kind="merkle-4096")
    assert h["X-Dtx-Digest"] == "merkle-4096"
    assert v.verify("PUT", "/r", h, body) == a.node_id
    assert _refusal(v, "PUT", "/r", h, body)[1].startswith("replayed")
    # computed by the signer itself, it is the same root
    assert signer.headers("PUT", "/r", body, to="node-b", digest_kind="merkle-4096")["X-Dtx-Digest"] == "merkle-4096"
    flipped = bytearray(body)
    flipped[5000] ^= 1
    h = signer.headers("PUT", "/r", body, to="node-b", body_digest=root, digest_kind="merkle-4096")
    assert _refusal(v, "PUT", "/r", h, bytes(flipped)) == (401, "bad signature")
    # the same root under another leaf size is another digest
    h = signer.headers("PUT", "/r", body, to="node-b", body_digest=root, digest_kind="merkle-4096")
    assert _refusal(v, "PUT", "/r", {**h, "X-Dtx-Digest": "merkle-2048"}, body) == (401, "bad signature")


def test_a_root_signature_cannot_pass_for_a_sha256_of_a_forged_body():
    # SHA-256(0x01 || left || right) is the root: dropping the digest header and sending that
    # 65-byte body instead of the replica must not verify (the kind is inside the signed message)
    from dtxfast.crypto.merkle import NODE_PREFIX, MerkleTree, leaf_hash

    _, signer, v, _ = _pair()
    body = os.urandom(2 * 4096)
    tree = MerkleTree.from_bytes(body, 4096)
    forged = NODE_PREFIX + leaf_hash(body[:4096]) + leaf_hash(body[4096:])
    assert hashlib.sha256(forged).digest() == tree.root
    h = signer.headers("PUT", "/r", body, to="node-b", body_digest=tree.root, digest_kind="merkle-4096")
    stripped = {k: x for k, x in h.items() if k != "X-Dtx-Digest"}
    assert _refusal(v, "PUT", "/r", stripped, forged) == (401, "bad signature")
    assert _refusal(v, "PUT", "/r", {**h, "X-Dtx-Digest": "sha256"}, forged) == (401, "bad signature")


@pytest.mark.parametrize("kind", ["merkle-16", "merkle-0", "merkle-04096", "merkle-x", "md5", "merkle-99999999999"])
def test_unknown_or_too_fine_digest_kinds_are_refused(kind):
    # leaves under 1 KiB would let anyone make a node hash a big body many times over
    _, signer, v, _ = _pair()
    h = signer.headers("PUT", "/r", b"body", to="node-b")
    status, reason = _refusal(v, "PUT", "/r", {**h, "X-Dtx-Digest": kind}, b"body")
    assert status == 401 and reason.startswith("unknown body digest kind")
    with pytest.raises(AuthError):
        signer.headers("PUT", "/r", b"body", to="node-b", digest_kind=kind)


def test_large_bodies_reach_the_handler_exact_through_reused_buffers():
    # bodies of 64 KiB and more are received into pooled buffers: a shorter body after a longer
    # one, and bodies of every size class, must reach the handler byte for byte, and a body
    # that fails its signature must not reach it at all
    import asyncio

    import aiohttp
    from aiohttp import web

    from dtxfast.transport.http_auth import auth_middleware

    a = NodeIdentity.generate()
    v = RequestVerifier("node-b", {a.node_id: a.public_key_bytes}.get)
    signer = RequestSigner(a)
    seen: list[bytes] = []

    async def put(request):
        seen.append(bytes(request["dtx_body"]))
        return web.json_response({"n": len(request["dtx_body"])})

    async def main() -> None:
        app = web.Application(client_max_size=1 << 24, middlewares=[auth_middleware(v, max_body=1 << 24)])
        app.router.add_put("/r", put)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/r"
        try:
            async with aiohttp.ClientSession() as session:
                bodies = [os.urandom(n) for n in (3 << 20, 70_000, 1 << 16, (1 << 20) + 1, 3 << 20, 100, 200_000)]
                for body in bodies:
                    kind = "merkle-4096" if len(body) % 2 else "sha256"
                    h = signer.headers("PUT", "/r", body, to="node-b", digest_kind=kind)
                    async with session.put(url, data=body, headers=h) as resp:
                        assert resp.status == 200, await resp.text()
                assert seen == bodies
                body = os.urandom(1 << 17)
                h = signer.headers("PUT", "/r", body, to="node-b")
                async with session.put(url, data=body[:-1] + b"\0", headers=h) as resp:
                    assert resp.status == 401
                assert len(seen) == len(bodies)
        finally:
            await runner.cleanup()

    asyncio.run(main())


def test_a_node_is_alive_on_the_ledger_when_it_says_it_is_ready(tmp_path):
    """The node's first heartbeat is on the ledger when ``start`` returns (when ``dtx storage
    start`` prints its readiness line), not later from the background loop: a client that
    uploads at once sees it alive. The heartbeat period is an hour here, so only the first
    heartbeat can make it alive; checked before the event loop runs anything else."""
    import asyncio

    from dtxfast.ledger import MemoryLedger
    from dtxfast.nodes.storage import build_storage_node
    from dtxfast.storage.network import node_statuses

    led = MemoryLedger()
    me = NodeIdentity.generate()
    cfg = StorageNodeConfig.load(None, env={}, data_dir=str(tmp_path / "d"), listen="127.0.0.1:0", heartbeat=3600)
    node = build_storage_node(cfg, identity=me, ledger=led)

    async def main() -> bool:
        await node.start()
        try:
            status = node_statuses(led, liveness=10.0)[me.node_id]  # no await since start returned
            return status.alive and status.healthy
        finally:
            await node.stop()

    assert asyncio.run(main())
