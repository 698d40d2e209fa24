"""``dtx vfl``: two-party vertical linear / logistic regression on CSV files (both parties in-process)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import typer

from .._fs import atomic_output
from ..errors import ParameterError
from . import app

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["vfl_app"]

vfl_app = typer.Typer(help="Vertical federated linear and logistic regression (two parties, Paillier).",
                      no_args_is_help=True)
app.add_typer(vfl_app, name="vfl")


def _read_csv(path: Path, label: str | None = None) -> tuple[list[str], list[str], np.ndarray, np.ndarray | None]:
    """(ids, feature names, features, labels) of a PaddleDTX-style CSV: first column the id."""
    with open(path, newline="") as f:
        rows = [r for r in csv.reader(f) if r]
    if len(rows) < 2:
        raise ParameterError(f"{path}: needs a header and at least one row")
    head = rows[0]
    li = None
    if label is not None:
        if label not in head:
            raise ParameterError(f"{path}: no label column {label!r} (columns: {', '.join(head)})")
        li = head.index(label)
    cols = [i for i in range(1, len(head)) if i != li]
    try:
        X = np.array([[float(r[i]) for i in cols] for r in rows[1:]])
    except (ValueError, IndexError) as exc:
        raise ParameterError(f"{path}: feature values must be numbers ({exc})") from None
    y = None
    if li is not None:
        raw = [r[li] for r in rows[1:]]
        try:
            y = np.array([float(v) for v in raw])
        except ValueError:
            y = np.array(raw)
    return [r[0] for r in rows[1:]], [head[i] for i in cols], X, y


_COMPUTE_HELP = ("Where the batch kernels run: local, ray, ray:auto, ray:local, ray:HOST:PORT or "
                 "ray://HOST:PORT (default: $DTXFAST_COMPUTE, else local).")
_KEYS_HELP = ("Ray: what the PSI alignment's RSA signing does with the private key: refuse (default), "
              "local (sign on this machine) or send (to the party's own Ray workers).")


def _backend(ctx: typer.Context, compute: str | None, private_keys: str | None) -> Any:
    """The compute backend of ``--compute``; closed when the command ends."""
    from ..compute import get_compute

    backend = get_compute(compute, private_keys=private_keys)
    ctx.call_on_close(backend.close)
    return backend


def _psi_aligned(data_a: Path, data_b: Path, label: str, model: str, psi_bits: int,
                 console: Console | None, compute: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read both parties' CSV files and keep their PSI-aligned rows, in the same order."""
    from ..vfl.align import psi_align

    if model not in ("linear", "logistic"):
        raise ParameterError("--model must be linear or logistic")
    ids_a, _, XA, _ = _read_csv(data_a)
    ids_b, _, XB, y = _read_csv(data_b, label)
    assert y is not None
    ia, ib, common = psi_align(ids_a, ids_b, rsa_bits=psi_bits, compute=compute)
    if console is not None:
        console.print(f"PSI: {len(common)} common rows (A {len(ids_a)}, B {len(ids_b)})")
    if not common:
        raise ParameterError("the parties share no ids")
    return XA[ia], XB[ib], y[ib]


def _estimator(model: str, positive_class: str | None, y: np.ndarray, **params: Any) -> Any:
    """The estimator for ``--model``; a numeric label column makes ``--positive-class`` a number."""
    from ..vfl import VerticalLinearRegression, VerticalLogisticRegression

    if model == "logistic":
        pc: Any = float(positive_class) if positive_class is not None and y.dtype.kind == "f" else positive_class
        return VerticalLogisticRegression(positive_class=pc, **params)
    return VerticalLinearRegression(**params)


