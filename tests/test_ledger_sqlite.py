"""SQLite backend: persistence, crash safety (SIGKILL), two concurrent processes, tampering via
the CLI, and the ``dtx`` ledger commands."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from ledger_helpers import CHILD, Clock, World, ident

from dtxfast.cli import main
from dtxfast.errors import MalformedInput, NotFound
from dtxfast.ledger import ChainCorrupted, Heartbeat, RegisterNode, SQLiteLedger, open_ledger


def _child(path, who, count, durability="normal"):
    return subprocess.Popen([sys.executable, "-c", CHILD, str(path), who.private_key.to_bytes().hex(),
                             str(count), durability],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _registered(path, *names):
    led = SQLiteLedger(path, create=True)
    ids = [ident(n) for n in names]
    for i in ids:
        led.submit(i, RegisterNode(role="storage"))
    led.close()
    return ids


def test_persists_across_reopen(tmp_path):
    path = tmp_path / "l.db"
    clock = Clock()
    led = SQLiteLedger(path, create=True, clock=clock)
    w = World(led, clock)
    task = w.ready_task()
    chain, height = led.chain_id, led.height
    led.close()
    again = open_ledger(f"sqlite:{path}", clock=clock)
    assert again.chain_id == chain and again.height == height
    assert again.get_task(task).status == "Ready"
    assert again.verify_chain().blocks == height + 1
    again.close()


def test_open_refuses_missing_or_foreign_files(tmp_path):
    with pytest.raises(NotFound):
        SQLiteLedger(tmp_path / "missing.db")
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE x (a)").connection.commit()
    with pytest.raises(MalformedInput):
        SQLiteLedger(other)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(MalformedInput):
        SQLiteLedger(junk)


@pytest.mark.integration
@pytest.mark.parametrize("durability", ["normal", "full"])
def test_sigkill_mid_append_loses_nothing_acknowledged(tmp_path, durability):
    path = tmp_path / "crash.db"
    (node,) = _registered(path, "crasher")
    acked: list[str] = []
    for round_, wait_for in enumerate((25, 7, 40)):  # kill at a different point each round
        proc = _child(path, node, 0, durability)
        seen = 0
        try:
            assert proc.stdout.readline().strip() == "ready"
            while seen < wait_for:
                line = proc.stdout.readline()
                assert line, proc.stderr.read()
                acked.append(line.strip())
                seen += 1
            time.sleep(0.002 * round_)
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait(10)
        # lines the child printed before dying were acknowledged too
        acked += [x.strip() for x in proc.stdout.read().splitlines() if x.strip()]
        assert proc.returncode == -signal.SIGKILL
        led = SQLiteLedger(path, durability=durability)
        rep = led.verify_chain(replay=True)
        on_chain = {e.tx_id.hex() for e in led.entries(1)}
        assert set(acked) <= on_chain  # nothing acknowledged was lost
        assert rep.entries == len(on_chain) >= len(acked)  # and no torn entry
        led.close()
    led = SQLiteLedger(path)
    led.submit(node, Heartbeat())  # the ledger keeps working
    assert led.verify_chain().entries == rep.entries + 1
    led.close()


@pytest.mark.integration
def test_two_processes_append_concurrently(tmp_path):
    path = tmp_path / "conc.db"
    a, b = _registered(path, "proc-a", "proc-b")
    n = 60
    procs = [_child(path, a, n), _child(path, b, n)]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        outs.append([x for x in out.splitlines() if x != "ready"])
    led = SQLiteLedger(path)
    rep = led.verify_chain()
    entries = list(led.entries(1))
    beats = [e for e in entries if e.kind == "heartbeat"]
    assert len(beats) == 2 * n and rep.entries == 2 + 2 * n
    assert {e.tx_id.hex() for e in beats} == set(outs[0]) | set(outs[1])
    assert [b.height for b in led.blocks()] == list(range(led.height + 1))
    led.close()


def test_verify_while_another_process_appends(tmp_path):
    """Found by the task network: ``verify_chain`` read the tip, then the records, and a node's
    heartbeat in between made a sound ledger look corrupted. Now the records are compared with
    the block they belong to, and the blocks appended meanwhile are verified too."""
    path = tmp_path / "live.db"
    (a,) = _registered(path, "proc-a")
    writer = _child(path, a, 400)
    led = SQLiteLedger(path)
    try:
        checks = 0
        while writer.poll() is None:
            rep = led.verify_chain()  # raised ChainCorrupted ("state changed behind ...") before
            assert 2 <= rep.blocks <= led.height + 1  # what it saw, appended meanwhile included
            checks += 1
        assert writer.returncode == 0 and checks >= 3
        assert led.verify_chain().entries == 1 + 400
    finally:
        writer.kill()
        led.close()


def _flip_byte_of_entry(path, height):
    """Change one byte of the stored entry at ``height`` in the database file itself."""
    led = SQLiteLedger(path, max_skew_ms=None)
    sig = led.block(height).entries()[0]
    raw = led.block(height).txs[0]
    led.close()
    data = bytearray(path.read_bytes())
    assert not os.path.exists(str(path) + "-wal") or os.path.getsize(str(path) + "-wal") == 0
    at = data.find(raw)
    assert at >= 0 and data.find(raw, at + 1) == -1
    data[at + len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    return sig


def test_tampered_byte_is_named_by_dtx_ledger_verify(tmp_path, capsys):
    path = tmp_path / "t.db"
    assert main(["ledger", "init", "-L", str(path)]) == 0
    led = SQLiteLedger(path)
    nodes = [ident(f"n{i}") for i in range(6)]
    for nd in nodes:
        led.submit(nd, RegisterNode(role="storage", address="x"))
    led.close()
    capsys.readouterr()
    assert main(["ledger", "verify", "-L", str(path)]) == 0
    assert "ledger OK: 7 blocks, 6 entries" in capsys.readouterr().out
    assert main(["ledger", "verify", "--replay", "-L", str(path)]) == 0
    assert "verified and replayed" in capsys.readouterr().out
    _flip_byte_of_entry(path, 4)
    code = main(["ledger", "verify", "-L", str(path)])
    err = capsys.readouterr().err
    assert code != 0
    assert err.count("\n") == 1 and "height 4" in err, err
    with pytest.raises(ChainCorrupted) as info:
        SQLiteLedger(path).verify_chain()
    assert info.value.height == 4


def test_tampered_link_and_signature_are_named(tmp_path):
    path = tmp_path / "t2.db"
    led = SQLiteLedger(path, create=True)
    for i in range(5):
        led.submit(ident(f"m{i}"), RegisterNode(role="storage"))
    c = sqlite3.connect(path)
    c.execute("UPDATE blocks SET hash = zeroblob(32) WHERE height = 3")  # breaks block 3
    c.commit()
    with pytest.raises(ChainCorrupted) as info:
        led.verify_chain()
    assert info.value.height == 3
    c.execute("DELETE FROM blocks WHERE height = 2")
    c.commit()
    with pytest.raises(ChainCorrupted) as info:
        led.verify_chain()
    assert info.value.height == 2
    c.close()
    led.close()


def test_cli_commands(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    path = tmp_path / "cli.db"
    key = tmp_path / "node.key"
    assert main(["ledger", "init", "-L", str(path)]) == 0
    assert main(["ledger", "init", "-L", str(path)]) != 0  # exists
    assert main(["keys", "new", str(key)]) == 0
    out = capsys.readouterr().out
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    from dtxfast.ledger import NodeIdentity

    me = NodeIdentity.load(key)
    assert me.node_id in out
    assert main(["keys", "new", str(key)]) != 0  # refuses to overwrite
    led = SQLiteLedger(path)
    led.submit(me, RegisterNode(role="executor", address="127.0.0.1:9000"))
    led.submit(me, Heartbeat())
    led.close()
    capsys.readouterr()
    assert main(["nodes", "list", "-L", str(path)]) == 0
    out = capsys.readouterr().out
    assert me.node_id in out and "executor" in out and "127.0.0.1:9000" in out
    assert main(["ledger", "show", "-L", str(path)]) == 0
    out = capsys.readouterr().out
    assert "register_node" in out and "heartbeat" in out
    assert main(["ledger", "show", "-L", str(path), "--height", "1"]) == 0
    assert "role=executor" in capsys.readouterr().out
    assert main(["ledger", "show", "-L", str(path), "--height", "99"]) != 0
    assert "no block at height 99" in capsys.readouterr().err
    assert main(["ledger", "verify", "-L", str(tmp_path / "none.db")]) != 0
    assert "no ledger at" in capsys.readouterr().err
    key.chmod(0o644)
    led = SQLiteLedger(path)
    with pytest.raises(ValueError):
        NodeIdentity.load(key)
    led.close()


def test_subscription_sees_other_process_appends(tmp_path):
    path = tmp_path / "sub.db"
    (node,) = _registered(path, "pub")
    led = SQLiteLedger(path)
    start = led.height + 1
    proc = _child(path, node, 5)
    try:
        got = []
        deadline = time.monotonic() + 60
        for e in led.subscribe(start, kinds={"heartbeat"}, timeout=30, poll_s=0.02):
            got.append(e)
            if len(got) == 5 or time.monotonic() > deadline:
                break
    finally:
        proc.communicate(timeout=60)
    assert len(got) == 5 and all(e.sender == node.node_id for e in got)
    led.close()


def test_write_lock_timeout_is_a_clear_error(tmp_path):
    from dtxfast.errors import StateError

    path = tmp_path / "locked.db"
    led = SQLiteLedger(path, create=True, timeout=0.2)
    (node,) = [ident("locker")]
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        with pytest.raises(StateError, match="cannot write"):
            led.submit(node, RegisterNode(role="storage"))
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    led.submit(node, RegisterNode(role="storage"))
    assert led.height == 1
    led.close()


def test_damaged_file_is_one_clear_error(tmp_path, capsys):
    path = tmp_path / "damaged.db"
    led = SQLiteLedger(path, create=True)
    for i in range(8):
        led.submit(ident(f"d{i}"), RegisterNode(role="storage", address="x" * 200))
    led.close()
    data = bytearray(path.read_bytes())
    data[4096:4104] = b"\xff" * 8  # the b-tree header of the second page
    path.write_bytes(bytes(data))
    capsys.readouterr()
    code = main(["ledger", "verify", "-L", str(path)])
    err = capsys.readouterr().err
    assert code != 0 and err.count("\n") == 1
    assert "damaged" in err or "corrupted" in err
