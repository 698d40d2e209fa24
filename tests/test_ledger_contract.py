"""The ledger contract suite: every rule, allowed and refused, run against every backend."""

from __future__ import annotations

import threading

import pytest
from ledger_helpers import (
    BACKENDS,
    DAY,
    ETCD,
    HOUR,
    T0,
    Clock,
    World,
    force_block,
    ident,
    make_ledger,
    remove_tip_block,
    tamper_record,
)

from dtxfast.errors import (
    InvalidSignature,
    MalformedInput,
    NotFound,
    ParameterError,
    StateError,
    Unauthorized,
)
from dtxfast.ledger import (
    ApplicationStatus,
    ApproveApplication,
    ChainCorrupted,
    ChallengeStatus,
    ConfirmTask,
    CreateNamespace,
    DuplicateTransaction,
    ExpireFile,
    ExtendFile,
    FailTask,
    FinishTask,
    HealthPolicy,
    Heartbeat,
    IssueChallenge,
    MemoryLedger,
    MigrateSlice,
    ProcessTask,
    ReportProgress,
    PublishFile,
    PublishTask,
    RegisterNode,
    RejectApplication,
    RejectTask,
    ResolveChallenge,
    RevokeApplication,
    SetNodeStatus,
    SignedTx,
    SliceInfo,
    StartTask,
    TaskParty,
    TaskStatus,
    seal_to,
    sign_tx,
)
from dtxfast.ledger.contract import rule
from dtxfast.ledger.tx import TxBody, register_kind


@pytest.fixture(params=BACKENDS)
def world(request, tmp_path):
    clock = Clock()
    if request.param == "etcd":
        ETCD["cluster"] = request.getfixturevalue("etcd_cluster")
    led = make_ledger(request.param, tmp_path, clock)
    yield World(led, clock)
    led.close()


def refused(world, exc, who, body, ts=None):
    """Submit, expect ``exc``, and check that nothing was appended."""
    before = world.led.height
    with pytest.raises(exc):
        world.submit(who, body, ts)
    assert world.led.height == before


# --- nodes -----------------------------------------------------------------------------------


def test_register_and_list_nodes(world):
    led = world.led
    nodes = led.list_nodes()
    assert len(nodes) == 9
    assert {n.node_id for n in led.list_nodes(role="storage")} == {s.node_id for s in world.s}
    n = led.get_node(world.ex1.node_id)
    assert n.role == "executor" and n.online and n.public_key == world.ex1.public_key_bytes
    with pytest.raises(NotFound):
        led.get_node(world.stranger.node_id)


def test_reregister_updates_address_but_not_role(world):
    world.submit(world.s[0], RegisterNode(role="storage", address="10.0.0.9:9"))
    assert world.led.get_node(world.s[0].node_id).address == "10.0.0.9:9"
    refused(world, StateError, world.s[0], RegisterNode(role="executor"))


def test_unregistered_sender_is_refused(world):
    refused(world, Unauthorized, world.stranger, Heartbeat())
    refused(world, Unauthorized, world.stranger, SetNodeStatus(online=False))


def test_heartbeat_and_status(world):
    world.clock.advance(5000)
    world.submit(world.s[0], Heartbeat())
    assert world.led.get_node(world.s[0].node_id).last_heartbeat_ms == T0 + 5000
    world.submit(world.s[0], SetNodeStatus(online=False))
    assert not world.led.get_node(world.s[0].node_id).online


# --- namespaces and files ----------------------------------------------------------------------


def test_namespace_rules(world):
    refused(world, StateError, world.owner, CreateNamespace(name="ns", replicas=3))
    refused(world, Unauthorized, world.req, CreateNamespace(name="x", replicas=1))
    refused(world, Unauthorized, world.s[0], CreateNamespace(name="x", replicas=1))
    world.submit(world.ex1, CreateNamespace(name="results", replicas=1))  # executors publish results
    refused(world, ParameterError, world.owner, CreateNamespace(name="a/b", replicas=1))
    refused(world, MalformedInput, world.owner, CreateNamespace(name="z", replicas=0))
    world.submit(world.owner, CreateNamespace(name="other", replicas=3))
    assert [n.name for n in world.led.list_namespaces(owner=world.owner.node_id)] == ["ns", "other"]


