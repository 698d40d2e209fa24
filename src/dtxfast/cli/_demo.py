"""``dtx demo``: the main job on the embedded default, no server to start by hand.

It shows the compiled Paillier layer at work (encrypt, homomorphic gradient step, decrypt,
checked against numpy), then runs the whole network as local processes
(:func:`dtxfast.nodes.demo.run_network_demo`): storage nodes, data owners, executors and a
requester publishing linear, logistic and DNN tasks, with the results beside centralized
scikit-learn.
"""

from __future__ import annotations

import time

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from .. import backend_info, num_threads
from ..errors import ParameterError
from . import app

__all__ = ["demo", "paillier_demo"]


def paillier_demo(console: Console, bits: int, quick: bool) -> None:
    """Encrypt a vector, run ``X @ E(v)`` (the VFL gradient step) and check it against numpy."""
    from ..crypto.paillier import generate_keypair

    info = backend_info()["_paillier"]
    console.print(f"[bold]Paillier[/bold] backend: {info.backend} ({info.reason}); threads: {num_threads()}")
    rows: list[tuple[str, str, str]] = []
    m, k = (8, 256) if quick else (32, 2000)
    rng = np.random.default_rng(7)
    X = rng.normal(size=(m, k))
    v = rng.normal(size=k)
    with console.status(f"generating a {bits}-bit key pair"):
        t = time.perf_counter()
        pk, sk = generate_keypair(bits)
        pk.encrypt([0.0])  # builds the fixed-base table
        rows.append(("key generation + DJN table", f"{time.perf_counter() - t:.2f} s", ""))
    with console.status(f"encrypting {k} floats"):
        t = time.perf_counter()
        ev = pk.encrypt(v)
        dt = time.perf_counter() - t
        rows.append((f"encrypt {k} floats", f"{dt:.2f} s", f"{dt / k * 1e6:.0f} µs/elem"))
    with console.status(f"computing X @ E(v) for X of {m}x{k}"):
        t = time.perf_counter()
        prod = X @ ev
        dt = time.perf_counter() - t
        rows.append((f"X @ E(v), X {m}x{k}", f"{dt:.2f} s", f"{dt / (m * k) * 1e6:.1f} µs/entry"))
    with console.status("decrypting"):
        t = time.perf_counter()
        got = sk.decrypt(prod)
        dt = time.perf_counter() - t
        rows.append((f"decrypt {m} results", f"{dt:.3f} s", f"{dt / m * 1e6:.0f} µs/elem"))
    err = float(np.max(np.abs(got - X @ v)))
    table = Table(title=f"Paillier ({bits}-bit key)")
    for col in ("step", "time", "per element"):
        table.add_column(col)
    for r in rows:
        table.add_row(*r)
    console.print(table)
    console.print(f"max |decrypt(X @ E(v)) - X @ v| = {err:.3g}  ({'ok' if err < 1e-9 else 'MISMATCH'})")
    if err >= 1e-9:
        raise typer.Exit(1)


@app.command()
def demo(
    quick: bool = typer.Option(False, "--quick", help="Small data, 1024-bit keys, few epochs (a couple of minutes)."),
    bits: int = typer.Option(2048, "--bits", help="Paillier and PSI key size."),
    workdir: str | None = typer.Option(None, "--workdir", help="Keep the ledger, keys, data and logs here."),
    keep: bool = typer.Option(False, "--keep", help="Leave the network running afterwards."),
) -> None:
    """Run the whole network on this machine (ledger, storage nodes, data owners, executors) and
    its tasks end to end: the main job, on the embedded default (no server to start)."""
    if bits < 1024:
        raise ParameterError("--bits must be at least 1024")
    from ..nodes.demo import run_network_demo

    console = Console()
    if quick:
        bits = min(bits, 1024)
    paillier_demo(console, bits, quick)
    run_network_demo(console, workdir=workdir, quick=quick, keep=keep, bits=bits)
