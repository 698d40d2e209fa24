"""Ledger benchmarks: ``ledger.append`` and ``ledger.verify`` in entries/s, with their floors.

* ``ledger.append``: a node signs a heartbeat and the ledger appends it (signature check, replay
  check, contract, one block, one SQLite transaction), one entry per block (``dtxfast``), or 100
  per block with ``append_many`` (``dtxfast-block100``); ``dtxfast-memory`` is the in-memory
  backend. Floor ``floor-sqlite-sign``: one Ed25519 signature of the same payload bytes plus a raw
  INSERT of the signed bytes in its own transaction, same file settings (WAL,
  synchronous=NORMAL); ``floor-sqlite-sign-verify`` adds the signature check a ledger cannot skip.
  Appending is sequential (one SQLite writer): every row runs on one thread.
  ``dtxfast-etcd`` / ``dtxfast-etcd-block100``: the same appends on :class:`EtcdLedger` over a
  3-member etcd cluster on loopback; floor ``floor-etcd``: the etcd transaction one append sends
  (same key shapes, value bytes and create-if-absent guards) sent raw through the same HTTP client,
  no signing, no contract. The etcd members run on the same cores as the client.
* ``ledger.failover``: a 3-member cluster's leader is SIGKILLed; seconds until the next append is
  acknowledged (election plus the client moving to a live member).
* ``ledger.verify``: :meth:`Ledger.verify_chain` from genesis (every block hash, link and
  signature, and the records against the tip's state root), in this process (1 thread) and with one worker process per core (``threads``
  column, spawn included). Floors: ``floor-verify`` is raw Ed25519 verification of the same
  signatures in one process; on more than one core, ``floor-verify`` on all cores splits them over
  as many threads (OpenSSL's verify releases the GIL), the same-thread floor of the parallel row.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
from concurrent.futures import ThreadPoolExecutor

import pytest

from dtxfast._backend import num_threads
from dtxfast.crypto.signatures import check_signatures
from dtxfast.ledger import Heartbeat, MemoryLedger, NodeIdentity, RegisterNode, SQLiteLedger
from dtxfast.ledger.tx import SignedTx, sign_tx, signing_message

from ._util import measure, sizes

APPEND_SIZES = sizes([2000], [200])
VERIFY_SIZES = sizes([10_000, 100_000], [1000])
NODE = NodeIdentity.from_seed(bytes(range(32)))
_tmp = tempfile.TemporaryDirectory(prefix="dtx-bench-ledger-")
_counter = [0]


def _fresh_path() -> str:
    _counter[0] += 1
    return os.path.join(_tmp.name, f"l{_counter[0]}.db")


def _new_sqlite() -> SQLiteLedger:
    led = SQLiteLedger(_fresh_path(), create=True, max_skew_ms=None)
    led.submit(NODE, RegisterNode(role="storage", address="127.0.0.1:1"))
    return led


def _append_loop(led, n):
    for _ in range(n):
        led.submit(NODE, Heartbeat())
    led.close()


@pytest.mark.benchmark(group="ledger.append")
@pytest.mark.parametrize("n", APPEND_SIZES)
def test_append_sqlite(benchmark, n):
    measure(benchmark, _append_loop, impl="dtxfast", size=n, unit="entries/s", per=n, threads=1,
            setup=lambda: ((_new_sqlite(), n), {}))


@pytest.mark.benchmark(group="ledger.append")
@pytest.mark.parametrize("n", APPEND_SIZES)
def test_append_sqlite_batched(benchmark, n):
    def run(led):
        for i in range(0, n, 100):
            led.append_many([led.sign(NODE, Heartbeat()) for _ in range(min(100, n - i))])
        led.close()

    measure(benchmark, run, impl="dtxfast-block100", size=n, unit="entries/s", per=n, threads=1,
            setup=lambda: ((_new_sqlite(),), {}), note="append_many, 100 entries per block")


@pytest.mark.benchmark(group="ledger.append")
@pytest.mark.parametrize("n", APPEND_SIZES)
def test_append_memory(benchmark, n):
    def setup():
        led = MemoryLedger(max_skew_ms=None)
        led.submit(NODE, RegisterNode(role="storage"))
        return (led, n), {}

    measure(benchmark, _append_loop, impl="dtxfast-memory", size=n, unit="entries/s", per=n,
            threads=1, setup=setup)


@pytest.mark.benchmark(group="ledger.append")
@pytest.mark.parametrize("n", APPEND_SIZES)
@pytest.mark.parametrize("with_verify", [False, True], ids=["sign", "sign-verify"])
def test_append_floor(benchmark, n, with_verify):
    """Sign the same payload bytes and INSERT the signed bytes, one transaction each; the
    ``floor-sqlite-sign-verify`` row also verifies each signature, as any ledger must."""
    led = _new_sqlite()
    payloads = [led.sign(NODE, Heartbeat()).payload for _ in range(n)]
    led.close()

    def setup():
        conn = sqlite3.connect(_fresh_path(), isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("CREATE TABLE entries (seq INTEGER PRIMARY KEY, raw BLOB NOT NULL)")
        return (conn,), {}

    pk = [NODE.public_key_bytes]

    def run(conn):
        for p in payloads:
            msg = signing_message(p)
            sig = NODE.sign(msg)
            if with_verify and not check_signatures(pk, [sig], [msg])[0]:
                raise AssertionError("signature does not verify")
            raw = SignedTx(p, sig).encode()
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO entries (raw) VALUES (?)", (raw,))
            conn.execute("COMMIT")
        conn.close()

    impl = "floor-sqlite-sign-verify" if with_verify else "floor-sqlite-sign"
    measure(benchmark, run, impl=impl, size=n, unit="entries/s", per=n, threads=1, setup=setup)


_built: dict[int, tuple[str, list[SignedTx]]] = {}


def _built_ledger(n: int) -> tuple[str, list[SignedTx]]:
    """A SQLite ledger with ``n`` heartbeat entries (1000 per block), built once."""
    if n not in _built:
        path = _fresh_path()
        led = SQLiteLedger(path, create=True, max_skew_ms=None)
        led.submit(NODE, RegisterNode(role="storage"))
        txs = []
        for i in range(0, n - 1, 1000):
            chunk = [sign_tx(NODE, Heartbeat(), chain_id=led.chain_id)
                     for _ in range(min(1000, n - 1 - i))]
            led.append_many(chunk)
            txs += chunk
        led.close()
        _built[n] = (path, txs)
    return _built[n]


@pytest.mark.benchmark(group="ledger.verify")
@pytest.mark.parametrize("n", VERIFY_SIZES)
def test_verify_chain(benchmark, n):
    path, _ = _built_ledger(n)

    def run():
        led = SQLiteLedger(path, max_skew_ms=None)
        rep = led.verify_chain()
        led.close()
        assert rep.entries == n

    measure(benchmark, run, impl="dtxfast", size=n, unit="entries/s", per=n, threads=1,
            rounds=1 if n >= 100_000 else 3)


@pytest.mark.benchmark(group="ledger.verify")
@pytest.mark.parametrize("n", VERIFY_SIZES)
def test_verify_chain_parallel(benchmark, n):
    workers = num_threads()
    if workers < 2:
        pytest.skip("one core")
    path, _ = _built_ledger(n)

    def run():
        led = SQLiteLedger(path, max_skew_ms=None)
        rep = led.verify_chain(workers=workers)
        led.close()
        assert rep.entries == n

    measure(benchmark, run, impl="dtxfast", size=n, unit="entries/s", per=n, threads=workers,
            rounds=1 if n >= 100_000 else 3, note="worker processes, spawn included")


@pytest.mark.benchmark(group="ledger.verify")
@pytest.mark.parametrize("threads", [1] + ([num_threads()] if num_threads() > 1 else []))
@pytest.mark.parametrize("n", VERIFY_SIZES)
def test_verify_floor(benchmark, n, threads):
    _, txs = _built_ledger(n)
    keys = [NODE.public_key_bytes] * len(txs)
    sigs = [t.signature for t in txs]
    msgs = [signing_message(t.payload) for t in txs]
    parts = [slice(i, len(txs), threads) for i in range(threads)]
    pool = ThreadPoolExecutor(threads) if threads > 1 else None

    def run():
        if pool is None:
            assert all(check_signatures(keys, sigs, msgs))
        else:
            assert all(all(ok) for ok in pool.map(lambda s: check_signatures(keys[s], sigs[s], msgs[s]), parts))

    try:
        measure(benchmark, run, impl="floor-verify", size=n, unit="entries/s", per=len(txs), threads=threads,
                rounds=1 if n >= 100_000 else 3)
    finally:
        if pool is not None:
            pool.shutdown()


# --- the replicated ledger: a 3-member etcd cluster on loopback ----------------------------------

ETCD_SIZES = sizes([500], [50])
ETCD_BATCH_SIZES = sizes([3000], [300])


@pytest.fixture(scope="module")
def etcd3():
    """A 3-member etcd cluster on loopback for this module's etcd rows (stopped at the end)."""
    from dtxfast.ledger.etcd_local import LocalEtcdCluster, etcd_binary

    if etcd_binary() is None:
        pytest.skip("etcd is not installed (apt-get install etcd-server)")
    cluster = LocalEtcdCluster(3)
    yield cluster
    cluster.stop()