def _pf(world, nodes, expires=None, ns="ns", slice_ids=None):
    ids = slice_ids or [f"s{i}" for i in range(len(nodes))]
    return PublishFile(namespace=ns, name="f", size=1, digest=bytes(32),
                       expires_ms=expires or world.clock() + DAY,
                       slices=[SliceInfo(i, bytes(32), [world.s[j].node_id for j in js])
                               for i, js in zip(ids, nodes)])


def test_publish_file_and_queries(world):
    fid = world.publish()
    f = world.led.get_file(fid)
    assert f.owner == world.owner.node_id and f.namespace == f"{world.owner.node_id}/ns"
    assert [s.slice_id for s in f.slices] == ["s0", "s1"]
    fid2 = world.publish(world.owner2)
    assert [x.file_id for x in world.led.list_files(owner=world.owner.node_id)] == [fid]
    assert [x.file_id for x in world.led.list_files(namespace=f"{world.owner2.node_id}/ns")] == [fid2]
    assert {x.file_id for x in world.led.list_files(node=world.s[2].node_id)} == {fid, fid2}
    assert {x.file_id for x in world.led.list_files()} == {fid, fid2}


def test_publish_file_refusals(world):
    w = world
    refused(w, ParameterError, w.owner, _pf(w, [[0]]))  # 1 replica, namespace keeps 2
    refused(w, ParameterError, w.owner, _pf(w, [[0, 0]]))  # same node twice
    refused(w, NotFound, w.owner, _pf(w, [[0, 1]], ns="nope"))
    refused(w, Unauthorized, w.req, _pf(w, [[0, 1]]))
    refused(w, ParameterError, w.owner, _pf(w, [[0, 1]], expires=T0 - 1))
    refused(w, ParameterError, w.owner, _pf(w, [[0, 1], [1, 2]], slice_ids=["a", "a"]))
    bad = PublishFile(namespace="ns", name="f", size=1, digest=bytes(32), expires_ms=T0 + DAY,
                      slices=[SliceInfo("a", bytes(32), [w.s[0].node_id, w.ex1.node_id])])
    refused(w, ParameterError, w.owner, bad)  # an executor cannot hold slices


def test_extend_and_expire_file(world):
    w = world
    fid = w.publish(expires_in=DAY)
    refused(w, Unauthorized, w.owner2, ExtendFile(file_id=fid, expires_ms=T0 + 2 * DAY))
    refused(w, ParameterError, w.owner, ExtendFile(file_id=fid, expires_ms=T0 + DAY - 1))
    w.submit(w.owner, ExtendFile(file_id=fid, expires_ms=T0 + 2 * DAY))
    assert w.led.get_file(fid).expires_ms == T0 + 2 * DAY
    refused(w, Unauthorized, w.owner2, ExpireFile(file_id=fid))
    w.submit(w.owner, ExpireFile(file_id=fid))
    f = w.led.get_file(fid)
    assert f.status == "Expired" and f.expires_ms == T0
    refused(w, StateError, w.owner, ExtendFile(file_id=fid, expires_ms=T0 + 3 * DAY))
    refused(w, StateError, w.ex1, ApplyFile_(fid))


def ApplyFile_(fid):
    from dtxfast.ledger import ApplyFile

    return ApplyFile(file_id=fid)


def test_file_expires_with_time(world):
    w = world
    fid = w.publish(expires_in=HOUR)
    w.clock.advance(HOUR)
    refused(w, StateError, w.ex1, ApplyFile_(fid))
    refused(w, NotFound, w.ex1, ApplyFile_("0" * 32))


# --- applications ------------------------------------------------------------------------------


