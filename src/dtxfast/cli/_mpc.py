"""``dtx mpc dnn``: three-party secret-shared MLP on a PaddleDTX ``dnn_paddlefl`` folder.

Trains the default :class:`~dtxfast.vfl.dnn.VerticalMLPRegressor` on shares (three parties in
this process, over the in-memory channel) for each seed, and beside it the same network in
plaintext numpy from the same initialisation, then prints the prediction RMSE of both.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from ..errors import ParameterError
from . import app

__all__ = ["mpc_app"]

mpc_app = typer.Typer(help="Three-party secure computation (replicated secret sharing).", no_args_is_help=True)
app.add_typer(mpc_app, name="mpc")


@mpc_app.command("dnn")
def dnn(
    folder: Path = typer.Argument(..., help="Folder with train_data{A,B,C}.csv, predict_data{A,B,C}.csv, targetValues.csv."),
    seeds: int = typer.Option(5, "--seeds", min=1, help="How many seeds (initialisation and batch order)."),
    epochs: int = typer.Option(0, "--epochs", min=0, help="Epochs (0: the estimator's default)."),
    label: str = typer.Option("MEDV", "--label", help="Name of the label column."),
    standardize: bool = typer.Option(False, "--standardize/--no-standardize",
                                     help="Each party standardizes its own columns first (off: PaddleDTX's "
                                          "dnn_paddlefl files are already normalized and PaddleDTX trains on "
                                          "them as given, so the RMSE compares with its published one)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
) -> None:
    """Train the three-party DNN on shares and report RMSE against the plaintext network."""
    from ..vfl.dnn import VerticalMLPRegressor, read_paddledtx_dnn

    if not folder.is_dir():
        raise ParameterError(f"{folder} is not a folder")
    data = read_paddledtx_dnn(folder, label=label)
    if data.predict_y is None:
        raise ParameterError(f"{folder} has no targetValues.csv to score the predictions against")
    extra: dict[str, Any] = {"epochs": epochs} if epochs else {}
    extra["standardize"] = standardize
    rows = []
    console = Console(stderr=True)
    for seed in range(seeds):
        with console.status(f"seed {seed}: training on shares"):
            t = time.perf_counter()
            secure = VerticalMLPRegressor(random_state=seed, **extra).fit(data.train_parts, data.train_y)
            pred = secure.predict(data.predict_parts)
            dt = time.perf_counter() - t
        plain = VerticalMLPRegressor(random_state=seed, secure=False, **extra).fit(data.train_parts, data.train_y)
        rs = float(np.sqrt(np.mean((pred - data.predict_y) ** 2)))
        rp = float(np.sqrt(np.mean((plain.predict(data.predict_parts) - data.predict_y) ** 2)))
        mib = max(secure.bytes_per_epoch_.values()) / 2**20
        rows.append({"seed": seed, "rmse_secure": round(rs, 4), "rmse_plaintext": round(rp, 4),
                     "relative": round(rs / rp - 1, 5), "seconds": round(dt, 2), "mib_per_party_epoch": round(mib, 3)})
    mean = float(np.mean([r["rmse_secure"] for r in rows]))
    if as_json:
        typer.echo(json.dumps({"rows": rows, "mean_rmse_secure": round(mean, 4),
                               "train_rows": len(data.train_y), "predict_rows": len(data.predict_y)}))
        return
    table = Table(title=f"three-party DNN on shares: {len(data.train_y)} train / {len(data.predict_y)} predict rows")
    for col in ("seed", "RMSE on shares", "RMSE plaintext", "difference", "time (s)", "MiB/party/epoch"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(str(r["seed"]), f"{r['rmse_secure']:.3f}", f"{r['rmse_plaintext']:.3f}",
                      f"{100 * r['relative']:+.2f} %", f"{r['seconds']:.1f}", f"{r['mib_per_party_epoch']:.2f}")
    Console().print(table)
    Console().print(f"mean RMSE on shares over {seeds} seed(s): {mean:.3f}")