def _new_etcd(cluster):
    from dtxfast.ledger.etcd import EtcdLedger

    _counter[0] += 1
    led = EtcdLedger(cluster.url(f"bench{os.getpid()}x{_counter[0]}"), create=True, max_skew_ms=None)
    led.submit(NODE, RegisterNode(role="storage", address="127.0.0.1:1"))
    return led


@pytest.mark.benchmark(group="ledger.append")
@pytest.mark.parametrize("n", ETCD_SIZES)
def test_append_etcd(benchmark, etcd3, n):
    measure(benchmark, _append_loop, impl="dtxfast-etcd", size=n, unit="entries/s", per=n,
            threads=1, setup=lambda: ((_new_etcd(etcd3), n), {}),
            note="3 etcd members on loopback, one append per block, one client thread")


@pytest.mark.benchmark(group="ledger.append")
@pytest.mark.parametrize("n", ETCD_BATCH_SIZES)
def test_append_etcd_batched(benchmark, etcd3, n):
    def run(led):
        for i in range(0, n, 100):
            led.append_many([led.sign(NODE, Heartbeat()) for _ in range(min(100, n - i))])
        led.close()

    measure(benchmark, run, impl="dtxfast-etcd-block100", size=n, unit="entries/s", per=n,
            threads=1, setup=lambda: ((_new_etcd(etcd3),), {}),
            note="append_many, 100 entries per block, 3 etcd members")


