"""Block headers commit to the contract state: the LtHash, and the attacks it must catch.

Attacks tried on every backend: a record edited, added or removed behind the ledger's back (caught
by a plain ``verify_chain``, no replay), a dishonest writer's block whose header lies about the
state (caught by the replay at that height), a block that drops the state root. Old chains,
written before headers carried a state root, keep their hashes (fixed vectors below).
"""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from ledger_helpers import BACKENDS, ETCD, Clock, World, make_ledger, tamper_record

from dtxfast.ledger import ChainCorrupted, Heartbeat, RegisterNode
from dtxfast.ledger.block import GENESIS_PREV, Block, BlockHeader, Entry, tx_root
from dtxfast.ledger.records import encode_record
from dtxfast.ledger.statehash import EMPTY_ROOT, STATE_KEY, STATE_KIND, StateHash, StateTracker

# --- the hash ---------------------------------------------------------------------------------

records = st.dictionaries(st.tuples(st.sampled_from(["node", "file", "task"]), st.text(max_size=8)),
                          st.binary(max_size=40), max_size=12)


@given(records, st.randoms(use_true_random=False))
def test_order_does_not_matter(recs, rnd):
    items = [(k, key, v) for (k, key), v in recs.items()]
    shuffled = list(items)
    rnd.shuffle(shuffled)
    assert StateHash.from_records(items).root() == StateHash.from_records(shuffled).root()


@given(records, records)
def test_incremental_equals_from_scratch(before, after):
    acc = StateHash.from_records((k, key, v) for (k, key), v in before.items())
    for k in set(before) | set(after):
        acc.update(k[0], k[1], before.get(k), after.get(k))
    want = StateHash.from_records((k, key, v) for (k, key), v in after.items())
    assert acc.root() == want.root()
    assert StateHash.from_bytes(acc.to_bytes()).root() == want.root()


@given(records.filter(bool), st.data())
def test_any_change_changes_the_root(recs, data):
    items = sorted((k, key, v) for (k, key), v in recs.items())
    root = StateHash.from_records(items).root()
    i = data.draw(st.integers(0, len(items) - 1))
    kind, key, value = items[i]
    what = data.draw(st.sampled_from(["value", "key", "drop", "dup"]))
    changed = list(items)
    if what == "value":
        changed[i] = (kind, key, value + b"\x00")
    elif what == "key":
        changed[i] = (kind, key + "x", value)
    elif what == "drop":
        del changed[i]
    else:  # the same record twice is another multiset
        changed.append(items[i])
    if sorted(changed) != items:
        assert StateHash.from_records(changed).root() != root


def test_empty_root_and_tracker_reads_old_values_once():
    from dtxfast.ledger.backend import MemoryState, MemoryTxn

    assert StateHash().root() == EMPTY_ROOT
    state = MemoryState()
    t0 = MemoryTxn(state)
    t0.put("node", "a", b"1", [])
    t0.commit()
    acc = StateHash.from_records([("node", "a", b"1")])
    tr = StateTracker(MemoryTxn(state), acc)
    assert tr.get("node", "a") == b"1"
    tr.put("node", "a", b"2", [])
    tr.put("node", "a", b"3", [])  # two writes in one block: old is still b"1"
    tr.put("node", "b", b"4", [])
    tr.apply()
    assert acc.root() == StateHash.from_records([("node", "a", b"3"), ("node", "b", b"4")]).root()
    with pytest.raises(ValueError):
        StateHash.from_bytes(b"short")


def test_headers_without_state_root_keep_their_old_hashes():
    # computed with the block format before state roots (commit 0d42071): msgpack arrays of six
    legacy = BlockHeader(7, bytes(range(32)), 1_700_000_000_000, bytes(32), 3)
    assert legacy.hash().hex() == "573ed6aca6f47d4a1f5834bcb43f7ad7bf04d5cbbf3e8b33fdd226f8afb19752"
    genesis = BlockHeader(0, GENESIS_PREV, 1_700_000_000_000, bytes(32), 0,
                          b"dtxfast-genesis-v1" + bytes(16))
    assert genesis.hash().hex() == "4e82b13e435c3946352b553b050402839af5d965a1b8ec4be20b252ac85d545f"
    assert len(msgspec.msgpack.decode(legacy.encode())) == 6
    new = BlockHeader(7, bytes(32), 1, bytes(32), 3, state_root=EMPTY_ROOT)
    assert BlockHeader.decode(new.encode()) == new and new.hash() != legacy.hash()


