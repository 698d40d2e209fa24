"""The DataOwner node (``dtx dataowner start``) and ``dtx file applications|approve|reject|revoke``.

In-process nodes are built by the same factory the command uses, on a SQLite ledger in tmp_path
with a settable clock, and driven one :meth:`step` at a time (no sleeps). One test runs the real
process and stops it with SIGTERM.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ledger_helpers import DAY, HOUR, Clock, ident
from node_procs import dtx_command

from dtxfast.cli import exit_code, main
from dtxfast.errors import InvalidProof, NotFound, ParameterError, StateError, Unauthorized
from dtxfast.ledger import (
    ApplicationStatus,
    ApplyFile,
    CreateNamespace,
    MemoryLedger,
    NodeIdentity,
    PublishFile,
    RegisterNode,
    ReplicaInfo,
    SliceInfo,
    SQLiteLedger,
)
from dtxfast.nodes.dataowner import DataOwnerConfig, build_dataowner_node
from dtxfast.storage import DataOwner
from dtxfast.storage.applications import reject_application
from dtxfast.storage.network import StorageNetwork


class World:
    """A SQLite ledger with two storage nodes, three executors and an owner's DataOwner node."""

    def __init__(self, tmp_path: Path, clock: Clock, *, memory: bool = False, **settings: object) -> None:
        self.tmp, self.clock = tmp_path, clock
        self.db = tmp_path / "ledger.db"
        self.led = MemoryLedger(clock=clock) if memory else SQLiteLedger(self.db, create=True, clock=clock)
        self.owner = ident("owner")
        self.storage = [ident(f"storage{i}") for i in range(2)]
        self.ex1, self.ex2, self.ex3 = ident("exec1"), ident("exec2"), ident("exec3")
        for s in self.storage:
            self.led.submit(s, RegisterNode(role="storage", address="http://127.0.0.1:1"))
        for e in (self.ex1, self.ex2, self.ex3):
            self.led.submit(e, RegisterNode(role="executor", address="127.0.0.1:2"))
        self.node = self.build(**settings)
        assert self.node.step() == []  # registers the owner
        assert self.led.get_node(self.owner.node_id).role == "dataowner"
        self.led.submit(self.owner, CreateNamespace(name="ns", replicas=2))
        self.content: dict[str, bytes] = {}

    def build(self, **settings: object):
        cfg = DataOwnerConfig.load(None, env={}, data_dir=str(self.tmp / "owner-data"), heartbeat=60, **settings)
        return build_dataowner_node(cfg, identity=self.owner, ledger=self.led, clock=self.clock)

    def publish(self, *, days: float = 10.0) -> str:
        cid = os.urandom(16)
        reps = [ReplicaInfo(index=i, root=bytes(32), size=4112) for i in range(2)]
        fid = self.led.submit(self.owner, PublishFile(
            namespace="ns", name="part.csv", size=4096, digest=bytes(32),
            expires_ms=self.clock() + int(days * DAY),
            slices=[SliceInfo("0", bytes(32), [s.node_id for s in self.storage], reps)],
            content_id=cid, slice_size=4096, chunk_size=1024)).object_id
        self.content[fid] = cid
        return fid

    def apply(self, executor: NodeIdentity, fid: str) -> str:
        return self.led.submit(executor, ApplyFile(file_id=fid, purpose="train")).object_id

    def file_key(self, fid: str) -> bytes:
        return DataOwner(self.owner.private_key).file_key(self.content[fid])


def node_id(name: str) -> str:
    return ident(name).node_id


@pytest.fixture
def clock() -> Clock:
    return Clock(int(time.time() * 1000))  # near real time: the CLI's own ledger clock checks skew


