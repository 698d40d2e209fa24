"""The main job: a whole dtxfast network on this machine, running real tasks end to end.

:func:`run_network_demo` is what ``dtx demo`` runs, on the embedded default (a SQLite ledger in a
directory, local processes, no server to start by hand):

1. It starts 3 storage nodes, a DataOwner node per party (approving the demo's executors
   automatically), and the executors, each a separate process (:class:`LocalCluster`).
2. Each data owner encrypts its part of scikit-learn's bundled datasets (training rows and
   prediction rows, columns split between the parties, some ids only one party has) and uploads it
   to the storage network.
3. The requester publishes a linear (diabetes) and a logistic (breast cancer) regression training
   task at once, the executors apply for the files, the owners approve, the executors confirm,
   the requester starts both, and they run in parallel over the executors' mutual-TLS network (PSI
   alignment, then training under Paillier, secret-shared model), with live progress read from
   the ledger. Then a prediction task per model, and a three-party DNN training and prediction.
4. The requester downloads each prediction result (only it can decrypt it), and the demo prints
   the metrics beside centralized scikit-learn trained on the same rows, and where everything is.

Examples
--------
Run it with ``dtx demo --quick --workdir DIR`` (a couple of minutes on 2 cores); afterwards
``dtx task list -L DIR/ledger.db`` shows the tasks.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ProtocolError
from ..ledger.records import TaskStatus
from ..vfl.demo import _datasets  # scikit-learn's bundled data, or a readable error
from .cluster import LocalCluster
from .requester import fetch_result, publish_task, start_task

__all__ = ["DemoJob", "run_network_demo"]

_FINAL = (TaskStatus.FINISHED, TaskStatus.FAILED, TaskStatus.REJECTED)


@dataclass
class DemoJob:
    """One dataset's part of the demo: its parties' files, tasks and outcome."""

    name: str
    algorithm: str
    label: str
    parties: int
    params: dict[str, Any]
    truth: dict[str, Any] = field(default_factory=dict)
    train_files: list[str] = field(default_factory=list)
    predict_files: list[str] = field(default_factory=list)
    train_task: str = ""
    predict_task: str = ""
    central: dict[str, float] = field(default_factory=dict)
    federated: dict[str, float] = field(default_factory=dict)
    result_path: str = ""
    seconds: float = 0.0
    data: Any = None  # (X, y, training rows, ids): for the centralized reference


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


def _split_parties(job: DemoJob, X: np.ndarray, y: np.ndarray, cols: Sequence[range], folder: Path,
                   rng: np.random.Generator) -> tuple[list[list[Path]], list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Write each party's training and prediction CSVs; the last party holds the label.

    Returns ([train paths, predict paths] per party, ids, train rows, predict rows, y).
    """
    n = len(y)
    ids = [f"{job.name}-{i:05d}" for i in range(n)]
    order = rng.permutation(n)
    n_pred = max(10, int(0.3 * n))
    pred_rows, train_rows = np.sort(order[:n_pred]), np.sort(order[n_pred:])
    paths = []
    for p, cr in enumerate(cols):
        out = []
        for kind, rows in (("train", train_rows), ("predict", pred_rows)):
            head = ["id"] + [f"p{p}_x{c}" for c in cr] + ([job.label] if p == len(cols) - 1 and kind == "train" else [])
            keep = rows[rng.random(len(rows)) >= 0.05]  # each party misses a few ids: PSI finds the common ones
            body = [[ids[i]] + [f"{X[i, c]:.6g}" for c in cr] + ([y[i]] if p == len(cols) - 1 and kind == "train" else [])
                    for i in rng.permutation(keep)]
            extra = [[f"{job.name}-p{p}-only-{kind}-{j}"] + [f"{v:.6g}" for v in rng.normal(size=len(cr))]
                     + ([y[0]] if p == len(cols) - 1 and kind == "train" else []) for j in range(3)]
            path = folder / f"{job.name}-party{p}-{kind}.csv"
            _write_csv(path, head, body + extra)
            out.append(path)
        paths.append(out)
    return paths, ids, train_rows, pred_rows, y


