"""VFL jobs on CSV files: read the parties' tables, align them, train, evaluate and predict.

The work behind ``dtx vfl train | evaluate | predict`` (both parties in this process; the
networked per-party version of the same jobs is :mod:`dtxfast.nodes.jobs`). Each function takes
paths and typed options and returns typed results; the CLI only parses and prints.

* :func:`read_table`: one party's CSV file (id column, feature columns, optional label column),
  validated with one-line errors naming the file and the line.
* :func:`align_files`: both parties' files, aligned by RSA blind-signature PSI
  (:func:`~dtxfast.vfl.align.psi_align`).
* :func:`train_job`, :func:`evaluate_job`, :func:`predict_job`: the three commands' jobs.

Examples
--------
>>> import pathlib, tempfile
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> _ = (d / "a.csv").write_text("id,x1\\nu1,0.5\\nu2,1.5\\nu3,2.0\\n")
>>> t = read_table(d / "a.csv")
>>> t.ids, t.columns, t.X[:, 0].tolist()
(['u1', 'u2', 'u3'], ['x1'], [0.5, 1.5, 2.0])
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._fs import atomic_output
from ..errors import ParameterError

__all__ = [
    "AlignedData",
    "PartyTable",
    "PredictOutcome",
    "TrainReport",
    "align_files",
    "check_training_params",
    "evaluate_job",
    "make_estimator",
    "predict_job",
    "read_table",
    "read_targets",
    "train_job",
]


@dataclass
class PartyTable:
    """One party's sample file, read and validated.

    Attributes
    ----------
    ids : list of str
        Row ids (unique), in file order.
    columns : list of str
        Feature column names (neither the id nor the label column), in file order.
    X : ndarray of float64, shape (rows, columns)
    y : ndarray or None
        The label column (float64 when every value is a number, else text), if the file has it.
    """

    ids: list[str]
    columns: list[str]
    X: np.ndarray
    y: np.ndarray | None = None

    @property
    def has_label(self) -> bool:
        return self.y is not None


def _read_text(path: Any) -> str:
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise ParameterError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ParameterError(f"{path}: not UTF-8 text (line {line}, byte {exc.start})") from None


def read_table(path: Any, *, id_column: str | None = None, label: str | None = None,
               require_label: bool = False, numeric_label: bool = False) -> PartyTable:
    """Read one party's CSV file: an id column, feature columns and optionally the label column.

    Ids are compared after stripping surrounding whitespace, with no Unicode normalization (as
    ``dtx psi`` reads them, :func:`dtxfast.nodes.psi.read_id_column`); an empty or duplicate id
    is refused with its line, never resolved silently.

    Parameters
    ----------
    path : path-like
        A UTF-8 CSV file with a header line.
    id_column : str, optional
        The id column's name; default the first column (PaddleDTX's sample files).
    label : str, optional
        The label column's name; when the file has it, its values become ``y`` (float64 if every
        value is a number, else text) and it is not a feature.
    require_label : bool
        The file must have the label column.
    numeric_label : bool
        The label must be a finite number on every line (regression).

    Raises
    ------
    ParameterError
        One line naming the file and the line: not UTF-8, empty, no id (or required label)
        column, a row of the wrong length, an empty or duplicate id, a feature that is not a
        finite number, a label that is not a number where one is needed.
    """
    text = _read_text(path)
    rows: list[list[str]] = []
    lines: list[int] = []  # the line each record starts on (the header is line 1)
    reader = csv.reader(io.StringIO(text, newline=""))
    prev = 0
    try:
        for rec in reader:
            if rec:
                rows.append(rec)
                lines.append(prev + 1)
            prev = reader.line_num
    except csv.Error as exc:
        raise ParameterError(f"{path}, line {prev + 1}: not CSV ({exc})") from None
    if not rows:
        raise ParameterError(f"{path}: the file is empty")
    head = [h.strip() for h in rows[0]]
    if id_column is not None and id_column not in head:
        raise ParameterError(f"{path}: no id column {id_column!r} (columns: {', '.join(head)})")
    if require_label and label not in head:
        raise ParameterError(f"{path}: no label column {label!r} (columns: {', '.join(head)})")
    if len(set(head)) != len(head):
        dup = next(h for h in head if head.count(h) > 1)
        raise ParameterError(f"{path}: column {dup!r} appears twice in the header")
    if len(rows) < 2:
        raise ParameterError(f"{path}: no data rows after the header")
    ii = 0 if id_column is None else head.index(id_column)
    li = head.index(label) if label is not None and label in head and head.index(label) != ii else None
    cols = [j for j in range(len(head)) if j not in (ii, li)]
    ids: list[str] = []
    seen: dict[str, int] = {}
    body = rows[1:]
    lines = lines[1:]
    for k, r in enumerate(body):
        if len(r) != len(head):
            raise ParameterError(f"{path}, line {lines[k]}: {len(r)} fields, the header has {len(head)}")
        rid = r[ii].strip()
        if not rid:
            raise ParameterError(f"{path}, line {lines[k]}: empty id")
        if rid in seen:
            raise ParameterError(f"{path}, line {lines[k]}: id {rid!r} already on line {lines[seen[rid]]}")
        seen[rid] = k
        ids.append(rid)
    strings = np.array([[r[j] for j in cols] for r in body], dtype=str).reshape(len(body), len(cols))
    try:
        X = strings.astype(np.float64)
        bad = ~np.isfinite(X)
    except ValueError:
        bad = None
        X = np.empty((0, 0))
    if bad is None or bad.any():
        values = []
        for k, r in enumerate(body):
            for j in cols:
                try:
                    v = float(r[j])
                except ValueError:
                    raise ParameterError(f"{path}, line {lines[k]} (id {ids[k]!r}): column {head[j]!r} "
                                         f"is not a number: {r[j]!r}") from None
                if not math.isfinite(v):
                    raise ParameterError(f"{path}, line {lines[k]} (id {ids[k]!r}): column {head[j]!r} "
                                         f"is not a finite number: {r[j]!r}")
                values.append(v)
        X = np.array(values, dtype=np.float64).reshape(len(body), len(cols))
    y = None
    if li is not None:
        raw = [r[li].strip() for r in body]
        try:
            y = np.array([float(v) for v in raw])
            if not np.isfinite(y).all():
                raise ValueError
        except ValueError:
            if numeric_label:
                for k, text in enumerate(raw):
                    try:
                        ok = math.isfinite(float(text))
                    except ValueError:
                        ok = False
                    if not ok:
                        raise ParameterError(f"{path}, line {lines[k]} (id {ids[k]!r}): label {label!r} "
                                             f"is not a finite number: {text!r}") from None
            y = np.array(raw)
    return PartyTable(ids, [head[j] for j in cols], X, y)




@dataclass
class PredictOutcome:
    """What the label party obtains from a prediction task.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> out = PredictOutcome(["u1", "u2"], np.array([1.5, 2.25]), None)
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "pred.csv"
    >>> out.to_csv(p); print(p.read_text().strip())
    id,prediction
    u1,1.5
    u2,2.25
    """

    ids: list[str]
    values: np.ndarray
    proba: np.ndarray | None = None
    #: one-vs-rest logistic models predict "is it this class": printed as the class, or "not <class>"
    positive_class: Any = None

    def in_order_of(self, ids: list[str]) -> PredictOutcome:
        """The same predictions in the order of ``ids`` (a party's file), not sorted as strings."""
        rank = {rid: k for k, rid in enumerate(ids)}
        idx = sorted(range(len(self.ids)), key=lambda i: rank.get(self.ids[i], len(rank)))
        return PredictOutcome([self.ids[i] for i in idx], np.asarray(self.values)[idx],
                              None if self.proba is None else np.asarray(self.proba)[idx], self.positive_class)

    def header(self) -> list[str]:
        """``["id", "prediction"]``, plus ``"probability"`` when there is one."""
        return ["id", "prediction"] + (["probability"] if self.proba is not None else [])

    def rows(self, *, digits: int | None = None) -> Iterator[list[str]]:
        """The rows as text; probabilities with ``digits`` significant digits (default: exact)."""
        for k, rid in enumerate(self.ids):
            v = self.values[k]
            if isinstance(v, (bool, np.bool_)) and self.positive_class is not None:
                text = str(self.positive_class) if v else f"not {self.positive_class}"
            else:
                text = repr(float(v)) if isinstance(v, (float, np.floating)) else str(v)
            row = [rid, text]
            if self.proba is not None:
                p = float(self.proba[k])
                row.append(repr(p) if digits is None else f"{p:.{digits}g}")
            yield row

    def to_csv(self, path: Any, *, digits: int | None = None) -> None:
        """Write ``id,prediction[,probability]`` (all or nothing, mode 0600)."""
        with atomic_output(path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(self.header())
            w.writerows(self.rows(digits=digits))




# ================================================================================================
# The jobs of ``dtx vfl``
# ================================================================================================
Log = Callable[[str], None]


def _nolog(_: str) -> None:
    return None


@dataclass
class AlignedData:
    """Both parties' PSI-aligned rows (in the order of the sorted common ids)."""

    XA: np.ndarray
    XB: np.ndarray
    y: np.ndarray | None
    ids: list[str]
    rows_a: int
    rows_b: int
    columns_a: list[str] = field(default_factory=list)
    columns_b: list[str] = field(default_factory=list)


def align_files(data_a: Any, data_b: Any, *, label: str | None = None, psi_bits: int = 2048,
                compute: Any = None, log: Log = _nolog, numeric_label: bool = False) -> AlignedData:
    """Read A's and B's files (B's with the label column when ``label`` is given) and align them by PSI.

    Raises
    ------
    ParameterError
        A file is unfit (see :func:`read_table`) or the parties share no ids.
    """
    from .align import psi_align

    a = read_table(data_a)
    if not a.columns:
        raise ParameterError(f"{data_a}: no feature column after the id column (party A brings features)")
    b = read_table(data_b, label=label, require_label=label is not None, numeric_label=numeric_label)
    ia, ib, common = psi_align(a.ids, b.ids, rsa_bits=psi_bits, compute=compute)
    log(f"PSI: {len(common)} common rows (A {len(a.ids)}, B {len(b.ids)})")
    if not common:
        raise ParameterError("the parties share no ids")
    return AlignedData(a.X[ia], b.X[ib], None if b.y is None else b.y[ib], common, len(a.ids), len(b.ids),
                       list(a.columns), list(b.columns))


def make_estimator(model: str, *, positive_class: str | None = None, y: np.ndarray | None = None,
                   **params: Any) -> Any:
    """The estimator for ``model`` (linear or logistic); a numeric label makes ``positive_class`` a number."""
    from . import VerticalLinearRegression, VerticalLogisticRegression

    if model not in ("linear", "logistic"):
        raise ParameterError("--model must be linear or logistic")
    if model == "logistic":
        pc: Any = positive_class
        if positive_class is not None and y is not None and y.dtype.kind == "f":
            try:
                pc = float(positive_class)
            except ValueError:
                raise ParameterError(f"positive class {positive_class!r} is not a number, the labels are") from None
        return VerticalLogisticRegression(positive_class=pc, **params)
    return VerticalLinearRegression(**params)


def check_training_params(model: str, params: dict[str, Any]) -> None:
    """Check the training parameters before any work (PSI, key generation) starts.

    The same checks as the estimator's :class:`~dtxfast.protocols.vfl.config.TrainingConfig`,
    plus finite numbers; errors name the parameter.

    Examples
    --------
    >>> check_training_params("linear", {"alpha": 0.1, "max_epochs": 5})
    >>> check_training_params("linear", {"alpha": float("nan")})
    Traceback (most recent call last):
    ...
    dtxfast.errors.ParameterError: alpha must be a finite number, not nan
    """
    import dataclasses

    from ..protocols.vfl.config import TrainingConfig

    names = {f.name for f in dataclasses.fields(TrainingConfig)}
    for k, v in params.items():
        if isinstance(v, float) and not math.isfinite(v):
            raise ParameterError(f"{k} must be a finite number, not {v}")
    TrainingConfig(model=model, **{k: v for k, v in params.items() if k in names})


def read_targets(path: Any, ids: list[str]) -> list[str]:
    """True values of the rows ``ids`` from a PaddleDTX ``targetValues.csv`` (``..., id, value``)."""
    with open(path, newline="") as f:
        rows = [r for r in csv.reader(f) if r]
    truth = {r[-2]: r[-1] for r in rows[1:] if len(r) >= 2}
    missing = [i for i in ids if i not in truth]
    if missing:
        raise ParameterError(f"{path}: no true value for ids {missing[:5]}")
    return [truth[i] for i in ids]


@dataclass
class TrainReport:
    """What :func:`train_job` did: the fitted estimator and what it predicted and measured."""

    estimator: Any
    aligned_rows: int
    prediction: PredictOutcome | None = None
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def final_loss(self) -> float:
        return float(self.estimator.history_[-1]["loss"]) if self.estimator.history_ else float("nan")


def train_job(data_a: Any, data_b: Any, *, label: str, model: str = "linear", positive_class: str | None = None,
              psi_bits: int = 2048, val_fraction: float = 0.0, eval_every: int = 1,
              predict_a: Any = None, predict_b: Any = None, target: Any = None, save_dir: Any = None,
              plot: Any = None, compute: Any = None, log: Log = _nolog, progress: Any = False,
              **params: Any) -> TrainReport:
    """Align A's and B's rows by PSI, train, and optionally save, plot, predict and measure.

    Parameters
    ----------
    data_a, data_b : path-like
        A's file (id, features) and B's (id, features, the ``label`` column).
    model : {"linear", "logistic"}
    positive_class : str, optional
        Logistic: the positive label.
    val_fraction : float
        Hold out this fraction of the aligned rows for validation (seeded by B's file name); in
        ``mode="fast"`` the validation metrics are recorded every ``eval_every`` epochs.
    predict_a, predict_b : path-like, optional
        Rows to predict (aligned by PSI); both or neither.
    target : path-like, optional
        True values of the predicted rows: the report's ``metrics`` are measured against them.
    save_dir : path-like, optional
        Write each party's model part there (``model_a.json``, ``model_b.json``).
    plot : path-like, optional
        Write a PNG of the training curve.
    params
        The estimator's parameters (``alpha``, ``max_epochs``, ``mode``, ``key_bits``, ...).
    """
    from .evaluation import classification_metrics, plot_history, random_split, regression_metrics, seed_from_task
    from .runner import save_model_part

    if (predict_a is None) != (predict_b is None):
        raise ParameterError("give both --predict-a and --predict-b")
    if target is not None and predict_a is None:
        raise ParameterError("--target scores predictions: give --predict-a and --predict-b with it")
    if model not in ("linear", "logistic"):
        raise ParameterError("--model must be linear or logistic")
    if positive_class is not None and model != "logistic":
        raise ParameterError("--positive-class is for --model logistic")
    check_training_params(model, params)
    if not (math.isfinite(val_fraction) and 0.0 <= val_fraction < 1.0):
        raise ParameterError(f"--val-fraction must lie in [0, 1), not {val_fraction}")
    for what, path in (("--data-a", data_a), ("--data-b", data_b), ("--predict-a", predict_a),
                       ("--predict-b", predict_b), ("--target", target)):
        if path is not None and not Path(path).is_file():
            raise ParameterError(f"{what} {path}: {'is a directory' if Path(path).is_dir() else 'no such file'}")
    if save_dir is not None and Path(save_dir).exists() and not Path(save_dir).is_dir():
        raise ParameterError(f"--save-dir {save_dir} is a file, not a folder")
    data = align_files(data_a, data_b, label=label, psi_bits=psi_bits, compute=compute, log=log,
                       numeric_label=model == "linear")
    XA, XB, y = data.XA, data.XB, data.y
    assert y is not None
    est = make_estimator(model, positive_class=positive_class, y=y, progress=progress, compute=compute, **params)
    validation = None
    if val_fraction > 0:
        tr, va = random_split(len(y), val_fraction, seed=seed_from_task(str(data_b), "validation"))
        validation = ([XA[va], XB[va]], y[va])
        XA, XB, y = XA[tr], XB[tr], y[tr]
        if est.mode == "fast":  # secret-shared weights are known only at the end
            est.set_params(eval_every=eval_every)
    est.fit([XA, XB], y, validation=validation)
    report = TrainReport(est, len(y))
    log(f"trained {est.n_epochs_} epochs, final loss {report.final_loss:.6g}, "
        f"{est.bytes_per_epoch_ / len(y):.0f} bytes per sample per epoch")
    # each part records its party's column names and one id shared by the two parts of this
    # training, so a prediction refuses swapped files and parts of different trainings
    model_id = os.urandom(16).hex()
    est.feature_part_.meta.update(columns=data.columns_a, modelId=model_id)
    est.label_part_.meta.update(columns=data.columns_b, modelId=model_id)
    # predict and score before writing anything: a run that fails midway leaves no files behind
    if predict_a is not None and predict_b is not None:
        pdata = align_files(predict_a, predict_b, psi_bits=psi_bits, compute=compute)
        PA, PB = pdata.XA, pdata.XB
        pred = est.predict([PA, PB])
        report.prediction = PredictOutcome(pdata.ids, pred, None, positive_class=getattr(
            est.label_part_, "positive_class", None)).in_order_of(read_table(predict_b).ids)
        if target is not None:
            raw = read_targets(target, pdata.ids)
            if model == "linear":
                report.metrics = regression_metrics(np.array([float(v) for v in raw]), pred)
            else:
                lab = est.label_part_.positive_class
                ytv = np.array([float(v) for v in raw]) if isinstance(lab, float) else np.array(raw)
                report.metrics = classification_metrics(ytv == lab, est.predict_proba([PA, PB])[:, 1],
                                                        est.threshold)
    if save_dir is not None:
        save_dir = Path(save_dir)
        save_dir.mkdir(parents=True, exist_ok=True)
        save_model_part(est.feature_part_, str(save_dir / "model_a.json"))
        save_model_part(est.label_part_, str(save_dir / "model_b.json"))
        log(f"model parts written to {save_dir}/model_a.json and model_b.json")
    if plot is not None:
        plot_history(est.history_, str(plot), title=f"federated {model} regression")
        log(f"training curve written to {plot}")
    return report


def evaluate_job(data_a: Any, data_b: Any, *, label: str, model: str = "linear", positive_class: str | None = None,
                 method: str = "split", test_size: float = 0.3, k: int = 5, shuffle: bool = True,
                 task_id: str = "vfl-eval", psi_bits: int = 2048, compute: Any = None,
                 **params: Any) -> dict[str, float]:
    """Federated evaluation (random split, k-fold or leave-one-out) of A's and B's files; the mean metrics.

    One Paillier key pair per party (of ``key_bits``) serves every fold.
    """
    from ..crypto.paillier import generate_keypair
    from .evaluation import evaluate

    if model not in ("linear", "logistic"):
        raise ParameterError("--model must be linear or logistic")
    if positive_class is not None and model != "logistic":
        raise ParameterError("--positive-class is for --model logistic")
    check_training_params(model, params)
    if method not in ("split", "kfold", "loo"):
        raise ParameterError(f"--method must be split, kfold or loo, not {method!r}")
    if method == "split" and not (math.isfinite(test_size) and 0.0 < test_size < 1.0):
        raise ParameterError(f"--test-size must lie in (0, 1), not {test_size}")
    if method == "kfold" and k < 2:
        raise ParameterError(f"--k must be at least 2 folds, not {k}")
    data = align_files(data_a, data_b, label=label, psi_bits=psi_bits, compute=compute,
                       numeric_label=model == "linear")
    assert data.y is not None
    est = make_estimator(model, positive_class=positive_class, y=data.y, compute=compute, **params)
    bits = int(est.key_bits)
    keys = (generate_keypair(bits), generate_keypair(bits))
    report = evaluate(est, [data.XA, data.XB], data.y, method=method, test_size=test_size, k=k, shuffle=shuffle,
                      task_id=task_id, keypairs=keys)
    return report.mean


def _check_columns(what: str, path: Any, part: Any) -> None:
    """A prediction file must have the columns its model part was trained on (names and order)."""
    cols = part.meta.get("columns")
    table = read_table(path)
    if cols is not None and list(cols) != list(table.columns):
        raise ParameterError(f"{what} {path}: the {part.role} party's model was trained on columns "
                             f"{', '.join(map(str, cols))}; this file has {', '.join(table.columns)}")
    if part.n_features != len(table.columns):
        raise ParameterError(f"{what} {path}: the model has {part.n_features} features, this file "
                             f"{len(table.columns)}")


def predict_job(model_a: Any, model_b: Any, data_a: Any, data_b: Any, *, threshold: float | None = None,
                psi_bits: int = 2048) -> PredictOutcome:
    """Predict with two saved model parts (A sends its partial scores, B combines and decodes).

    Raises
    ------
    ParameterError
        ``model_a`` is not a feature party's part, ``model_b`` not a label party's, or they are of
        different models.
    """
    from .runner import load_model_part, predict_in_process

    pa, pb = load_model_part(str(model_a)), load_model_part(str(model_b))
    if pa.role != "feature" or pb.role != "label" or pa.model != pb.model:
        raise ParameterError("--model-a must be the feature party's part and --model-b the label party's, same model")
    ida, idb = pa.meta.get("modelId"), pb.meta.get("modelId")
    if ida is not None and idb is not None and ida != idb:
        raise ParameterError(f"{model_a} and {model_b} are parts of two different trainings")
    for what, path, part in (("--data-a", data_a, pa), ("--data-b", data_b, pb)):
        _check_columns(what, path, part)
    data = align_files(data_a, data_b, psi_bits=psi_bits)
    pred = predict_in_process(pa, data.XA, pb, data.XB, threshold=threshold)
    return PredictOutcome(data.ids, pred.values, pred.proba, positive_class=pb.positive_class).in_order_of(
        read_table(data_b).ids)  # the label party's order, which receives the predictions
