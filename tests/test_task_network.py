"""The whole task flow with real processes on loopback (issue 12).

One module-scoped network (:class:`~dtxfast.nodes.cluster.LocalCluster`: a SQLite ledger, 3
storage nodes, 4 data-owner nodes, 3 executors, each its own process) carries every test; the
tests that only need a fresh task share it, and the test that kills an executor restarts it. The
fixture's finalizer stops every process, also when a test fails, and checks the ledger verifies.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dtxfast.errors import ParameterError, StateError, Unauthorized
from dtxfast.ledger import NodeIdentity
from dtxfast.ledger.records import TaskStatus
from dtxfast.nodes.cluster import LocalCluster, wait_for_task
from dtxfast.nodes.requester import fetch_result, publish_task, start_task, task_metrics, task_view
from dtxfast.storage.network import StorageNetwork

KEYS = {"keyBits": 1024, "psiBits": 1024}
TIMEOUT = 300.0


def _write(path: Path, head: list[str], rows: list[list[object]]) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(head)
        w.writerows(rows)
    return path


def _dataset(folder: Path, name: str, cols: list[int], n: int, seed: int, label: str = "y",
             classify: bool = False) -> dict:
    """Parties' train/predict CSVs of a synthetic dataset; the last party holds the label."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, sum(cols)))
    z = X @ rng.normal(size=sum(cols)) + 0.5
    y = np.where(z > 0, "yes", "no") if classify else np.round(z + 0.1 * rng.normal(size=n), 6)
    ids = [f"{name}-{i:04d}" for i in range(n)]
    pred = set(rng.choice(n, size=n // 4, replace=False).tolist())
    out: dict = {"truth": {ids[i]: y[i] for i in pred}, "train": [], "predict": []}
    start = 0
    for p, c in enumerate(cols):
        last = p == len(cols) - 1
        for kind in ("train", "predict"):
            rows = [i for i in rng.permutation(n) if (i in pred) == (kind == "predict")]
            rows = rows[: len(rows) - 2 * p]  # each party misses a few ids
            head = ["id"] + [f"{name}{p}_{j}" for j in range(c)] + ([label] if last and kind == "train" else [])
            body = [[ids[i]] + [f"{v:.6f}" for v in X[i, start:start + c]]
                    + ([y[i]] if last and kind == "train" else []) for i in rows]
            body += [[f"{name}-only{p}-{kind}"] + ["0.5"] * c + ([y[0]] if last and kind == "train" else [])]
            out[kind].append(_write(folder / f"{name}-p{p}-{kind}.csv", head, body))
        start += c
    return out


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    base = tmp_path_factory.mktemp("tasknet")
    cluster = LocalCluster(base, keep=True, heartbeat=1.0, poll=0.1, task_timeout=60.0)
    try:
        executors = ["ex1", "ex2", "ex3"]
        ex_ids = [cluster.node_id(e) for e in executors]
        cluster.start_many([lambda i=i: cluster.start_storage(f"storage{i}") for i in range(3)]
                           + [lambda o=o: cluster.start_dataowner(o, executors=ex_ids) for o in ("oa", "ob", "oc")]
                           + [lambda: cluster.start_dataowner("om", approve="manual")]
                           + [lambda e=e: cluster.start_executor(e) for e in executors])
        data = {
            "lin": _dataset(base, "lin", [3, 2], 60, 1),
            "log": _dataset(base, "log", [2, 3], 60, 2, label="outcome", classify=True),
            "dnn": _dataset(base, "dnn", [2, 2, 2], 48, 3),
            "slow": _dataset(base, "slow", [2, 2], 200, 4),
        }
        owners = ["oa", "ob", "oc"]
        files: dict = {}
        for name, d in data.items():
            for kind in ("train", "predict"):
                files[name, kind] = [
                    StorageNetwork(cluster.ledger, cluster.identity(owners[p])).upload(path, replicas=2)
                    for p, path in enumerate(d[kind])]
        manual = StorageNetwork(cluster.ledger, cluster.identity("om")).upload(data["lin"]["train"][0], replicas=2)
        cluster.data, cluster.files, cluster.ex_ids, cluster.manual_file = data, files, ex_ids, manual
        cluster.requester = cluster.identity("requester")
        yield cluster
        cluster.ledger.verify_chain()  # the ledger verifies after every run
    finally:
        cluster.close()


def _run(net, *, algorithm, kind, data, params, model="", executors=None, label="y", wait=TaskStatus.FINISHED):
    tid = publish_task(net.ledger, net.requester, algorithm=algorithm, kind=kind, files=net.files[data, kind],
                       executors=executors or net.ex_ids[:len(net.files[data, kind])], label=label,
                       id_column="id", params=params, model_task=model)
    return tid


def _finish(net, tids):
    for tid in tids:
        wait_for_task(net.ledger, tid, (TaskStatus.READY,), timeout=TIMEOUT)
        start_task(net.ledger, net.requester, tid)
    return [wait_for_task(net.ledger, tid, (TaskStatus.FINISHED,), timeout=TIMEOUT) for tid in tids]


def _in_process_linear(data: dict) -> dict[str, float]:
    """The in-process estimator (both parties in this process) trained and applied on the same files."""
    from dtxfast.nodes.jobs import TaskSpec, read_party_csv
    from dtxfast.vfl import VerticalLinearRegression

    spec = TaskSpec.from_params("linear", "train", label="y", id_column="id", params={}, parties=2)
    tr = [read_party_csv(p, spec) for p in data["train"]]
    te = [read_party_csv(p, spec) for p in data["predict"]]

    def aligned(tables):
        common = sorted(set(tables[0].ids) & set(tables[1].ids))
        return common, [t.X[[t.ids.index(c) for c in common]] for t in tables]

    _, (XA, XB) = aligned(tr)
    y = tr[1].y[[tr[1].ids.index(c) for c in aligned(tr)[0]]]
    est = VerticalLinearRegression(alpha=0.2, max_epochs=4, batch_size=0, key_bits=1024, random_state=7)
    est.fit([XA, XB], y)
    ids, (PA, PB) = aligned(te)
    return dict(zip(ids, est.predict([PA, PB])))


def _read(path: Path) -> dict[str, list[str]]:
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    return {r[0]: r[1:] for r in rows[1:]}


@pytest.fixture(scope="module")
def trained(net):
    """A linear and a logistic training task run at the same time on the same two executors."""
    lin = _run(net, algorithm="linear", kind="train", data="lin",
               params={**KEYS, "epochs": 4, "batchSize": 0, "alpha": 0.2, "seed": 7})
    log = _run(net, algorithm="logistic", kind="train", data="log", label="outcome",
               params={**KEYS, "epochs": 3, "batchSize": 0, "alpha": 0.2, "positiveClass": "yes", "seed": 7,
                       "evalMethod": "split", "testSize": 0.3})
    recs = _finish(net, [lin, log])
    return {"lin": lin, "log": log, "records": recs}


def test_two_concurrent_trainings_finish(net, trained):
    for rec in trained["records"]:
        assert rec.status == TaskStatus.FINISHED
        assert any(r.startswith("model:") for r in rec.results)
        view = task_view(net.ledger, rec.task_id)
        events = [e["event"] for e in view["timeline"]]
        assert events[0] == "publish_task" and events[-1] == "finish_task"
        assert {"confirm_task", "start_task", "process_task", "report_progress"} <= set(events)
        assert all(p["confirmed"] and p["progress"] is not None for p in view["parties"])
    # the evaluation metrics are the requester's: sealed on the (public) ledger
    log = net.ledger.get_task(trained["log"])
    assert not any("accuracy" in r for r in log.results)
    metrics = task_metrics(log, net.requester)
    assert metrics is not None and 0.0 <= metrics["accuracy"] <= 1.0
    with pytest.raises(Unauthorized):
        task_metrics(log, NodeIdentity.generate())
    # no executor keeps the decrypted sample file after the task; each executor cleans up after
    # the task's last message, so the leader's finish can reach the ledger first (seen in a run)
    deadline = time.monotonic() + 30
    for rec in trained["records"]:
        for ex in ("ex1", "ex2"):
            work = net.base / "data" / ex / "tasks" / rec.task_id
            while not ((work / "done").exists() and not (work / "work").exists()):
                assert time.monotonic() < deadline, f"{ex} kept the work folder of task {rec.task_id}"
                time.sleep(0.05)
    # their runs overlapped in time: both were Processing at once
    spans = []
    for rec in trained["records"]:
        tl = task_view(net.ledger, rec.task_id)["timeline"]
        spans.append((min(e["time_ms"] for e in tl if e["event"] == "process_task"),
                      max(e["time_ms"] for e in tl if e["event"] == "finish_task")))
    assert spans[0][0] < spans[1][1] and spans[1][0] < spans[0][1]


@pytest.mark.parametrize("which", ["lin", "log"])
def test_prediction_result_only_for_its_requester(net, trained, tmp_path, which):
    algorithm = "linear" if which == "lin" else "logistic"
    params = {**KEYS} if which == "lin" else {**KEYS, "positiveClass": "yes"}
    tid = _run(net, algorithm=algorithm, kind="predict", data=which, params=params, model=trained[which],
               label="y" if which == "lin" else "outcome")
    (rec,) = _finish(net, [tid])
    out = tmp_path / "pred.csv"
    fetch_result(net.ledger, net.requester, tid, out)
    got = _read(out)
    truth = net.data[which]["truth"]
    common = set(truth) & set(got)
    assert len(common) >= len(truth) - 4 and not set(got) - set(truth)  # PSI: only ids every party has
    if which == "lin":
        pred = np.array([float(got[i][0]) for i in sorted(common)])
        true = np.array([float(truth[i]) for i in sorted(common)])
        assert np.corrcoef(pred, true)[0, 1] > 0.5  # a trained model, de-standardized into label units
        # the same as the in-process runner on the same files (aligned rows, config, batch seed)
        want = _in_process_linear(net.data["lin"])
        ids = sorted(got)
        np.testing.assert_allclose([float(got[i][0]) for i in ids], [want[i] for i in ids],
                                   atol=1e-3 * max(abs(v) for v in want.values()))
    else:
        assert {got[i][0] for i in common} <= {"yes", "no"}
    # another requester can neither unseal the key nor fetch the replicas
    other = NodeIdentity.generate()
    with pytest.raises(Unauthorized):
        fetch_result(net.ledger, other, tid, tmp_path / "x.csv")
    fid = next(r.split(":", 1)[1] for r in rec.results if r.startswith("result:"))
    with pytest.raises(Exception) as info:
        StorageNetwork(net.ledger, other).download(fid, tmp_path / "y.csv", key=b"\0" * 32)
    assert "403" in str(info.value) or "not" in str(info.value).lower()
    assert not (tmp_path / "y.csv").exists()


def test_three_party_dnn_task(net, tmp_path):
    params = {"psiBits": 1024, "hiddenLayers": "4", "epochs": 2, "batchSize": 16, "learningRate": 0.05, "seed": 3}
    train = _run(net, algorithm="dnn", kind="train", data="dnn", params=params)
    (rec,) = _finish(net, [train])
    assert rec.status == TaskStatus.FINISHED
    pred = _run(net, algorithm="dnn", kind="predict", data="dnn", params=params, model=train)
    _finish(net, [pred])
    fetch_result(net.ledger, net.requester, pred, tmp_path / "dnn.csv")
    got = _read(tmp_path / "dnn.csv")
    assert got and all(np.isfinite(float(v[0])) for v in got.values())


def test_unapproved_executor_never_starts(net):
    files = [net.manual_file, net.files["lin", "train"][1]]
    tid = publish_task(net.ledger, net.requester, algorithm="linear", kind="train", files=files,
                       executors=net.ex_ids[:2], label="y", id_column="id", params=KEYS)
    deadline = time.monotonic() + 30
    while not net.ledger.list_applications(file_id=net.manual_file):
        assert time.monotonic() < deadline, "the executor did not apply for the file"
        time.sleep(0.1)
    (app,) = net.ledger.list_applications(file_id=net.manual_file)
    assert app.status == "Unapproved" and app.executor == net.ex_ids[0]
    with pytest.raises(StateError, match="Confirming"):
        start_task(net.ledger, net.requester, tid)
    # the owner says no: the executor rejects the task with the reason
    out = subprocess.run([sys.executable, "-m", "dtxfast", "file", "reject", app.application_id, "--reason",
                          "not for this purpose", "--key", str(net.key_path("om")), "-L", str(net.ledger_path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    rec = wait_for_task(net.ledger, tid, (TaskStatus.REJECTED,), timeout=60)
    assert "not for this purpose" in rec.reason and net.ex_ids[0] in rec.reason


def test_executor_killed_mid_training_fails_the_task(net):
    tid = _run(net, algorithm="linear", kind="train", data="slow",
               params={**KEYS, "epochs": 400, "batchSize": 16, "alpha": 0.01})
    wait_for_task(net.ledger, tid, (TaskStatus.READY,), timeout=TIMEOUT)
    start_task(net.ledger, net.requester, tid)
    deadline = time.monotonic() + TIMEOUT
    while True:  # wait until both parties train
        rec = net.ledger.get_task(tid)
        if all(p.stage == "train" and p.done >= 1 for p in rec.progress.values()) and len(rec.progress) == 2:
            break
        assert rec.status in (TaskStatus.TO_PROCESS, TaskStatus.PROCESSING), rec.reason
        assert time.monotonic() < deadline
        time.sleep(0.1)
    victim = net.processes["ex2"]
    victim.kill()
    killed = time.monotonic()
    rec = wait_for_task(net.ledger, tid, (TaskStatus.FAILED,), timeout=90)
    assert time.monotonic() - killed < 90
    assert rec.reason and net.ex_ids[0] in rec.reason  # the surviving party says what happened
    # a restarted executor comes back cleanly and serves new tasks
    net.start_executor("ex2")
    assert net.ledger.get_task(tid).status == TaskStatus.FAILED


def test_bad_parameters_are_refused_at_publish(net):
    with pytest.raises(ParameterError):
        _run(net, algorithm="linear", kind="train", data="lin", params={**KEYS, "alpha": "fast"})
    with pytest.raises(ParameterError):
        _run(net, algorithm="linear", kind="train", data="lin", params={**KEYS, "bogus": 1})
    with pytest.raises(ParameterError):
        _run(net, algorithm="dnn", kind="train", data="lin", params={})  # dnn needs three parties
    out = subprocess.run([sys.executable, "-m", "dtxfast", "task", "publish", "--key",
                          str(net.key_path("requester")), "-L", str(net.ledger_path), "--algo", "linear",
                          "--kind", "train", "--files", ",".join(net.files["lin", "train"]),
                          "--executors", ",".join(net.ex_ids[:2]), "--label", "y", "--id-column", "id",
                          "-p", "epochs=-3"], capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "epochs" in out.stderr


def test_cli_list_show_result(net, trained, tmp_path):
    env = {**os.environ}
    run = lambda *a: subprocess.run([sys.executable, "-m", "dtxfast", *a], capture_output=True, text=True,  # noqa: E731
                                    timeout=120, env=env)
    out = run("task", "list", "-L", str(net.ledger_path), "--json")
    assert out.returncode == 0, out.stderr
    import json

    tasks = {t["task_id"]: t for t in json.loads(out.stdout)}
    assert tasks[trained["lin"]]["status"] == "Finished"
    out = run("task", "show", trained["lin"], "-L", str(net.ledger_path), "--json")
    view = json.loads(out.stdout)
    assert view["status"] == "Finished" and view["timeline"]
    out = run("task", "show", trained["lin"], "-L", str(net.ledger_path))
    assert "timeline:" in out.stdout and "finish_task" in out.stdout
    out = run("nodes", "list", "-L", str(net.ledger_path), "--json")
    roles = {n["role"] for n in json.loads(out.stdout)}
    assert {"storage", "dataowner", "executor", "requester"} <= roles


def test_restarted_executor_fails_its_interrupted_task(net):
    """Both executors of a task die at once (nobody is left to notice): the first to come back
    fails the task it had in flight, instead of leaving it Processing for ever."""
    import signal

    tid = _run(net, algorithm="linear", kind="train", data="slow", executors=[net.ex_ids[0], net.ex_ids[2]],
               params={**KEYS, "epochs": 400, "batchSize": 16, "alpha": 0.01})
    wait_for_task(net.ledger, tid, (TaskStatus.READY,), timeout=TIMEOUT)
    start_task(net.ledger, net.requester, tid)
    deadline = time.monotonic() + TIMEOUT
    while True:
        rec = net.ledger.get_task(tid)
        if len(rec.progress) == 2 and all(p.stage == "train" and p.done >= 1 for p in rec.progress.values()):
            break
        assert rec.status in (TaskStatus.TO_PROCESS, TaskStatus.PROCESSING), rec.reason
        assert time.monotonic() < deadline
        time.sleep(0.1)
    procs = [net.processes["ex1"], net.processes["ex3"]]
    for p in procs:  # frozen first, so neither sees the other go
        os.kill(p.proc.pid, signal.SIGSTOP)
    for p in procs:
        p.kill()
    assert net.ledger.get_task(tid).status == TaskStatus.PROCESSING
    net.start_executor("ex1")
    rec = wait_for_task(net.ledger, tid, (TaskStatus.FAILED,), timeout=60)
    assert "restarted" in rec.reason and net.ex_ids[0] in rec.reason
    net.start_executor("ex3")