# --- on every backend -------------------------------------------------------------------------


@pytest.fixture(params=BACKENDS)
def world(request, tmp_path):
    clock = Clock()
    if request.param == "etcd":
        ETCD["cluster"] = request.getfixturevalue("etcd_cluster")
    led = make_ledger(request.param, tmp_path, clock)
    yield World(led, clock)
    led.close()


def test_every_header_commits_to_the_state(world):
    led = world.led
    world.ready_task()
    for b in led.blocks():
        assert len(b.header.state_root) == 32
    assert led.block(0).header.state_root == EMPTY_ROOT
    assert led.block(led.height).header.state_root == led.state_hash().root()
    led.verify_chain(replay=True)


def test_a_record_edited_behind_the_ledger_is_caught_without_replay(world):
    led = world.led
    nid = world.s[0].node_id
    node = led.get_node(nid)
    led.verify_chain()
    node.address = "10.6.6.6:1"
    tamper_record(led, "node", nid, encode_record(node))
    with pytest.raises(ChainCorrupted, match="state root"):
        led.verify_chain()


def test_added_and_removed_records_are_caught(tmp_path):
    from dtxfast.ledger import SQLiteLedger

    clock = Clock()
    led = SQLiteLedger(tmp_path / "l.db", create=True, clock=clock)
    w = World(led, clock)
    led.verify_chain()
    c = led._conn()
    c.execute("INSERT INTO objects (kind, key, value, terms) VALUES ('node', 'ghost', x'00', x'90')")
    with pytest.raises(ChainCorrupted, match="state root"):
        led.verify_chain()
    c.execute("DELETE FROM objects WHERE kind='node' AND key='ghost'")
    led.verify_chain()  # back to the committed state
    c.execute("DELETE FROM objects WHERE kind='node' AND key=?", (w.ex1.node_id,))
    with pytest.raises(ChainCorrupted, match="state root"):
        led.verify_chain()
    led.close()


def _forge(led, stxs, *, root: bytes | None) -> int:
    """A dishonest writer: runs nothing, writes a block whose header claims ``root``."""
    with led._write() as w:
        h, prev = w.tip()
        raws = [s.encode() for s in stxs]
        header = BlockHeader(h + 1, prev, led.now_ms(), tx_root(raws), len(raws),
                             state_root=root or b"")
        entries = [Entry(h + 1, i, s.tx_id, s.unsigned()) for i, s in enumerate(stxs)]
        w.add_block(Block(header, header.hash(), raws), entries)
    return h + 1


def test_a_header_lying_about_the_state_is_caught_by_replay(world):
    led = world.led
    # a valid heartbeat, but the writer skipped the contract and claims the old state (the
    # records do not move, so the tip check passes): the replay sees the state the heartbeat
    # makes and names this block
    with led._write() as w:
        stale = StateHash.from_bytes(w.get(STATE_KIND, STATE_KEY)).root()
    bad = _forge(led, [led.sign(world.s[0], Heartbeat())], root=stale)
    led.verify_chain()
    with pytest.raises(ChainCorrupted) as info:
        led.verify_chain(replay=True)
    assert info.value.height == bad and "state root" in info.value.reason


def test_a_block_without_state_root_after_ones_with_is_caught(world):
    led = world.led
    bad = _forge(led, [led.sign(world.s[0], RegisterNode(role="storage"))], root=None)
    with pytest.raises(ChainCorrupted) as info:
        led.verify_chain()
    assert info.value.height == bad and "no state root" in info.value.reason