def test_auto_approval_seals_the_key_to_the_listed_executor_only(tmp_path: Path, clock: Clock) -> None:
    w = World(tmp_path, clock, approve="auto", executors=f"{node_id('exec1')},{node_id('exec3')}")
    fid = w.publish()
    app_id = w.apply(w.ex1, fid)
    [d] = w.node.step()
    assert (d.application_id, d.action, d.executor) == (app_id, "approved", w.ex1.node_id)
    app = w.led.get_application(app_id)
    assert app.status == ApplicationStatus.APPROVED and app.expires_ms == d.expires_ms
    # the listed executor opens the sealed key and reads the file key through its client
    assert w.ex1.unseal(app.sealed_key) == w.file_key(fid)
    assert StorageNetwork(w.led, w.ex1).file_key(w.led.get_file(fid)) == w.file_key(fid)
    # the attack: any other identity (another executor, a fresh key, the storage nodes) fails
    for other in (w.ex2, w.ex3, w.storage[0], NodeIdentity.generate()):
        with pytest.raises(InvalidProof):
            other.unseal(app.sealed_key)
    with pytest.raises(Unauthorized):  # and exec2 holds no approval of its own
        StorageNetwork(w.led, w.ex2).file_key(w.led.get_file(fid))
    assert w.node.step() == []  # decided once
    log = [json.loads(line) for line in (tmp_path / "owner-data" / "decisions.jsonl").read_text().splitlines()]
    assert [(r["application_id"], r["action"]) for r in log] == [(app_id, "approved")]


def test_unlisted_executor_is_rejected_with_a_reason(tmp_path: Path, clock: Clock) -> None:
    w = World(tmp_path, clock, approve="auto", executors=node_id("exec1"))
    fid = w.publish()
    good, bad = w.apply(w.ex1, fid), w.apply(w.ex2, fid)
    decisions = {d.application_id: d for d in w.node.step()}
    assert decisions[good].action == "approved"
    assert decisions[bad].action == "rejected" and w.ex2.node_id in decisions[bad].reason
    rec = w.led.get_application(bad)
    assert rec.status == ApplicationStatus.REJECTED and "not among the executors" in rec.reason
    assert rec.sealed_key == b""
    with pytest.raises(Unauthorized):
        StorageNetwork(w.led, w.ex2).file_key(w.led.get_file(fid))


def test_empty_executor_list_approves_any_registered_executor(tmp_path: Path, clock: Clock) -> None:
    w = World(tmp_path, clock, approve="auto")
    fid = w.publish()
    apps = [w.apply(e, fid) for e in (w.ex1, w.ex2)]
    assert [d.action for d in w.node.step()] == ["approved", "approved"]
    for e, a in zip((w.ex1, w.ex2), apps):
        assert e.unseal(w.led.get_application(a).sealed_key) == w.file_key(fid)


@pytest.mark.parametrize(("file_days", "approval_days"), [(2.0, 30.0), (10.0, 1.0), (0.5, 0.5)])
def test_an_approval_never_outlives_the_file(tmp_path: Path, clock: Clock, file_days: float,
                                             approval_days: float) -> None:
    w = World(tmp_path, clock, approve="auto", approval_days=approval_days)
    fid = w.publish(days=file_days)
    clock.advance(HOUR)
    app_id = w.apply(w.ex1, fid)
    [d] = w.node.step()
    f = w.led.get_file(fid)
    app = w.led.get_application(app_id)
    assert app.expires_ms == d.expires_ms == min(f.expires_ms, clock() + int(approval_days * DAY))
    assert app.expires_ms <= f.expires_ms


@given(file_hours=st.integers(2, 24 * 400), approval_hours=st.integers(1, 24 * 400),
       wait_hours=st.integers(0, 24 * 400))
def test_property_approval_expiry(file_hours: int, approval_hours: int, wait_hours: int) -> None:
    """Any file life, approval length and delay before the node sees the application: an approval
    the contract accepts, ending at min(file expiry, decision time + approval length); after the
    file's end, a rejection."""
    import tempfile

    clock = Clock(int(time.time() * 1000))
    with tempfile.TemporaryDirectory() as d:
        w = World(Path(d), clock, memory=True, approve="auto", approval_days=approval_hours / 24)
        fid = w.publish(days=file_hours / 24)
        app_id = w.apply(w.ex1, fid)
        clock.advance(wait_hours * HOUR)
        [d0] = w.node.step()
        f, app = w.led.get_file(fid), w.led.get_application(app_id)
        if clock() < f.expires_ms:
            assert app.status == ApplicationStatus.APPROVED
            assert app.expires_ms == min(f.expires_ms, clock() + approval_hours * HOUR) <= f.expires_ms
        else:
            assert (app.status, d0.action) == (ApplicationStatus.REJECTED, "rejected")


