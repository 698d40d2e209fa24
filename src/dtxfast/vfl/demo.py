"""The main job in one process: PSI alignment, federated linear and logistic regression, evaluation.

:func:`run_demo` plays two parties, A (features only) and B (features and labels), on
scikit-learn's bundled datasets (``load_diabetes`` for regression, ``load_breast_cancer`` for
classification), each with its columns split between the parties:

1. Each party holds its rows under string ids, shuffled, and some ids only one side has.
   They align with RSA blind-signature PSI (:mod:`dtxfast.protocols.psi`; B signs, A requests and
   learns the intersection, then tells B, since both need the common rows) and sort their rows
   by id.
2. Both derive the same 70/30 split from the task id; they train the federated model under
   Paillier (each with its own key pair) with a live progress bar showing the loss.
3. B obtains the predictions of the held-out rows and computes the metrics, printed beside those
   of centralized scikit-learn trained on the same rows.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..errors import BackendUnavailable
from .align import psi_align
from .evaluation import classification_metrics, random_split, regression_metrics, seed_from_task

__all__ = ["run_demo"]


def _datasets() -> Any:
    try:
        from sklearn import datasets
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise BackendUnavailable(
            "the demo uses scikit-learn's bundled datasets: pip install 'dtxfast[demo]' (or scikit-learn)"
        ) from exc
    return datasets


def _party_rows(n: int, rng: np.random.Generator, drop: float, extra: int, prefix: str) -> tuple[list[str], np.ndarray]:
    """Ids and source-row indices one party holds: most shared rows, some private, shuffled."""
    keep = np.flatnonzero(rng.random(n) >= drop)
    ids = [f"patient-{i:05d}" for i in keep] + [f"{prefix}-only-{j:04d}" for j in range(extra)]
    src = np.r_[keep, np.full(extra, -1)]
    order = rng.permutation(len(ids))
    return [ids[i] for i in order], src[order]


def _job(console: Any, *, name: str, X: np.ndarray, y: np.ndarray, split_col: int, model: str, bits: int,
         quick: bool, rng: np.random.Generator, params: dict[str, Any]) -> dict[str, Any]:
    from rich.table import Table

    from .linear import VerticalLinearRegression
    from .logistic import VerticalLogisticRegression

    n = len(y)
    ids_a, src_a = _party_rows(n, rng, 0.08, 12, "a")
    ids_b, src_b = _party_rows(n, rng, 0.08, 9, "b")
    # party A's table: its columns of its rows (private rows get random values); B also has y
    XA = np.where(src_a[:, None] >= 0, X[np.maximum(src_a, 0), :split_col], rng.normal(size=(len(src_a), split_col)))
    XB = np.where(src_b[:, None] >= 0, X[np.maximum(src_b, 0), split_col:], rng.normal(size=(len(src_b), X.shape[1] - split_col)))
    yB = np.where(src_b >= 0, y[np.maximum(src_b, 0)], y[0])
    console.print(f"\n[bold]{name}[/bold]: A holds {len(ids_a)} rows x {split_col} columns, "
                  f"B holds {len(ids_b)} rows x {X.shape[1] - split_col} columns + labels")
    t0 = time.perf_counter()
    ia, ib, common = psi_align(ids_a, ids_b, rsa_bits=1024 if quick else 2048)
    truth = sorted(set(ids_a) & set(ids_b))
    console.print(f"  PSI (RSA blind signatures): {len(common)} common ids in {time.perf_counter() - t0:.2f} s "
                  f"({'equals' if common == truth else 'DIFFERS FROM'} the plain intersection)")
    XA, XB, yB = XA[ia], XB[ib], yB[ib]
    task = f"demo/{name}"
    tr, te = random_split(len(common), 0.3, seed=seed_from_task(task))
    cls: Any = VerticalLinearRegression if model == "linear" else VerticalLogisticRegression
    est = cls(key_bits=bits, progress=console, random_state=seed_from_task(task, "batches") % (1 << 31), **params)
    t0 = time.perf_counter()
    est.fit([XA[tr], XB[tr]], yB[tr])
    train_s = time.perf_counter() - t0
    console.print(f"  trained {est.n_epochs_} epochs on {len(tr)} rows in {train_s:.1f} s, "
                  f"{est.bytes_per_epoch_ / len(tr):.0f} bytes exchanged per sample per epoch ({bits}-bit keys)")
    Xc_tr = np.hstack([XA[tr], XB[tr]])
    Xc_te = np.hstack([XA[te], XB[te]])
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.preprocessing import StandardScaler

    if model == "linear":
        fed = regression_metrics(yB[te], est.predict([XA[te], XB[te]]))
        central = regression_metrics(yB[te], LinearRegression().fit(Xc_tr, yB[tr]).predict(Xc_te))
        ref = "LinearRegression"
    else:
        proba = est.predict_proba([XA[te], XB[te]])[:, 1]
        fed = classification_metrics(yB[te] == est.label_part_.positive_class, proba, est.threshold)
        ss = StandardScaler().fit(Xc_tr)
        clf = LogisticRegression(max_iter=5000).fit(ss.transform(Xc_tr), yB[tr])
        pos = list(clf.classes_).index(est.label_part_.positive_class)
        central = classification_metrics(yB[te] == est.label_part_.positive_class,
                                         clf.predict_proba(ss.transform(Xc_te))[:, pos])
        ref = "LogisticRegression"
    table = Table(title=f"{name}: {len(te)} held-out rows", title_justify="left")
    table.add_column("metric")
    table.add_column("federated (dtxfast, Paillier)", justify="right")
    table.add_column(f"centralized scikit-learn {ref}", justify="right")
    for k in fed:
        table.add_row(k, f"{fed[k]:.4f}", f"{central[k]:.4f}")
    console.print(table)
    return {"name": name, "rows": len(common), "epochs": est.n_epochs_, "train_seconds": train_s,
            "bytes_per_sample_epoch": est.bytes_per_epoch_ / len(tr), "federated": fed, "central": central,
            "psi_ok": common == truth}


def run_demo(console: Any = None, *, bits: int = 2048, quick: bool = False) -> dict[str, Any]:
    """Run the demo and print its progress and results; returns the metrics.

    Parameters
    ----------
    console : rich Console, optional
    bits : int, default 2048
        Paillier key size of each party (``quick`` uses 1024).
    quick : bool
        Small data, 1024-bit keys and few epochs (tests, smoke checks).
    """
    from rich.console import Console

    console = console or Console()
    datasets = _datasets()
    if quick:
        bits = 1024
    rng = np.random.default_rng(seed_from_task("dtx-demo") % (1 << 32))
    console.rule("dtxfast demo: vertical federated learning, two parties, Paillier, no third party")
    jobs: list[dict[str, Any]] = []
    out: dict[str, Any] = {"bits": bits, "jobs": jobs}
    Xd, yd = datasets.load_diabetes(return_X_y=True)
    Xc, yc = datasets.load_breast_cancer(return_X_y=True)
    yc = np.where(yc == 0, "malignant", "benign")
    if quick:
        Xd, yd = Xd[:140], yd[:140]
        Xc, yc = Xc[:160], yc[:160]
    lin = {"alpha": 0.3, "max_epochs": 8 if quick else 50, "batch_size": 0, "amplitude": 0}
    log = {"alpha": 0.3, "max_epochs": 5 if quick else 15, "batch_size": 0, "amplitude": 0,
           "positive_class": "malignant"}
    jobs.append(_job(console, name="diabetes (linear regression)", X=Xd, y=yd, split_col=5,
                            model="linear", bits=bits, quick=quick, rng=rng, params=lin))
    jobs.append(_job(console, name="breast cancer (logistic regression)", X=Xc, y=yc, split_col=15,
                            model="logistic", bits=bits, quick=quick, rng=rng, params=log))
    console.rule("done")
    return out
