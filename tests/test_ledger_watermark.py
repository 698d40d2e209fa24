"""A node refuses a ledger that went back below the highest block it saw; ``dtx ledger verify``
names entries that belong to no block (issue 15). Real SQLite files, copied as a backup would be."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from dtxfast.errors import MalformedInput, StateError
from dtxfast.ledger import Heartbeat, NodeIdentity, RegisterNode, open_ledger
from dtxfast.ledger.block import ChainCorrupted
from dtxfast.ledger.watermark import HighWaterMark


def _ledger(tmp_path: Path, name: str = "l.db"):
    return open_ledger(str(tmp_path / name), create=True)


def test_mark_refuses_a_restored_older_copy(tmp_path: Path) -> None:
    led = _ledger(tmp_path)
    ident = NodeIdentity.generate()
    led.submit(ident, RegisterNode(role="storage", address="http://127.0.0.1:1"))
    led.close()
    shutil.copy(tmp_path / "l.db", tmp_path / "backup.db")  # yesterday's copy
    led = open_ledger(str(tmp_path / "l.db"))
    led.submit(ident, Heartbeat())
    mark = HighWaterMark(tmp_path / "mark.json")
    assert mark.check(led) == 2
    led.close()
    shutil.copy(tmp_path / "backup.db", tmp_path / "l.db")  # the ledger is restored from it
    old = open_ledger(str(tmp_path / "l.db"))
    with pytest.raises(StateError, match="went back: its height is 1, this node saw 2"):
        HighWaterMark(tmp_path / "mark.json").check(old)  # a fresh process reads the mark file
    old.close()


def test_mark_refuses_another_chain_and_a_rewritten_block(tmp_path: Path) -> None:
    a = _ledger(tmp_path, "a.db")
    mark = HighWaterMark(tmp_path / "mark.json")
    mark.check(a)
    b = _ledger(tmp_path, "b.db")
    with pytest.raises(StateError, match="another chain"):
        mark.check(b)
    # same chain id, same height, another block at the mark: rewritten
    ident = NodeIdentity.generate()
    a.submit(ident, RegisterNode(role="storage", address="http://127.0.0.1:1"))
    a.close()
    shutil.copy(tmp_path / "a.db", tmp_path / "fork.db")
    a = open_ledger(str(tmp_path / "a.db"))
    a.submit(ident, Heartbeat())
    mark.check(a)
    fork = open_ledger(str(tmp_path / "fork.db"))
    fork.submit(ident, RegisterNode(role="storage", address="http://127.0.0.1:2"))  # another block 2
    with pytest.raises(StateError, match="rewritten: block 2"):
        mark.check(fork)
    a.submit(ident, Heartbeat())
    assert mark.check(a) == 3  # the real ledger moves on
    for led in (a, b, fork):
        led.close()


def test_mark_file_that_is_not_a_mark(tmp_path: Path) -> None:
    (tmp_path / "mark.json").write_bytes(b"\xff\xfe")
    with pytest.raises(MalformedInput, match="not a ledger mark"):
        HighWaterMark(tmp_path / "mark.json")


def test_verify_names_entries_that_belong_to_no_block(tmp_path: Path) -> None:
    led = _ledger(tmp_path)
    led.submit(NodeIdentity.generate(), RegisterNode(role="storage", address="http://127.0.0.1:1"))
    led.close()
    con = sqlite3.connect(tmp_path / "l.db")
    con.execute("DELETE FROM blocks WHERE height = 1")  # the tip block's row, its entry left behind
    con.commit()
    con.close()
    led = open_ledger(str(tmp_path / "l.db"))
    with pytest.raises(ChainCorrupted, match="1 stored entries belong to no block .from height 1"):
        led.verify_chain()
    led.close()


def test_dataowner_node_refuses_a_ledger_that_went_back(tmp_path: Path) -> None:
    """The real command: a DataOwner node that saw height 2 will not start on a copy at height 1."""
    from dtxfast.cli import main

    key, db, data = tmp_path / "owner.key", tmp_path / "l.db", tmp_path / "node"
    assert main(["keys", "new", str(key)]) == 0
    led = _ledger(tmp_path)
    ident = NodeIdentity.load(str(key))
    led.submit(ident, RegisterNode(role="dataowner"))
    led.close()
    shutil.copy(db, tmp_path / "backup.db")
    led = open_ledger(str(db))
    led.submit(ident, Heartbeat())
    data.mkdir()
    HighWaterMark(data / ".ledger-mark.json").check(led)  # what the node recorded while it ran
    led.close()
    shutil.copy(tmp_path / "backup.db", db)
    p = subprocess.run([sys.executable, "-m", "dtxfast", "dataowner", "start", "--key", str(key), "-L", str(db),
                        "-d", str(data)], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert p.returncode != 0
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "went back" in lines[0] and "Traceback" not in p.stderr, p.stderr


def test_executor_node_refuses_a_ledger_that_went_back(tmp_path: Path) -> None:
    """The executor too: one that saw height 2 will not start on a copy at height 1."""
    from dtxfast.cli import main

    key, db, data = tmp_path / "ex.key", tmp_path / "l.db", tmp_path / "node"
    assert main(["keys", "new", str(key)]) == 0
    led = _ledger(tmp_path)
    ident = NodeIdentity.load(str(key))
    led.submit(ident, RegisterNode(role="executor", address="127.0.0.1:1"))
    led.close()
    shutil.copy(db, tmp_path / "backup.db")
    led = open_ledger(str(db))
    led.submit(ident, Heartbeat())
    data.mkdir()
    HighWaterMark(data / ".ledger-mark.json").check(led)
    led.close()
    shutil.copy(tmp_path / "backup.db", db)
    p = subprocess.run([sys.executable, "-m", "dtxfast", "executor", "start", "--key", str(key), "-L", str(db),
                        "-d", str(data)], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert p.returncode != 0
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "went back" in lines[0] and "Traceback" not in p.stderr, p.stderr


def test_acting_commands_refuse_a_ledger_that_went_back_views_do_not(tmp_path: Path) -> None:
    """The CLI keeps a mark beside the key of every command that acts with it (issue 15): after
    two decisions, a ledger restored from a copy taken before them shows the applications
    undecided again; deciding again on it is refused with one line and writes nothing, while views
    and ``dtx ledger verify`` still read the copy. A failed command leaves no mark."""
    import time

    from ledger_helpers import Clock, World

    from dtxfast.cli import exit_code, main

    db, key = tmp_path / "l.db", tmp_path / "owner.key"
    led = open_ledger(str(db), create=True)
    w = World(led, Clock(int(time.time() * 1000)))
    fid = w.publish()
    a1, a2 = w.apply(w.ex1, fid), w.apply(w.ex2, fid)
    w.owner.save(str(key))
    led.close()
    shutil.copy(db, tmp_path / "backup.db")
    marks = tmp_path / "owner.key.marks"
    assert main(["file", "reject", a1, "--key", str(key), "-L", str(db), "--reason", "no"]) == 0
    (mark,) = marks.iterdir()
    first = HighWaterMark(mark).height
    assert main(["file", "reject", a2, "--key", str(key), "-L", str(db), "--reason", "no"]) == 0
    led = open_ledger(str(db))
    assert HighWaterMark(mark).height == led.height == first + 1  # moved up with the command
    led.close()
    shutil.copy(tmp_path / "backup.db", db)  # restored from before the decisions
    before = {p: p.read_bytes() for p in (db, mark)}
    p = subprocess.run([sys.executable, "-m", "dtxfast", "file", "reject", a1, "--key", str(key), "-L", str(db),
                        "--reason", "again"], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert p.returncode == exit_code(StateError)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "the ledger went back" in lines[0] and "key owner.key saw" in lines[0], p.stderr
    assert {q: q.read_bytes() for q in before} == before
    assert main(["file", "applications", "-L", str(db), "--key", str(key)]) == 0  # a view reads the copy
    assert main(["ledger", "verify", "-L", str(db)]) == 0
    # a command that fails writes no mark
    other = tmp_path / "other.key"
    w.owner2.save(str(other))
    assert main(["file", "approve", "0" * 32, "--key", str(other), "-L", str(db)]) != 0
    assert not (tmp_path / "other.key.marks").exists()


def test_monitor_stops_when_the_ledger_goes_back_between_rounds(tmp_path: Path, monkeypatch, capsys) -> None:
    """``dtx monitor`` runs until stopped: it checks its key's mark before every round, so a
    ledger that went back while it waited (here: the tip block removed after round 1) ends the
    run with one line before round 2 acts."""
    import time

    from ledger_helpers import Clock, World

    from dtxfast.cli import exit_code, main
    from dtxfast.storage.monitor import StorageMonitor

    db, key = tmp_path / "l.db", tmp_path / "owner.key"
    led = open_ledger(str(db), create=True)
    w = World(led, Clock(int(time.time() * 1000)))
    w.owner.save(str(key))
    tip = led.height
    led.close()
    rounds: list[int] = []
    real = StorageMonitor.run_round

    def run_round(self):  # type: ignore[no-untyped-def]
        rounds.append(1)
        report = real(self)
        if len(rounds) == 1:  # the ledger goes back while the monitor waits for round 2
            con = sqlite3.connect(db)
            con.execute("DELETE FROM blocks WHERE height = ?", (tip,))
            con.commit()
            con.close()
        return report

    monkeypatch.setattr(StorageMonitor, "run_round", run_round)
    capsys.readouterr()
    code = main(["monitor", "--key", str(key), "-L", str(db), "--rounds", "3", "--interval", "0.01"])
    err = capsys.readouterr().err
    assert code == exit_code(StateError) and len(rounds) == 1
    assert err.count("\n") == 1 and f"went back: its height is {tip - 1}, key owner.key saw {tip}" in err, err