def _central(job: DemoJob, X: np.ndarray, y: np.ndarray, train_rows: np.ndarray, test_ids: list[str],
             ids: list[str]) -> dict[str, float]:
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.neural_network import MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from ..vfl.evaluation import classification_metrics, regression_metrics

    pos = {v: i for i, v in enumerate(ids)}
    te = np.array([pos[i] for i in test_ids], dtype=int)
    if job.algorithm == "logistic":
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)).fit(X[train_rows], y[train_rows])
        k = list(clf.classes_).index(job.params["positiveClass"])
        return classification_metrics(y[te] == job.params["positiveClass"], clf.predict_proba(X[te])[:, k])
    if job.algorithm == "dnn":
        hidden = tuple(int(h) for h in str(job.params.get("hiddenLayers", "16")).split(","))
        reg = make_pipeline(StandardScaler(), MLPRegressor(hidden_layer_sizes=hidden, max_iter=2000, random_state=0))
        ys = (y - y[train_rows].mean()) / y[train_rows].std()
        reg.fit(X[train_rows], ys[train_rows])
        return regression_metrics(y[te].astype(float), reg.predict(X[te]) * y[train_rows].std() + y[train_rows].mean())
    reg = LinearRegression().fit(X[train_rows], y[train_rows])
    return regression_metrics(y[te].astype(float), reg.predict(X[te]))


def _federated(job: DemoJob, path: Path) -> tuple[dict[str, float], list[str]]:
    from ..vfl.evaluation import classification_metrics, regression_metrics

    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    head, body = rows[0], rows[1:]
    got_ids = [r[0] for r in body]
    truth = np.array([job.truth[i] for i in got_ids])
    if job.algorithm == "logistic":
        proba = np.array([float(r[head.index("probability")]) for r in body])
        return classification_metrics(truth == job.params["positiveClass"], proba), got_ids
    pred = np.array([float(r[head.index("prediction")]) for r in body])
    return regression_metrics(truth.astype(float), pred), got_ids


class _Follow:
    """Live view of tasks' status and per-party progress, read from the ledger."""

    def __init__(self, console: Any, cluster: LocalCluster) -> None:
        self.console, self.cluster = console, cluster

    def table(self, tasks: dict[str, str]) -> Any:
        from rich.table import Table

        t = Table(title="tasks (read from the ledger)", title_justify="left")
        for col in ("task", "id", "status", "parties: stage done/total (loss)"):
            t.add_column(col)
        led = self.cluster.ledger
        for name, tid in tasks.items():
            rec = led.get_task(tid)
            parts = []
            for i, e in enumerate(rec.executors):
                p = rec.progress.get(e)
                parts.append(f"p{i} -" if p is None else f"p{i} {p.stage} {p.done}/{p.total}"
                             + (f" ({p.loss:.4g})" if p.loss is not None else ""))
            status = rec.status + (f": {rec.reason[:60]}" if rec.reason else "")
            t.add_row(name, tid[:12], status, "  ".join(parts))
        return t

    def until(self, tasks: dict[str, str], statuses: Sequence[str], timeout: float) -> None:
        from rich.live import Live

        deadline = time.monotonic() + timeout
        led = self.cluster.ledger
        with Live(self.table(tasks), console=self.console, refresh_per_second=4, transient=False) as live:
            while True:
                recs = {n: led.get_task(t) for n, t in tasks.items()}
                live.update(self.table(tasks))
                bad = [(n, r) for n, r in recs.items() if r.status in _FINAL and r.status not in statuses]
                if bad:
                    n, r = bad[0]
                    raise ProtocolError(f"task {n} ({r.task_id}) ended {r.status}: {r.reason}")
                if all(r.status in statuses for r in recs.values()):
                    break
                if time.monotonic() > deadline:
                    stuck = ", ".join(f"{n} {r.status}" for n, r in recs.items() if r.status not in statuses)
                    raise ProtocolError(f"tasks did not get there within {timeout:g} s: {stuck}")
                time.sleep(0.25)
        self.console.print()