@vfl_app.command("train")
def train(
    ctx: typer.Context,
    data_a: Path = typer.Option(..., "--data-a", help="Party A's CSV (id column first, features)."),
    data_b: Path = typer.Option(..., "--data-b", help="Party B's CSV (id, features and the label column)."),
    label: str = typer.Option(..., "--label", help="Name of B's label column."),
    model: str = typer.Option("linear", "--model", help="linear or logistic."),
    positive_class: str | None = typer.Option(None, "--positive-class", help="Logistic: the positive label."),
    mode: str = typer.Option("ss", "--mode", help="ss (secret-shared model, default) or fast (see the README)."),
    alpha: float = typer.Option(0.1, "--alpha", help="Learning rate."),
    epochs: int = typer.Option(100, "--epochs", help="Maximum number of epochs."),
    batch_size: int = typer.Option(1024, "--batch-size", help="Rows per mini-batch (0 = full batch)."),
    reg_mode: str = typer.Option("none", "--reg-mode", help="none, l1 or l2."),
    reg_param: float = typer.Option(0.0, "--reg-param", help="Regularization strength lambda."),
    amplitude: float = typer.Option(0.0, "--amplitude",
                                    help="Stop when the loss changes by less than this (0: the loss is never revealed)."),
    accuracy: int = typer.Option(8, "--accuracy", help="Decimal digits of the encrypted gradient operands."),
    bits: int = typer.Option(2048, "--bits", help="Paillier key size of each party."),
    psi_bits: int = typer.Option(2048, "--psi-bits", help="RSA key size of the PSI alignment."),
    val_fraction: float = typer.Option(0.0, "--val-fraction", help="Hold out this fraction for validation."),
    eval_every: int = typer.Option(1, "--eval-every",
                                   help="Evaluate on the validation rows every N epochs (--mode fast only)."),
    predict_a: Path | None = typer.Option(None, "--predict-a", help="A's rows to predict (CSV)."),
    predict_b: Path | None = typer.Option(None, "--predict-b", help="B's rows to predict (CSV)."),
    target: Path | None = typer.Option(None, "--target", help="True values of the predicted rows (CSV: ..., id, value)."),
    out: Path | None = typer.Option(None, "--out", help="Write the predictions here (CSV)."),
    save_dir: Path | None = typer.Option(None, "--save-dir", help="Save each party's model part here."),
    plot: Path | None = typer.Option(None, "--plot", help="Write a PNG of the training curve (matplotlib)."),
    compute: str | None = typer.Option(None, "--compute", help=_COMPUTE_HELP),
    private_keys: str | None = typer.Option(None, "--private-keys", help=_KEYS_HELP),
) -> None:
    """Align A's and B's rows by PSI, train federatedly, optionally predict, evaluate and plot."""
    from rich.console import Console

    from ..vfl import save_model_part
    from ..vfl.align import psi_align
    from ..vfl.evaluation import (
        classification_metrics,
        plot_history,
        random_split,
        regression_metrics,
        seed_from_task,
    )

    console = Console(stderr=True)
    backend = _backend(ctx, compute, private_keys)
    XA, XB, y = _psi_aligned(data_a, data_b, label, model, psi_bits, console, backend)
    est = _estimator(model, positive_class, y, alpha=alpha, max_epochs=epochs, batch_size=batch_size,
                     reg_mode=reg_mode, reg_param=reg_param, amplitude=amplitude, accuracy=accuracy,
                     key_bits=bits, progress=console, compute=backend, mode=mode)
    validation = None
    if val_fraction > 0:
        tr, va = random_split(len(y), val_fraction, seed=seed_from_task(str(data_b), "validation"))
        validation = ([XA[va], XB[va]], y[va])
        XA, XB, y = XA[tr], XB[tr], y[tr]
        if mode == "fast":  # secret-shared weights are known only at the end
            est.set_params(eval_every=eval_every)
    est.fit([XA, XB], y, validation=validation)
    console.print(f"trained {est.n_epochs_} epochs, final loss {est.history_[-1]['loss']:.6g}, "
                  f"{est.bytes_per_epoch_ / len(y):.0f} bytes per sample per epoch")
    if save_dir is not None:
        save_dir.mkdir(parents=True, exist_ok=True)
        save_model_part(est.feature_part_, str(save_dir / "model_a.json"))
        save_model_part(est.label_part_, str(save_dir / "model_b.json"))
        console.print(f"model parts written to {save_dir}/model_a.json and model_b.json")
    if plot is not None:
        plot_history(est.history_, str(plot), title=f"federated {model} regression")
        console.print(f"training curve written to {plot}")
    if (predict_a is None) != (predict_b is None):
        raise ParameterError("give both --predict-a and --predict-b")
    if predict_a is None or predict_b is None:
        return
    pids_a, _, PA, _ = _read_csv(predict_a)
    pids_b, _, PB, _ = _read_csv(predict_b)
    ja, jb, pcommon = psi_align(pids_a, pids_b, rsa_bits=psi_bits, compute=backend)
    PA, PB = PA[ja], PB[jb]
    pred = est.predict([PA, PB])
    if out is not None:
        with atomic_output(out, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["id", "prediction"])
            for i, p in zip(pcommon, pred):
                w.writerow([i, p])
    if target is not None:
        with open(target, newline="") as f:
            rows = [r for r in csv.reader(f) if r]
        truth = {r[-2]: r[-1] for r in rows[1:]}
        missing = [i for i in pcommon if i not in truth]
        if missing:
            raise ParameterError(f"{target}: no true value for ids {missing[:5]}")
        yt_raw = [truth[i] for i in pcommon]
        if model == "linear":
            m = regression_metrics(np.array([float(v) for v in yt_raw]), pred)
        else:
            lab = est.label_part_.positive_class
            ytv = np.array([float(v) for v in yt_raw]) if isinstance(lab, float) else np.array(yt_raw)
            m = classification_metrics(ytv == lab, est.predict_proba([PA, PB])[:, 1], est.threshold)
        for k, v in m.items():
            typer.echo(f"{k}\t{v:.6g}")
    elif out is None:
        for i, p in zip(pcommon, pred):
            typer.echo(f"{i}\t{p}")