def test_application_approval_carries_sealed_key(world):
    w = world
    fid = w.publish()
    app_id = w.approve(w.ex1, fid, secret=b"the-file-key")
    app = w.led.get_application(app_id)
    assert app.status == ApplicationStatus.APPROVED and app.executor == w.ex1.node_id
    assert w.ex1.unseal(app.sealed_key) == b"the-file-key"
    assert b"the-file-key" not in app.sealed_key
    assert [a.application_id for a in w.led.list_applications(file_id=fid, status="Approved")] == [app_id]
    assert [a.application_id for a in w.led.list_applications(executor=w.ex1.node_id)] == [app_id]


def test_application_refusals(world):
    w = world
    fid = w.publish(expires_in=DAY)
    refused(w, Unauthorized, w.req, ApplyFile_(fid))  # only executors apply
    app_id = w.apply(w.ex1, fid)
    sealed = seal_to(w.ex1.public_key_bytes, b"k" * 16)
    ok = ApproveApplication(application_id=app_id, expires_ms=T0 + HOUR, sealed_key=sealed)
    refused(w, Unauthorized, w.owner2, ok)  # not the owner
    refused(w, ParameterError, w.owner,
            ApproveApplication(application_id=app_id, expires_ms=T0 + DAY + 1, sealed_key=sealed))
    refused(w, ParameterError, w.owner,
            ApproveApplication(application_id=app_id, expires_ms=T0, sealed_key=sealed))
    refused(w, ParameterError, w.owner,  # material in the clear is refused
            ApproveApplication(application_id=app_id, expires_ms=T0 + HOUR, sealed_key=b"\x00" * 64))
    refused(w, NotFound, w.owner,
            ApproveApplication(application_id="1" * 32, expires_ms=T0 + HOUR, sealed_key=sealed))
    w.submit(w.owner, ok)
    refused(w, StateError, w.owner, ok)  # approving twice
    refused(w, StateError, w.owner, RejectApplication(application_id=app_id))
    refused(w, Unauthorized, w.ex1, RevokeApplication(application_id=app_id))
    w.submit(w.owner, RevokeApplication(application_id=app_id, reason="done"))
    app = w.led.get_application(app_id)
    assert app.status == ApplicationStatus.REVOKED and app.sealed_key == b""
    refused(w, StateError, w.owner, RevokeApplication(application_id=app_id))


def test_reject_application(world):
    w = world
    fid = w.publish()
    app_id = w.apply(w.ex2, fid)
    refused(w, Unauthorized, w.ex2, RejectApplication(application_id=app_id))
    w.submit(w.owner, RejectApplication(application_id=app_id, reason="no"))
    assert w.led.get_application(app_id).status == ApplicationStatus.REJECTED
    refused(w, StateError, w.owner, RevokeApplication(application_id=app_id))


# --- tasks -------------------------------------------------------------------------------------


def test_task_lifecycle(world):
    w = world
    task_id, _, _ = w.two_party_task()
    t = w.led.get_task(task_id)
    assert t.status == TaskStatus.CONFIRMING and t.executors == [w.ex1.node_id, w.ex2.node_id]
    assert t.params == {"epochs": 5, "label": "y", "lr": 0.1}
    w.submit(w.ex1, ConfirmTask(task_id=task_id))
    assert w.led.get_task(task_id).status == TaskStatus.CONFIRMING
    w.submit(w.ex2, ConfirmTask(task_id=task_id))
    assert w.led.get_task(task_id).status == TaskStatus.READY
    w.submit(w.req, StartTask(task_id=task_id))
    assert w.led.get_task(task_id).status == TaskStatus.TO_PROCESS
    refused(w, StateError, w.ex1, ReportProgress(task_id=task_id, stage="psi"))  # not Processing yet
    w.submit(w.ex1, ProcessTask(task_id=task_id))
    assert w.led.get_task(task_id).status == TaskStatus.PROCESSING
    w.submit(w.ex1, ReportProgress(task_id=task_id, stage="train", done=2, total=5, loss=0.25))
    w.submit(w.ex2, ReportProgress(task_id=task_id, stage="psi", done=1, total=3))
    w.submit(w.ex1, ReportProgress(task_id=task_id, stage="train", done=3, total=5, loss=0.125))
    prog = w.led.get_task(task_id).progress
    assert (prog[w.ex1.node_id].stage, prog[w.ex1.node_id].done, prog[w.ex1.node_id].loss) == ("train", 3, 0.125)
    assert (prog[w.ex2.node_id].stage, prog[w.ex2.node_id].done, prog[w.ex2.node_id].loss) == ("psi", 1, None)
    refused(w, Unauthorized, w.req, ReportProgress(task_id=task_id, stage="train"))  # not an executor
    refused(w, Unauthorized, w.s[0], ReportProgress(task_id=task_id, stage="train"))
    refused(w, ParameterError, w.ex1, ReportProgress(task_id=task_id, stage="train", done=6, total=5))
    refused(w, ParameterError, w.ex1, ReportProgress(task_id=task_id, stage="train", loss=float("nan")))
    refused(w, MalformedInput, w.ex1, ReportProgress(task_id=task_id, stage="Bad Stage"))
    w.submit(w.ex2, FinishTask(task_id=task_id, results=["model://abc"]))
    t = w.led.get_task(task_id)
    assert t.status == TaskStatus.FINISHED and t.results == ["model://abc"]
    # never backwards
    for who, body in [(w.req, StartTask(task_id=task_id)), (w.ex1, ProcessTask(task_id=task_id)),
                      (w.ex1, FailTask(task_id=task_id)), (w.ex1, ConfirmTask(task_id=task_id)),
                      (w.ex1, RejectTask(task_id=task_id)), (w.ex1, FinishTask(task_id=task_id)),
                      (w.ex1, ReportProgress(task_id=task_id, stage="train"))]:
        refused(w, StateError, who, body)


