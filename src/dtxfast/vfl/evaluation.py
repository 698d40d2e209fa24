"""Evaluation of vertical models: metrics, splits as federated jobs, ROC points, training curves.

Metrics are computed by the label party (it alone holds the labels and the predictions).
Splits are index sets over the PSI-aligned rows, the same for both parties: their seeds are derived
from the task id (:func:`seed_from_task`), so both parties draw the same split without talking.

Examples
--------
>>> import numpy as np
>>> regression_metrics(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 4.0]))["mae"]
0.3333333333333333
>>> train, test = random_split(10, test_size=0.3, seed=1)
>>> len(train), len(test)
(7, 3)
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ParameterError

__all__ = [
    "EvaluationReport",
    "accuracy",
    "auc",
    "classification_metrics",
    "cross_validate",
    "evaluate",
    "f1",
    "kfold_splits",
    "ks",
    "leave_one_out_splits",
    "mae",
    "plot_history",
    "precision",
    "r2",
    "random_split",
    "recall",
    "regression_metrics",
    "rmse",
    "roc_points",
    "seed_from_task",
]


# -- metrics --------------------------------------------------------------------------------------
def _pair(y: Any, p: Any) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(y, dtype=np.float64).ravel(), np.asarray(p, dtype=np.float64).ravel()
    if a.shape != b.shape or a.size == 0:
        raise ParameterError("labels and predictions must be non-empty and of the same length")
    return a, b


def rmse(y: Any, pred: Any) -> float:
    """Root mean squared error."""
    a, b = _pair(y, pred)
    return float(np.sqrt(np.mean((a - b) ** 2)))


def mae(y: Any, pred: Any) -> float:
    """Mean absolute error."""
    a, b = _pair(y, pred)
    return float(np.mean(np.abs(a - b)))


def r2(y: Any, pred: Any) -> float:
    """Coefficient of determination (1 - SS_res / SS_tot)."""
    a, b = _pair(y, pred)
    tot = float(np.sum((a - a.mean()) ** 2))
    res = float(np.sum((a - b) ** 2))
    return 1.0 - res / tot if tot > 0 else (1.0 if res == 0 else 0.0)


def _binary(y: Any, pred: Any) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(y).ravel().astype(bool)
    b = np.asarray(pred).ravel().astype(bool)
    if a.shape != b.shape or a.size == 0:
        raise ParameterError("labels and predictions must be non-empty and of the same length")
    return a, b


def accuracy(y: Any, pred: Any) -> float:
    """Fraction of correct predictions (binary 0/1 or boolean)."""
    a, b = _binary(y, pred)
    return float(np.mean(a == b))


def precision(y: Any, pred: Any) -> float:
    """TP / (TP + FP); 0 when nothing is predicted positive."""
    a, b = _binary(y, pred)
    tp, fp = int(np.sum(a & b)), int(np.sum(~a & b))
    return tp / (tp + fp) if tp + fp else 0.0


def recall(y: Any, pred: Any) -> float:
    """TP / (TP + FN); 0 when there is no positive."""
    a, b = _binary(y, pred)
    tp, fn = int(np.sum(a & b)), int(np.sum(a & ~b))
    return tp / (tp + fn) if tp + fn else 0.0


def f1(y: Any, pred: Any) -> float:
    """Harmonic mean of precision and recall."""
    p, r = precision(y, pred), recall(y, pred)
    return 2 * p * r / (p + r) if p + r else 0.0


def roc_points(y: Any, score: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve: ``(fpr, tpr, thresholds)``, one point per distinct score, from (0, 0) to (1, 1)."""
    a = np.asarray(y).ravel().astype(bool)
    s = np.asarray(score, dtype=np.float64).ravel()
    if a.shape != s.shape or a.size == 0:
        raise ParameterError("labels and scores must be non-empty and of the same length")
    order = np.argsort(-s, kind="mergesort")
    s, a = s[order], a[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # last index of each distinct score
    tps = np.cumsum(a)[last].astype(np.float64)
    fps = (last + 1 - tps).astype(np.float64)
    P, N = float(a.sum()), float(len(a) - a.sum())
    tpr = np.r_[0.0, tps / P if P else np.zeros_like(tps)]
    fpr = np.r_[0.0, fps / N if N else np.zeros_like(fps)]
    return fpr, tpr, np.r_[np.inf, s[last]]


def auc(y: Any, score: Any) -> float:
    """Area under the ROC curve (trapezoids; ties handled as in scikit-learn)."""
    fpr, tpr, _ = roc_points(y, score)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def ks(y: Any, score: Any) -> float:
    """Kolmogorov–Smirnov statistic: max over thresholds of TPR - FPR."""
    fpr, tpr, _ = roc_points(y, score)
    return float(np.max(tpr - fpr))


def regression_metrics(y: Any, pred: Any) -> dict[str, float]:
    """``{"rmse", "mae", "r2"}``."""
    return {"rmse": rmse(y, pred), "mae": mae(y, pred), "r2": r2(y, pred)}


def classification_metrics(y_pos: Any, proba: Any, threshold: float = 0.5) -> dict[str, float]:
    """``{"accuracy", "precision", "recall", "f1", "auc", "ks"}`` of a binary model.

    ``y_pos``: 1/True for the positive class; ``proba``: its predicted probability.
    """
    p = np.asarray(proba, dtype=np.float64)
    pred = p >= threshold
    out = {"accuracy": accuracy(y_pos, pred), "precision": precision(y_pos, pred),
           "recall": recall(y_pos, pred), "f1": f1(y_pos, pred)}
    a = np.asarray(y_pos).astype(bool)
    if a.all() or not a.any():
        out["auc"], out["ks"] = float("nan"), float("nan")
    else:
        out["auc"], out["ks"] = auc(a, p), ks(a, p)
    return out


# -- splits ---------------------------------------------------------------------------------------
def seed_from_task(task_id: str | bytes, purpose: str = "split") -> int:
    """A 63-bit seed both parties derive from the public task id (and a purpose label)."""
    tid = task_id.encode() if isinstance(task_id, str) else bytes(task_id)
    h = hashlib.sha256(b"dtxfast/vfl/" + purpose.encode() + b"/" + tid).digest()
    return int.from_bytes(h[:8], "big") >> 1


def random_split(n: int, test_size: float = 0.3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Shuffled ``(train, test)`` row indices with ``round(test_size * n)`` test rows (at least 1)."""
    if not 0.0 < test_size < 1.0:
        raise ParameterError("test_size must lie in (0, 1)")
    if n < 2:
        raise ParameterError("need at least two rows to split")
    k = min(n - 1, max(1, int(round(test_size * n))))
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[k:]), np.sort(perm[:k])


def kfold_splits(n: int, k: int = 5, *, shuffle: bool = False, seed: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``k`` folds of ``(train, test)`` indices (the first ``n % k`` folds one row larger)."""
    if not 2 <= k <= n:
        raise ParameterError(f"k must be between 2 and the number of rows ({n})")
    order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
    sizes = np.full(k, n // k)
    sizes[: n % k] += 1
    start = 0
    for s in sizes:
        test = order[start : start + s]
        train = np.r_[order[:start], order[start + s :]]
        yield np.sort(train), np.sort(test)
        start += s


def leave_one_out_splits(n: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``n`` splits, each holding out one row."""
    for i in range(n):
        yield np.r_[np.arange(i), np.arange(i + 1, n)], np.array([i])


# -- federated evaluation jobs --------------------------------------------------------------------
@dataclass
class EvaluationReport:
    """Per-fold metrics, their mean, and (binary models) the ROC points of every fold."""

    method: str
    folds: list[dict[str, float]] = field(default_factory=list)
    roc: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)

    @property
    def mean(self) -> dict[str, float]:
        if not self.folds:
            return {}
        keys = self.folds[0].keys()
        return {k: float(np.nanmean([f[k] for f in self.folds])) for k in keys}


def _take(parties: Sequence[Any], idx: np.ndarray) -> list[np.ndarray]:
    return [np.asarray(p)[idx] for p in parties]


def evaluate(
    estimator: Any,
    parties: Sequence[Any],
    y: Any,
    *,
    method: str = "split",
    test_size: float = 0.3,
    k: int = 5,
    shuffle: bool = True,
    task_id: str = "vfl-eval",
    keypairs: Any = None,
) -> EvaluationReport:
    """Train and test fresh federated models on splits of the aligned rows.

    Parameters
    ----------
    estimator : VerticalLinearRegression or VerticalLogisticRegression
        Its parameters are copied for every fold (the estimator itself is not refitted).
    parties : two feature blocks (aligned rows); ``y`` the label party's labels.
    method : {"split", "kfold", "loo"}
        Random split (``test_size`` held out), k-fold (``k`` folds, optional ``shuffle``), or
        leave-one-out (pooled over all rows: each row predicted by the model trained without it).
    task_id : str
        Public id of the job; the split seed is derived from it.
    keypairs : optional
        The parties' key pairs, reused for every fold (default: fresh keys per fold).
    """
    y = np.asarray(y)
    n = len(y)
    seed = seed_from_task(task_id)
    if method == "split":
        splits: Any = [random_split(n, test_size, seed)]
    elif method == "kfold":
        splits = kfold_splits(n, k, shuffle=shuffle, seed=seed)
    elif method == "loo":
        splits = leave_one_out_splits(n)
    else:
        raise ParameterError(f"unknown evaluation method {method!r} (split, kfold, loo)")
    report = EvaluationReport(method)
    classify = getattr(estimator, "_model", "linear") == "logistic"
    pooled_y: list[Any] = []
    pooled_p: list[Any] = []
    for train, test in splits:
        est = type(estimator)(**estimator.get_params())
        est.set_params(progress=False)
        if keypairs is not None and getattr(est, "secure", False):
            est.fit(_take(parties, train), y[train], keypairs=keypairs)
        else:
            est.fit(_take(parties, train), y[train])
        Xt = _take(parties, test)
        if classify:
            proba = est.predict_proba(Xt)[:, 1]
            ypos = est.encode_target(y[test])
            if method == "loo":
                pooled_y.append(ypos)
                pooled_p.append(proba)
                continue
            report.folds.append(classification_metrics(ypos, proba, est.threshold))
            if 0 < ypos.sum() < len(ypos):
                fpr, tpr, _ = roc_points(ypos, proba)
                report.roc.append((fpr, tpr))
        else:
            pred = est.predict(Xt)
            if method == "loo":
                pooled_y.append(y[test])
                pooled_p.append(pred)
                continue
            report.folds.append(regression_metrics(y[test], pred))
    if method == "loo":
        yy, pp = np.concatenate(pooled_y), np.concatenate(pooled_p)
        if classify:
            report.folds.append(classification_metrics(yy, pp, estimator.threshold))
            fpr, tpr, _ = roc_points(yy, pp)
            report.roc.append((fpr, tpr))
        else:
            report.folds.append(regression_metrics(yy, pp))
    return report


def cross_validate(estimator: Any, parties: Sequence[Any], y: Any, k: int = 5, *, shuffle: bool = True,
                   task_id: str = "vfl-eval", keypairs: Any = None) -> EvaluationReport:
    """``evaluate(..., method="kfold")``."""
    return evaluate(estimator, parties, y, method="kfold", k=k, shuffle=shuffle, task_id=task_id,
                    keypairs=keypairs)


# -- training curves ------------------------------------------------------------------------------
def plot_history(history: Sequence[dict[str, Any]], path: str, *, title: str = "VFL training") -> None:
    """Write a PNG of the loss (and validation metrics, if any) per epoch (needs matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - optional dependency
        from ..errors import BackendUnavailable

        raise BackendUnavailable("plotting needs matplotlib: pip install matplotlib") from exc
    if not history:
        raise ParameterError("no training history to plot")
    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(epochs, [h["loss"] for h in history], label="training loss", color="tab:blue")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    present: set[str] = {k for h in history for k in h if k.startswith("val_")}
    preferred: list[str] = [k for k in ("val_r2", "val_rmse", "val_accuracy", "val_auc") if k in present]
    metrics = preferred or sorted(present)
    if metrics:
        ax2 = ax.twinx()
        for name in metrics:
            pts = [(h["epoch"], h[name]) for h in history if name in h]
            ax2.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", linestyle="--", label=name)
        ax2.set_ylabel("validation metric")
        ax2.legend(loc="center right")
    ax.legend(loc="upper right")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