def test_an_application_to_a_file_that_expired_meanwhile_is_rejected(tmp_path: Path, clock: Clock) -> None:
    w = World(tmp_path, clock, approve="auto")
    fid = w.publish(days=1.0)
    app_id = w.apply(w.ex1, fid)
    clock.advance(DAY + 1)  # the node was down while the file expired
    [d] = w.node.step()
    assert d.action == "rejected" and "expired" in d.reason
    assert w.led.get_application(app_id).status == ApplicationStatus.REJECTED


def test_heartbeats_follow_the_injected_clock(tmp_path: Path, clock: Clock) -> None:
    w = World(tmp_path, clock, approve="auto")
    first = w.led.get_node(w.owner.node_id).last_heartbeat_ms
    assert first == clock()
    clock.advance(30_000)
    w.node.step()
    assert w.led.get_node(w.owner.node_id).last_heartbeat_ms == first  # 60 s not yet up
    clock.advance(30_000)
    w.node.step()
    assert w.led.get_node(w.owner.node_id).last_heartbeat_ms == clock()


def test_a_decision_taken_meanwhile_is_skipped(tmp_path: Path, clock: Clock) -> None:
    w = World(tmp_path, clock, approve="auto")
    fid = w.publish()
    app_id = w.apply(w.ex1, fid)
    stale = w.led.get_application(app_id)
    reject_application(w.node.net, app_id, "decided by hand")
    d = w.node.decide(stale)
    assert d is not None and d.action == "skipped"
    assert w.led.get_application(app_id).reason == "decided by hand"