def test_task_permissions(world):
    w = world
    task_id, _, _ = w.two_party_task()
    refused(w, Unauthorized, w.s[0], ConfirmTask(task_id=task_id))  # not a named executor
    refused(w, Unauthorized, w.req, ConfirmTask(task_id=task_id))
    refused(w, StateError, w.req, StartTask(task_id=task_id))  # still Confirming
    w.submit(w.ex1, ConfirmTask(task_id=task_id))
    refused(w, StateError, w.ex1, ConfirmTask(task_id=task_id))  # twice
    w.submit(w.ex2, ConfirmTask(task_id=task_id))
    refused(w, Unauthorized, w.req2, StartTask(task_id=task_id))  # not the requester
    refused(w, StateError, w.ex1, ProcessTask(task_id=task_id))  # Ready, not ToProcess
    w.submit(w.req, StartTask(task_id=task_id))
    refused(w, Unauthorized, w.s[1], ProcessTask(task_id=task_id))
    refused(w, Unauthorized, w.req2, FailTask(task_id=task_id))
    refused(w, StateError, w.ex1, FinishTask(task_id=task_id))  # not Processing yet
    w.submit(w.req, FailTask(task_id=task_id, reason="cancelled"))
    t = w.led.get_task(task_id)
    assert t.status == TaskStatus.FAILED and "cancelled" in t.reason
    refused(w, NotFound, w.ex1, ConfirmTask(task_id="2" * 32))


def test_confirm_needs_valid_approval(world):
    w = world
    task_id, f1, f2 = w.two_party_task(approve=False)
    refused(w, Unauthorized, w.ex1, ConfirmTask(task_id=task_id))
    app = w.approve(w.ex1, f1)
    w.submit(w.owner, RevokeApplication(application_id=app))
    refused(w, Unauthorized, w.ex1, ConfirmTask(task_id=task_id))
    w.approve(w.ex1, f1)
    w.submit(w.ex1, ConfirmTask(task_id=task_id))
    # an approval that expired no longer counts
    app_id = w.apply(w.ex2, f2)
    w.submit(w.owner2, ApproveApplication(application_id=app_id, expires_ms=w.clock() + HOUR,
                                          sealed_key=seal_to(w.ex2.public_key_bytes, b"k")))
    w.clock.advance(HOUR)
    refused(w, Unauthorized, w.ex2, ConfirmTask(task_id=task_id))