def run_network_demo(console: Any = None, *, workdir: str | Path | None = None, quick: bool = False,
                     keep: bool = False, bits: int = 2048, timeout: float = 1800.0) -> dict[str, Any]:
    """Start the network, run the demo's tasks, print the results; returns what happened.

    Parameters
    ----------
    console : rich Console, optional
    workdir : path, optional
        Keep the ledger (``ledger.db``), keys (``keys/*.key``), data and logs here after the
        processes stop (default: a temporary directory, removed at the end).
    quick : bool
        Small data, 1024-bit keys, few epochs (a couple of minutes on 2 cores).
    keep : bool
        Leave the network running (the processes keep serving; stop them with ``kill``; their PIDs
        are printed).
    bits : int
        Paillier and PSI key sizes (``quick`` uses 1024).
    """
    from rich.console import Console
    from rich.table import Table

    from ..storage.network import StorageNetwork

    console = console or Console()
    datasets = _datasets()
    if quick:
        bits = 1024
    rng = np.random.default_rng(20261130)
    Xd, yd = datasets.load_diabetes(return_X_y=True)
    Xc, yc_raw = datasets.load_breast_cancer(return_X_y=True)
    yc = np.where(yc_raw == 0, "malignant", "benign")
    if quick:
        Xd, yd, Xc, yc = Xd[:160], yd[:160], Xc[:200], yc[:200]
    common = {"keyBits": bits, "psiBits": bits}
    jobs = [
        DemoJob("diabetes", "linear", "progression", 2,
                {**common, "alpha": 0.3, "epochs": 10 if quick else 40, "batchSize": 0}),
        DemoJob("breast-cancer", "logistic", "diagnosis", 2,
                {**common, "alpha": 0.3, "epochs": 6 if quick else 15, "batchSize": 0, "positiveClass": "malignant"}),
        DemoJob("diabetes-dnn", "dnn", "progression", 3,
                {"psiBits": bits, "hiddenLayers": "8" if quick else "16", "epochs": 20 if quick else 30,
                 "batchSize": 32, "learningRate": 0.05}),
    ]
    data = {"diabetes": (Xd, yd, [range(0, 5), range(5, 10)]),
            "breast-cancer": (Xc, yc, [range(0, 15), range(15, 30)]),
            "diabetes-dnn": (Xd, yd, [range(0, 3), range(3, 6), range(6, 10)])}
    out: dict[str, Any] = {"jobs": jobs}
    base = Path(workdir) if workdir is not None else None
    cluster = LocalCluster(base, keep=keep or base is not None)
    t_all = time.monotonic()
    try:
        console.rule("dtxfast demo: the whole network on this machine")
        executors = [f"executor-{i}" for i in (1, 2, 3)]
        owners = ["owner-a", "owner-b", "owner-c"]
        ex_ids = [cluster.node_id(e) for e in executors]
        t = time.monotonic()
        cluster.start_many([lambda i=i: cluster.start_storage(f"storage-{i}") for i in (1, 2, 3)]
                           + [lambda o=o: cluster.start_dataowner(o, executors=ex_ids) for o in owners]
                           + [lambda e=e: cluster.start_executor(e) for e in executors])
        console.print(f"started {len(cluster.processes)} node processes in {time.monotonic() - t:.1f} s "
                      f"on ledger {cluster.ledger_path}")
        for name, proc in cluster.processes.items():
            console.print(f"  {name:<12} {cluster.node_id(name)}  {proc.url}")
        requester = cluster.identity("requester")
        folder = cluster.base / "samples"
        folder.mkdir(exist_ok=True)
        with console.status("data owners encrypt and upload their samples"):
            t = time.monotonic()
            for job in jobs:
                X, y, cols = data[job.name]
                paths, ids, train_rows, pred_rows, y = _split_parties(job, X, y, cols, folder, rng)
                job.truth = {ids[i]: y[i] for i in pred_rows}
                job.data = (X, y, train_rows, ids)
                for p, (tr_path, pr_path) in enumerate(paths):
                    net = StorageNetwork(cluster.ledger, cluster.identity(owners[p]))
                    job.train_files.append(net.upload(tr_path, namespace="samples", replicas=2))
                    job.predict_files.append(net.upload(pr_path, namespace="samples", replicas=2))
        console.print(f"uploaded {sum(2 * j.parties for j in jobs)} sample files (encrypted, 2 replicas each) "
                      f"in {time.monotonic() - t:.1f} s")
        follow = _Follow(console, cluster)

        def publish(job: DemoJob, kind: str) -> str:
            files = job.train_files if kind == "train" else job.predict_files
            return publish_task(cluster.ledger, requester, algorithm=job.algorithm, kind=kind, files=files,
                                executors=ex_ids[:job.parties], label=job.label, id_column="id",
                                params=job.params, model_task=job.train_task if kind == "predict" else "",
                                name=f"{job.name} {kind}")

        for group in (jobs[:2], jobs[2:]):
            for kind in ("train", "predict"):
                t = time.monotonic()
                tasks = {}
                for job in group:
                    tid = publish(job, kind)
                    setattr(job, f"{kind}_task", tid)
                    tasks[f"{job.name} {kind}"] = tid
                console.print(f"published {', '.join(tasks)}: executors apply, owners approve, executors confirm")
                follow.until(tasks, (TaskStatus.READY,), timeout)
                for tid in tasks.values():
                    start_task(cluster.ledger, requester, tid)
                follow.until(tasks, (TaskStatus.FINISHED,), timeout)
                for job in group:
                    job.seconds += time.monotonic() - t
        for job in jobs:
            path = cluster.base / "results" / f"{job.name}-predictions.csv"
            path.parent.mkdir(exist_ok=True)
            fetch_result(cluster.ledger, requester, job.predict_task, path)
            job.result_path = str(path)
            job.federated, got = _federated(job, path)
            X, y, train_rows, ids = job.data
            job.central = _central(job, X, y, train_rows, got, ids)
        for job in jobs:
            table = Table(title=f"{job.name} ({job.algorithm}, {job.parties} parties): "
                                f"{len(job.truth)} prediction rows", title_justify="left")
            table.add_column("metric")
            table.add_column("dtxfast network", justify="right")
            table.add_column("centralized scikit-learn", justify="right")
            for k in job.federated:
                table.add_row(k, f"{job.federated[k]:.4f}", f"{job.central.get(k, float('nan')):.4f}")
            console.print(table)
            console.print(f"  tasks {job.train_task} (train), {job.predict_task} (predict); "
                          f"result decrypted by the requester into {job.result_path}")
        report = cluster.ledger.verify_chain()
        console.print(f"ledger verified: {report.blocks} blocks, {report.entries} signed entries, "
                      f"tip {report.tip_hash[:16]}")
        console.print(f"done in {time.monotonic() - t_all:.0f} s; workdir {cluster.base}")
        if base is not None:
            console.print(f"  try: dtx task list -L {cluster.ledger_path}   "
                          f"dtx task result {jobs[0].predict_task} --key {cluster.key_path('requester')} "
                          f"-L {cluster.ledger_path} -o out.csv")
        out.update(workdir=str(cluster.base), seconds=time.monotonic() - t_all)
        return out
    finally:
        if keep:
            console.print("the network keeps running (--keep): PIDs "
                          + ", ".join(f"{n}={p.proc.pid}" for n, p in cluster.processes.items() if p.proc))
            cluster.ledger.close()
        else:
            cluster.close()
            console.print("stopped every node process")