def test_manual_mode_leaves_applications_to_the_cli(tmp_path: Path, clock: Clock,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    w = World(tmp_path, clock, approve="manual")
    fid = w.publish()
    a1, a2 = w.apply(w.ex1, fid), w.apply(w.ex2, fid)
    assert [d.action for d in w.node.step()] == ["pending", "pending"]
    assert w.node.step() == []  # announced once
    assert {a.status for a in w.led.list_applications(owner=w.owner.node_id)} == {ApplicationStatus.UNAPPROVED}
    key = tmp_path / "owner.key"
    w.owner.save(key)
    ekey = tmp_path / "exec1.key"
    w.ex1.save(ekey)
    db = str(w.db)
    capsys.readouterr()
    assert main(["file", "applications", "-L", db, "--key", str(key), "--status", "unapproved", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["application_id"] for r in rows} == {a1, a2}
    assert all("sealed_key" not in r for r in rows)
    # someone else's key cannot decide the owner's applications
    assert main(["file", "approve", a1, "--key", str(ekey), "-L", db]) == exit_code(Unauthorized)
    assert "not its owner" in capsys.readouterr().err
    assert main(["file", "approve", a1, "--key", str(key), "-L", db, "--days", "3"]) == 0
    assert main(["file", "reject", a2, "--key", str(key), "-L", db, "--reason", "not for this study"]) == 0
    capsys.readouterr()
    app1, app2 = w.led.get_application(a1), w.led.get_application(a2)
    assert app1.status == ApplicationStatus.APPROVED and w.ex1.unseal(app1.sealed_key) == w.file_key(fid)
    assert app1.expires_ms <= w.led.get_file(fid).expires_ms
    assert (app2.status, app2.reason) == (ApplicationStatus.REJECTED, "not for this study")
    # bad input: one clear line each, no traceback
    for argv, code, words in [
        (["file", "approve", a1], exit_code(StateError), "already decided"),
        (["file", "reject", a2, "--reason", "again"], exit_code(StateError), "already decided"),
        (["file", "approve", "0" * 32], exit_code(NotFound), "does not exist"),
        (["file", "approve", "nope"], exit_code(ParameterError), "32 hex"),
        (["file", "revoke", a2, "--reason", "x"], exit_code(StateError), "not Approved"),
    ]:
        assert main([*argv, "--key", str(key), "-L", db]) == code
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1 and "Traceback" not in err
    assert main(["file", "applications", "-L", db, "--status", "maybe"]) == exit_code(ParameterError)
    assert "unknown application status" in capsys.readouterr().err
    assert main(["file", "revoke", a1, "--key", str(key), "-L", db, "--reason", "study over"]) == 0
    app1 = w.led.get_application(a1)
    assert app1.status == ApplicationStatus.REVOKED and app1.sealed_key == b""
    assert w.node.step() == []  # the node never decides what the owner decided


def test_the_loop_with_the_monitor_stops_when_asked(tmp_path: Path, clock: Clock,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    import logging
    import threading

    w = World(tmp_path, clock, approve="auto", monitor=True, monitor_interval=0.05, poll=0.01)
    ready = threading.Event()
    stop = threading.Event()
    caplog.set_level(logging.INFO, logger="dtxfast.nodes.dataowner")
    t = threading.Thread(target=w.node.run, args=(stop,), kwargs={"ready": lambda url: ready.set()})
    t.start()
    try:
        assert ready.wait(10)
        fid = w.publish()
        app_id = w.apply(w.ex1, fid)
        deadline = time.monotonic() + 10
        while w.led.get_application(app_id).status == ApplicationStatus.UNAPPROVED:
            assert time.monotonic() < deadline and t.is_alive()
            time.sleep(0.01)
        while "monitor round" not in caplog.text:
            assert time.monotonic() < deadline and t.is_alive()
            time.sleep(0.01)
    finally:
        stop.set()
        t.join(30)
    assert not t.is_alive() and not w.node._monitor_thread.is_alive()
    assert w.led.get_application(app_id).status == ApplicationStatus.APPROVED


def test_bad_settings_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ParameterError):
        DataOwnerConfig.load(None, env={}, approve="sometimes")
    with pytest.raises(ParameterError):
        DataOwnerConfig.load(None, env={}, executors="abc,not an id")
    assert main(["dataowner", "start", "--key", "k", "-L", "l", "--data-dir", str(tmp_path),
                 "--approve", "sometimes"]) == exit_code(ParameterError)
    err = capsys.readouterr().err
    assert "approve must be one of auto, manual" in err and err.count("\n") == 1


def test_the_process_approves_and_stops_on_sigterm(tmp_path: Path, node_launcher) -> None:
    db = tmp_path / "ledger.db"
    led = SQLiteLedger(db, create=True)
    owner, ex = NodeIdentity.generate(), NodeIdentity.generate()
    key = tmp_path / "owner.key"
    owner.save(key)
    storage = [NodeIdentity.generate() for _ in range(2)]
    for s in storage:
        led.submit(s, RegisterNode(role="storage", address="http://127.0.0.1:1"))
    led.submit(ex, RegisterNode(role="executor"))
    proc = node_launcher.start(dtx_command(
        "dataowner", "start", "--key", str(key), "-L", str(db), "--data-dir", str(tmp_path / "owner"),
        "--approve", "auto", "--executors", ex.node_id, "--poll", "0.1", "--heartbeat", "1"), name="dataowner")
    assert proc.url == f"dtx://dataowner/{owner.node_id}"
    assert led.get_node(owner.node_id).role == "dataowner"  # registered before it said ready
    led.submit(owner, CreateNamespace(name="ns", replicas=2))
    cid = os.urandom(16)
    fid = led.submit(owner, PublishFile(
        namespace="ns", name="part.csv", size=10, digest=bytes(32), expires_ms=led.now_ms() + DAY,
        slices=[SliceInfo("0", bytes(32), [s.node_id for s in storage],
                          [ReplicaInfo(index=i, root=bytes(32), size=26) for i in range(2)])],
        content_id=cid, slice_size=4096, chunk_size=1024)).object_id
    app_id = led.submit(ex, ApplyFile(file_id=fid)).object_id
    deadline = time.monotonic() + 20
    while led.get_application(app_id).status == ApplicationStatus.UNAPPROVED:
        assert proc.alive, proc.log()
        assert time.monotonic() < deadline, f"not approved within 20 s:\n{proc.log()}"
        time.sleep(0.05)
    app = led.get_application(app_id)
    assert app.status == ApplicationStatus.APPROVED
    assert ex.unseal(app.sealed_key) == DataOwner(owner.private_key).file_key(cid)
    assert proc.stop() == 0
    log = proc.log()
    assert f"approved application {app_id}" in log and ex.node_id in log and "Traceback" not in log
    led.close()