def test_task_rejected_by_any_executor(world):
    w = world
    task_id, _, _ = w.two_party_task()
    w.submit(w.ex1, ConfirmTask(task_id=task_id))
    refused(w, Unauthorized, w.req, RejectTask(task_id=task_id))
    w.submit(w.ex2, RejectTask(task_id=task_id, reason="busy"))
    assert w.led.get_task(task_id).status == TaskStatus.REJECTED
    refused(w, StateError, w.ex2, ConfirmTask(task_id=task_id))
    refused(w, StateError, w.req, StartTask(task_id=task_id))


def test_publish_task_refusals(world):
    w = world
    f1 = w.publish()
    party = TaskParty(w.ex1.node_id, [f1])
    refused(w, Unauthorized, w.owner, PublishTask(task_type="train", algorithm="a", parties=[party]))
    refused(w, ParameterError, w.req, PublishTask(task_type="train", algorithm="a",
                                                  parties=[party, party]))
    refused(w, ParameterError, w.req, PublishTask(task_type="train", algorithm="a",
                                                  parties=[TaskParty(w.s[0].node_id, [f1])]))
    refused(w, NotFound, w.req, PublishTask(task_type="train", algorithm="a",
                                            parties=[TaskParty(w.ex1.node_id, ["3" * 32])]))
    refused(w, ParameterError, w.req, PublishTask(task_type="predict", algorithm="a", parties=[party]))
    refused(w, ParameterError, w.req, PublishTask(task_type="train", algorithm="a", parties=[party],
                                                  model_task="4" * 32))
    refused(w, MalformedInput, w.req, PublishTask(task_type="cluster", algorithm="a",  # type: ignore
                                                  parties=[party]))


def test_prediction_needs_finished_training_of_same_requester(world):
    w = world
    train_id = w.ready_task()
    f = w.publish()
    party = TaskParty(w.ex1.node_id, [f])
    refused(w, StateError, w.req, PublishTask(task_type="predict", algorithm="a", parties=[party],
                                              model_task=train_id))
    w.submit(w.req, StartTask(task_id=train_id))
    w.submit(w.ex1, ProcessTask(task_id=train_id))
    w.submit(w.ex1, FinishTask(task_id=train_id, results=["m"]))
    refused(w, Unauthorized, w.req2, PublishTask(task_type="predict", algorithm="a", parties=[party],
                                                 model_task=train_id))
    r = w.submit(w.req, PublishTask(task_type="predict", algorithm="a", parties=[party],
                                    model_task=train_id))
    assert w.led.get_task(r.object_id).task_type == "predict"


def test_list_tasks_filters(world):
    w = world
    t1 = w.ready_task()
    w.clock.advance(1000)  # listings are in publication order
    t2, _, _ = w.two_party_task()
    w.clock.advance(1000)
    f = w.publish(w.owner2)
    w.approve(w.ex2, f, owner=w.owner2)
    t3 = w.submit(w.req2, PublishTask(task_type="train", algorithm="b",
                                      parties=[TaskParty(w.ex2.node_id, [f])])).object_id
    ids = lambda ts: [t.task_id for t in ts]
    assert ids(w.led.list_tasks()) == [t1, t2, t3]
    assert ids(w.led.list_tasks(status="Ready")) == [t1]
    assert ids(w.led.list_tasks(status="Confirming")) == [t2, t3]
    assert ids(w.led.list_tasks(executor=w.ex1.node_id)) == [t1, t2]
    assert ids(w.led.list_tasks(executor=w.ex2.node_id, requester=w.req2.node_id)) == [t3]
    assert ids(w.led.list_tasks(requester=w.req.node_id, status="Finished")) == []


# --- challenges and migrations -------------------------------------------------------------------