@vfl_app.command("evaluate")
def evaluate_cmd(
    ctx: typer.Context,
    data_a: Path = typer.Option(..., "--data-a", help="Party A's CSV (id column first, features)."),
    data_b: Path = typer.Option(..., "--data-b", help="Party B's CSV (id, features and the label column)."),
    label: str = typer.Option(..., "--label", help="Name of B's label column."),
    model: str = typer.Option("linear", "--model", help="linear or logistic."),
    positive_class: str | None = typer.Option(None, "--positive-class", help="Logistic: the positive label."),
    mode: str = typer.Option("ss", "--mode", help="ss (secret-shared model, default) or fast."),
    method: str = typer.Option("split", "--method", help="split, kfold or loo."),
    test_size: float = typer.Option(0.3, "--test-size", help="Held-out fraction (split)."),
    k: int = typer.Option(5, "--k", help="Number of folds (kfold)."),
    shuffle: bool = typer.Option(True, "--shuffle/--no-shuffle", help="Shuffle before k-fold."),
    task_id: str = typer.Option("vfl-eval", "--task-id", help="Public task id (the split seed derives from it)."),
    alpha: float = typer.Option(0.1, "--alpha", help="Learning rate."),
    epochs: int = typer.Option(100, "--epochs", help="Maximum number of epochs."),
    batch_size: int = typer.Option(1024, "--batch-size", help="Rows per mini-batch (0 = full batch)."),
    reg_mode: str = typer.Option("none", "--reg-mode", help="none, l1 or l2."),
    reg_param: float = typer.Option(0.0, "--reg-param", help="Regularization strength lambda."),
    bits: int = typer.Option(2048, "--bits", help="Paillier key size of each party."),
    psi_bits: int = typer.Option(2048, "--psi-bits", help="RSA key size of the PSI alignment."),
    compute: str | None = typer.Option(None, "--compute", help=_COMPUTE_HELP),
    private_keys: str | None = typer.Option(None, "--private-keys", help=_KEYS_HELP),
) -> None:
    """Federated evaluation job: random split, k-fold or leave-one-out; prints the mean metrics."""
    from ..crypto.paillier import generate_keypair
    from ..vfl.evaluation import evaluate

    backend = _backend(ctx, compute, private_keys)
    XA, XB, y = _psi_aligned(data_a, data_b, label, model, psi_bits, None, backend)
    est = _estimator(model, positive_class, y, alpha=alpha, max_epochs=epochs, batch_size=batch_size,
                     reg_mode=reg_mode, reg_param=reg_param, key_bits=bits, compute=backend, mode=mode)
    keys = (generate_keypair(bits), generate_keypair(bits))
    report = evaluate(est, [XA, XB], y, method=method, test_size=test_size, k=k, shuffle=shuffle,
                      task_id=task_id, keypairs=keys)
    for name, v in report.mean.items():
        typer.echo(f"{name}\t{v:.6g}")


@vfl_app.command("predict")
def predict_cmd(
    model_a: Path = typer.Option(..., "--model-a", help="Party A's saved model part (model_a.json)."),
    model_b: Path = typer.Option(..., "--model-b", help="Party B's saved model part (model_b.json)."),
    data_a: Path = typer.Option(..., "--data-a", help="A's rows to predict (CSV, id column first)."),
    data_b: Path = typer.Option(..., "--data-b", help="B's rows to predict (CSV, id column first)."),
    threshold: float | None = typer.Option(None, "--threshold", help="Logistic: probability threshold."),
    psi_bits: int = typer.Option(2048, "--psi-bits", help="RSA key size of the PSI alignment."),
    out: Path | None = typer.Option(None, "--out", help="Write the predictions here (CSV) instead of stdout."),
) -> None:
    """Predict with two saved model parts (A sends its partial scores, B combines and decodes)."""
    from ..vfl import load_model_part, predict_in_process
    from ..vfl.align import psi_align

    pa, pb = load_model_part(str(model_a)), load_model_part(str(model_b))
    if pa.role != "feature" or pb.role != "label" or pa.model != pb.model:
        raise ParameterError("--model-a must be the feature party's part and --model-b the label party's, same model")
    ids_a, _, XA, _ = _read_csv(data_a)
    ids_b, _, XB, _ = _read_csv(data_b)
    ia, ib, common = psi_align(ids_a, ids_b, rsa_bits=psi_bits)
    pred = predict_in_process(pa, XA[ia], pb, XB[ib], threshold=threshold)
    rows = [[i, v] + ([f"{p:.6g}"] if pred.proba is not None else []) for i, v, p in
            zip(common, pred.values, pred.proba if pred.proba is not None else pred.scores)]
    head = ["id", "prediction"] + (["probability"] if pred.proba is not None else [])
    if out is not None:
        with atomic_output(out, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(head)
            w.writerows(rows)
    else:
        typer.echo("\t".join(head))
        for r in rows:
            typer.echo("\t".join(str(x) for x in r))