@pytest.mark.benchmark(group="ledger.append")
@pytest.mark.parametrize("n", ETCD_SIZES)
def test_append_etcd_floor(benchmark, etcd3, n):
    """The etcd transaction one append sends (same keys' shapes, same value bytes, the same
    create-if-absent guards), sent raw through the same HTTP client: no signing, no contract."""
    from dtxfast.ledger import etcd as etcd_mod

    led = _new_etcd(etcd3)
    sent: list[dict] = []
    orig = etcd_mod._Client.call

    def spy(self, path, body, **kw):
        if path == "/v3/kv/txn":
            sent.append(body)
        return orig(self, path, body, **kw)

    etcd_mod._Client.call = spy
    try:
        led.submit(NODE, Heartbeat())
    finally:
        etcd_mod._Client.call = orig
    template = sent[-1]
    client = led._c

    def fresh(key: str, i: int) -> str:
        return etcd_mod._b64(etcd_mod._unb64(key) + f"/floor{i}".encode())

    bodies = []
    for i in range(n):
        bodies.append({
            "compare": [{**c, "key": fresh(c["key"], i)} for c in template["compare"]],
            "success": [{k: {**op, "key": fresh(op["key"], i)} for k, op in o.items()}
                        for o in template["success"]],
        })

    def run():
        for body in bodies:
            if not client.call("/v3/kv/txn", body).get("succeeded"):
                raise AssertionError("floor transaction refused")

    counter = [0]

    def setup():  # fresh keys each round, so every guard passes as in the real appends
        counter[0] += 1
        for b in bodies:
            for c in b["compare"]:
                c["key"] = etcd_mod._b64(etcd_mod._unb64(c["key"]) + b"r")
            for o in b["success"]:
                for op in o.values():
                    op["key"] = etcd_mod._b64(etcd_mod._unb64(op["key"]) + b"r")
        return (), {}

    size = len(json.dumps(template))
    measure(benchmark, run, impl="floor-etcd", size=n, unit="entries/s", per=n, threads=1,
            ref="dtxfast-etcd",
            setup=setup, note=f"raw etcd txns of one append's shape ({size} B as JSON), same client")


@pytest.mark.benchmark(group="ledger.failover")
def test_etcd_failover(benchmark):
    """SIGKILL the leader of a 3-member cluster, then time until the next append is acknowledged
    (election, the client moving to a live member, the append); the member is restarted between
    rounds."""
    from dtxfast.ledger.etcd import EtcdLedger
    from dtxfast.ledger.etcd_local import LocalEtcdCluster, etcd_binary

    if etcd_binary() is None:
        pytest.skip("etcd is not installed (apt-get install etcd-server)")
    cluster = LocalEtcdCluster(3)
    try:
        led = EtcdLedger(cluster.url("failover"), create=True, max_skew_ms=None)
        led.submit(NODE, RegisterNode(role="storage"))
        dead: list[int] = []

        def setup():
            for i in dead:
                cluster.restart(i)
            dead.clear()
            for _ in range(20):
                led.submit(NODE, Heartbeat())
            return (cluster.leader(),), {}

        def run(leader):
            cluster.kill(leader)
            dead.append(leader)
            led.submit(NODE, Heartbeat())

        measure(benchmark, run, impl="dtxfast-etcd", size=1, unit="s", rounds=5, threads=1,
                setup=setup, note="leader SIGKILL -> next acknowledged append (3 members, "
                                  "election timeout 500 ms, request timeout 1 s)")
        led.close()
    finally:
        cluster.stop()