def test_challenges(world):
    w = world
    fid = w.publish()
    node = w.s[1].node_id
    r = w.submit(w.owner, IssueChallenge(node=node, file_id=fid, slice_id="s0", challenge=b"n1"))
    ch = w.led.get_challenge(r.object_id)
    assert ch.status == ChallengeStatus.TO_PROVE and ch.node == node
    refused(w, ParameterError, w.owner, IssueChallenge(node=w.s[2].node_id, file_id=fid, slice_id="s0"))
    refused(w, NotFound, w.owner, IssueChallenge(node=node, file_id=fid, slice_id="zz"))
    refused(w, Unauthorized, w.owner2, IssueChallenge(node=node, file_id=fid, slice_id="s0"))
    refused(w, Unauthorized, w.s[1], ResolveChallenge(challenge_id=r.object_id, proved=True))
    w.submit(w.owner, ResolveChallenge(challenge_id=r.object_id, proved=True))
    assert w.led.get_challenge(r.object_id).status == ChallengeStatus.PROVED
    refused(w, StateError, w.owner, ResolveChallenge(challenge_id=r.object_id, proved=False))
    assert [c.challenge_id for c in w.led.list_challenges(node=node)] == [r.object_id]
    assert w.led.list_challenges(status="ToProve") == []


def test_migrate_slice(world):
    w = world
    fid = w.publish()  # s0 on storage0+1, s1 on storage1+2
    a, b, c = (s.node_id for s in w.s)
    refused(w, ParameterError, w.owner, MigrateSlice(file_id=fid, slice_id="s0", from_node=c, to_node=a))
    refused(w, ParameterError, w.owner, MigrateSlice(file_id=fid, slice_id="s0", from_node=a, to_node=b))
    refused(w, ParameterError, w.owner,
            MigrateSlice(file_id=fid, slice_id="s0", from_node=a, to_node=w.ex1.node_id))
    refused(w, Unauthorized, w.owner2, MigrateSlice(file_id=fid, slice_id="s0", from_node=a, to_node=c))
    w.submit(w.owner, MigrateSlice(file_id=fid, slice_id="s0", from_node=a, to_node=c))
    assert w.led.get_file(fid).slice("s0").nodes == [c, b]
    assert w.led.list_files(node=a) == []
    assert [m.to_node for m in w.led.list_migrations(file_id=fid)] == [c]


# --- health ------------------------------------------------------------------------------------


def test_node_health(world):
    w = world
    fid = w.publish()
    good, flaky = w.s[0].node_id, w.s[1].node_id
    for _ in range(24):  # one heartbeat an hour for a day, from the good node only
        w.submit(w.s[0], Heartbeat())
        w.clock.advance(HOUR)
    for i in range(4):
        for node, slice_id in ((good, "s0"), (flaky, "s1")):
            r = w.submit(w.owner, IssueChallenge(node=node, file_id=fid, slice_id=slice_id))
            w.submit(w.owner, ResolveChallenge(challenge_id=r.object_id,
                                               proved=node == good or i == 0))
    hg = w.led.node_health(good)
    assert (hg.level, hg.proved, hg.failed) == ("Green", 4, 0)
    assert hg.heartbeat_hours == 24 and hg.expected_hours == 25
    hf = w.led.node_health(flaky)
    assert (hf.proved, hf.failed, hf.heartbeat_hours) == (1, 3, 0)
    assert hf.level == "Red" and hf.score == pytest.approx(0.7 * 0.25)
    # slice s0 has a Green replica, s1 only Yellow/Red ones: the file is its worst slice
    fh = w.led.file_health(fid)
    # s1 lives on the flaky node (Red) and storage2 (never challenged, no heartbeat: 0.7, Yellow)
    assert w.led.node_health(w.s[2].node_id).level == "Yellow"
    assert fh.slices == {"s0": "Green", "s1": "Yellow"} and fh.level == "Yellow"
    strict = HealthPolicy(challenge_weight=0.5, heartbeat_weight=0.5, green=0.99, yellow=0.9)
    assert w.led.node_health(good, policy=strict).level == "Yellow"  # 0.5 + 0.5 * 24/25
    # a week later, the window has moved past all of it
    later = w.led.node_health(flaky, now_ms=w.clock() + 8 * DAY)
    assert (later.proved, later.failed, later.heartbeat_hours) == (0, 0, 0)
    w.submit(w.s[0], SetNodeStatus(online=False))
    assert w.led.node_health(good).level == "Red"


# --- replay, signatures, atomicity ---------------------------------------------------------------


