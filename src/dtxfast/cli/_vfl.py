"""``dtx vfl``: two-party vertical linear / logistic regression on CSV files (both parties in-process)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from . import app, on_success
from ._check import at_least, finite, output_file, output_folder

__all__ = ["vfl_app"]

vfl_app = typer.Typer(help="Vertical federated linear and logistic regression (two parties, Paillier).",
                      no_args_is_help=True)
app.add_typer(vfl_app, name="vfl")


_COMPUTE_HELP = ("Where the batch kernels run: local, ray, ray:auto, ray:local, ray:HOST:PORT or "
                 "ray://HOST:PORT (default: $DTXFAST_COMPUTE, else local).")
_KEYS_HELP = ("Ray: what the PSI alignment's RSA signing does with the private key: refuse (default), "
              "local (sign on this machine) or send (to the party's own Ray workers).")


def _check_common(epochs: int, alpha: float, bits: int, psi_bits: int) -> None:
    at_least("--epochs", epochs, 1)
    finite("--alpha", alpha, low=0, low_open=True)
    at_least("--bits", bits, 1024)
    at_least("--psi-bits", psi_bits, 1024)


def _summary(console: Any) -> Any:
    """The ``log`` of a job: its lines (PSI counts, epochs trained, files written) are printed to
    stderr once the command succeeded; a command that fails midway shows its error line alone,
    not half a run's progress that reads like success. (The epoch bar is transient: cleared when
    training ends either way.)"""
    lines: list[str] = []
    on_success(lambda: [console.print(line, markup=False, highlight=False) for line in lines])
    return lines.append


def _backend(ctx: typer.Context, compute: str | None, private_keys: str | None) -> Any:
    """The compute backend of ``--compute``; closed when the command ends."""
    from ..compute import get_compute

    backend = get_compute(compute, private_keys=private_keys)
    ctx.call_on_close(backend.close)
    return backend


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

    from ..vfl.jobs import train_job

    _check_common(epochs, alpha, bits, psi_bits)
    at_least("--eval-every", eval_every, 1)
    inputs = {"--data-a": data_a, "--data-b": data_b, "--predict-a": predict_a, "--predict-b": predict_b,
              "--target": target}
    for name, path in (("--out", out), ("--plot", plot)):
        if path is not None:
            output_file(name, path, inputs)
    if save_dir is not None:
        output_folder("--save-dir", save_dir)
    console = Console(stderr=True)
    report = train_job(data_a, data_b, label=label, model=model, positive_class=positive_class, psi_bits=psi_bits,
                       val_fraction=val_fraction, eval_every=eval_every, predict_a=predict_a, predict_b=predict_b,
                       target=target, save_dir=save_dir, plot=plot, compute=_backend(ctx, compute, private_keys),
                       log=_summary(console), progress=console if console.is_terminal else False, alpha=alpha, max_epochs=epochs, batch_size=batch_size,
                       reg_mode=reg_mode, reg_param=reg_param, amplitude=amplitude, accuracy=accuracy,
                       key_bits=bits, mode=mode)
    pred = report.prediction
    if pred is None:
        return
    if out is not None:
        pred.to_csv(out)
    if target is not None:
        for k, v in report.metrics.items():
            typer.echo(f"{k}\t{v:.6g}")
    elif out is None:
        for row in pred.rows():
            typer.echo("\t".join(row))


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
    from ..vfl.jobs import evaluate_job

    _check_common(epochs, alpha, bits, psi_bits)
    mean = evaluate_job(data_a, data_b, label=label, model=model, positive_class=positive_class, method=method,
                        test_size=test_size, k=k, shuffle=shuffle, task_id=task_id, psi_bits=psi_bits,
                        compute=_backend(ctx, compute, private_keys), alpha=alpha, max_epochs=epochs,
                        batch_size=batch_size, reg_mode=reg_mode, reg_param=reg_param, key_bits=bits, mode=mode)
    for name, v in mean.items():
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
    from ..vfl.jobs import predict_job

    if threshold is not None:
        finite("--threshold", threshold, low=0, high=1)
    if out is not None:
        output_file("--out", out, {"--model-a": model_a, "--model-b": model_b, "--data-a": data_a, "--data-b": data_b})
    pred = predict_job(model_a, model_b, data_a, data_b, threshold=threshold, psi_bits=psi_bits)
    if out is not None:
        pred.to_csv(out, digits=6)
    else:
        typer.echo("\t".join(pred.header()))
        for row in pred.rows(digits=6):
            typer.echo("\t".join(row))