def test_replay_is_refused(world):
    w = world
    stx = w.led.sign(w.s[0], Heartbeat())
    w.led.append(stx)
    h = w.led.height
    with pytest.raises(DuplicateTransaction):
        w.led.append(stx)
    with pytest.raises(DuplicateTransaction):
        w.led.append(stx.encode())
    assert w.led.height == h


def test_bad_signature_and_foreign_chain(world):
    w = world
    stx = w.led.sign(w.s[0], Heartbeat())
    forged = SignedTx(stx.payload, bytes(64))
    with pytest.raises(InvalidSignature):
        w.led.append(forged)
    other = MemoryLedger(clock=w.clock)
    foreign = sign_tx(w.s[0], Heartbeat(), chain_id=other.chain_id, ts_ms=w.clock())
    with pytest.raises(InvalidSignature):
        w.led.append(foreign)
    with pytest.raises(MalformedInput):
        w.led.append(stx.encode()[:-1])


def test_timestamp_far_from_clock_is_refused(world):
    w = world
    refused(w, StateError, w.s[0], Heartbeat(), ts=w.clock() - 2 * HOUR)
    refused(w, StateError, w.s[0], Heartbeat(), ts=w.clock() + 2 * HOUR)


def test_append_many_is_atomic(world):
    w = world
    led = w.led
    ok = led.sign(w.s[0], Heartbeat())
    bad = led.sign(w.stranger, Heartbeat())
    h = led.height
    with pytest.raises(Unauthorized):
        led.append_many([ok, bad])
    assert led.height == h and led.get_node(w.s[0].node_id).last_heartbeat_ms == 0
    # later entries of a block see the earlier ones
    newbie = ident("newbie")
    rs = led.append_many([led.sign(newbie, RegisterNode(role="storage")), led.sign(newbie, Heartbeat())])
    assert [r.height for r in rs] == [h + 1, h + 1] and [r.index for r in rs] == [0, 1]
    assert led.block(h + 1).header.n == 2
    with pytest.raises(DuplicateTransaction):
        led.append_many([ok, ok])


@register_kind
class Attest(TxBody, tag="test_attest"):
    claim: str


@rule(Attest)
def _attest(state, tx, tx_id):
    state.require_node(tx, "storage")


def test_custom_kind_plugs_into_every_backend(world):
    with pytest.raises(ParameterError):  # a tag is registered once

        class Again(TxBody, tag="test_attest"):
            pass

        register_kind(Again)
    world.submit(world.s[0], Attest(claim="ok"))
    refused(world, Unauthorized, world.ex1, Attest(claim="no"))
    assert [e.kind for e in world.led.entries(world.led.height)] == ["test_attest"]


# --- chain, subscription -----------------------------------------------------------------------


def test_verify_chain_and_blocks(world):
    w = world
    w.ready_task()
    rep = w.led.verify_chain()
    assert rep.blocks == w.led.height + 1 and rep.entries == w.led.height
    b = w.led.block(3)
    assert b.header.prev_hash == w.led.block(2).hash
    with pytest.raises(NotFound):
        w.led.block(w.led.height + 1)


def test_verify_chain_finds_a_removed_tip_block(world):
    """Deleting the tip block behind the ledger's back is caught on every backend; where the
    backend stores something apart from the block (SQLite's entry rows, etcd's transaction index)
    the report names the entries left behind (issue 15)."""
    w = world
    w.submit(w.s[0], Heartbeat())
    tip = w.led.height
    w.led.verify_chain()
    remove_tip_block(w.led)
    assert w.led.height == tip - 1
    if isinstance(w.led, MemoryLedger):
        with pytest.raises(ChainCorrupted, match="state root"):  # no entry survives its block here
            w.led.verify_chain()
    else:
        with pytest.raises(ChainCorrupted, match=f"1 stored entries belong to no block .from height {tip}") as info:
            w.led.verify_chain()
        assert info.value.height == tip


def test_subscribe_replays_then_follows(world):
    w = world
    start = w.led.height + 1
    got = []
    done = threading.Event()

    def cb(entry):
        got.append(entry)
        if len(got) == 3:
            done.set()

    with w.led.watch(cb, start, kinds={"publish_task", "issue_challenge"}) as sub:
        task_id, f1, _ = w.two_party_task()  # one publish_task among several entries
        w.submit(w.owner, IssueChallenge(node=w.s[0].node_id, file_id=f1, slice_id="s0"))
        w.submit(w.owner, IssueChallenge(node=w.s[1].node_id, file_id=f1, slice_id="s0"))
        assert done.wait(10), sub.error
    assert [e.kind for e in got] == ["publish_task", "issue_challenge", "issue_challenge"]
    assert got[0].object_id == task_id and got[0].tx.body.algorithm == "linear-vfl"
    # a storage node follows only the challenges addressed to it, an executor its tasks
    mine = [e.tx.body.node for e in w.led.subscribe(1, kinds={"issue_challenge"},
                                                    involving=w.s[1].node_id, timeout=0)]
    assert mine == [w.s[1].node_id]
    tasks = list(w.led.subscribe(1, kinds={"publish_task"}, involving=w.ex2.node_id, timeout=0))
    assert [e.object_id for e in tasks] == [task_id]
    assert list(w.led.subscribe(1, kinds={"publish_task"}, involving=w.s[0].node_id, timeout=0)) == []
    # an iterator from an old height replays history and stops after the idle timeout
    kinds = [e.kind for e in w.led.subscribe(1, kinds={"create_namespace"}, timeout=0.05)]
    assert kinds == ["create_namespace", "create_namespace"]


def test_replay_audit_finds_state_changed_behind_the_ledger(world):
    w = world
    task_id = w.ready_task()
    rep = w.led.verify_chain(replay=True)
    assert rep.entries == w.led.height
    task = w.led.get_task(task_id)
    task.status = "Finished"
    from dtxfast.ledger.records import encode_record

    tamper_record(w.led, "task", task_id, encode_record(task))
    # the chain itself is intact, but the tip's header commits to the state: no replay needed
    with pytest.raises(ChainCorrupted, match="state root") as info:
        w.led.verify_chain()
    assert info.value.height == w.led.height
    with pytest.raises(ChainCorrupted, match=f"task {task_id}"):  # a replay names the record
        w.led.verify_chain(replay=True)


def test_replay_audit_finds_an_entry_the_contract_refuses(world):
    w = world
    w.submit(w.s[0], Heartbeat())
    bad_height = w.led.height + 1
    force_block(w.led, [w.led.sign(w.stranger, Heartbeat())])  # a stranger may not heartbeat
    w.submit(w.s[1], Heartbeat())
    assert w.led.verify_chain().blocks == w.led.height + 1  # hashes and signatures are fine
    with pytest.raises(ChainCorrupted) as info:
        w.led.verify_chain(replay=True)
    assert info.value.height == bad_height and "refuses" in info.value.reason
    # a forged signature in a forced block is named by the plain check
    stx = w.led.sign(w.s[0], Heartbeat())
    force_block(w.led, [SignedTx(stx.payload, bytes(64))])
    with pytest.raises(ChainCorrupted) as info:
        w.led.verify_chain()
    assert info.value.height == w.led.height and "signature" in info.value.reason


def test_parallel_verification_names_the_first_bad_height(world):
    w = world
    for i in range(6):
        w.submit(w.s[i % 3], Heartbeat())
    first_bad = w.led.height + 1
    for _ in range(2):  # two forged blocks; the lower one must be named
        stx = w.led.sign(w.s[0], Heartbeat())
        force_block(w.led, [SignedTx(stx.payload, bytes(64))])
        w.submit(w.s[1], Heartbeat())
    for workers in (1, 2):
        with pytest.raises(ChainCorrupted) as info:
            w.led.verify_chain(workers=workers, batch=2)
        assert info.value.height == first_bad


def test_threads_append_concurrently(world):
    w = world
    start = w.led.height
    errors = []

    def beat(node):
        try:
            for _ in range(20):
                w.submit(node, Heartbeat())
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=beat, args=(n,)) for n in w.s]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert w.led.height == start + 60
    assert sum(1 for e in w.led.entries(start + 1) if e.kind == "heartbeat") == 60
    assert w.led.verify_chain(replay=True).entries == w.led.height
