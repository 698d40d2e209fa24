"""``dtx psi``: private set intersection of two id lists (CSV columns).

Three ways to run it:

- embedded demo (default): ``dtx psi --ids a.csv --other b.csv`` runs both parties in this process;
- two local processes over loopback: add ``--transport process``; this process is the requester
  and starts the signer as a second ``dtx psi --role signer`` process on 127.0.0.1;
- one party of a two-process run: ``dtx psi --role signer --ids b.csv --listen 127.0.0.1:7000``
  and ``dtx psi --role requester --ids a.csv --connect 127.0.0.1:7000``.

The requester writes the aligned ids (the intersection, in its own order) as a one-column CSV.
Parse and call: the two-process parties are :mod:`dtxfast.nodes.psi`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from ..errors import ParameterError
from . import app
from ._check import finite, output_file

if TYPE_CHECKING:
    from ..compute import ComputeBackend

__all__ = ["psi"]


@contextmanager
def _progress(quiet: bool) -> Iterator[Callable[[int, int], None]]:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    # off a terminal a transient bar would still leave a blank line before the summary or error
    with Progress(TextColumn("psi"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True, disable=quiet or not console.is_terminal) as bar:
        task = bar.add_task("psi", total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


@app.command()
def psi(
    ids: Path = typer.Option(..., "--ids", help="CSV file with this party's ids (header row)."),
    column: str = typer.Option("id", "--column", help="Column of --ids holding the ids."),
    other: Optional[Path] = typer.Option(None, "--other", help="The other party's CSV (demo / process)."),
    other_column: Optional[str] = typer.Option(None, "--other-column", help="Column of --other (default: --column)."),
    role: str = typer.Option("demo", "--role", help="demo (both parties here), signer or requester."),
    transport: str = typer.Option("embedded", "--transport", help="embedded (one process) or process (two, loopback)."),
    listen: Optional[str] = typer.Option(None, "--listen", help="Signer: HOST:PORT to listen on (port 0: any)."),
    connect: Optional[str] = typer.Option(None, "--connect", help="Requester: the signer's HOST:PORT."),
    connect_timeout: float = typer.Option(
        10.0, "--connect-timeout", help="Requester: seconds to keep retrying while nobody listens at --connect "
        "(a signer that is still starting)."),
    mode: Optional[str] = typer.Option(
        None, "--mode", help="rsa (blind signatures, the default), ecdh (X25519) or ot (KKRT16 OPRF from OT "
        "extension, the fastest); a requester given --mode refuses a signer of another mode."),
    key: Optional[Path] = typer.Option(None, "--key", help="Signer: RSA private key (PEM); default a fresh key."),
    bits: int = typer.Option(2048, "--bits", help="Size of a fresh RSA key."),
    chunk: int = typer.Option(4096, "--chunk", help="Ids per message."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Signer: keep its own tags here across runs."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Where to write the aligned ids (default stdout)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary."),
    compute: Optional[str] = typer.Option(
        None, "--compute", help="Where signing and blinding run: local, ray, ray:auto, ray:local, ray:HOST:PORT "
        "or ray://HOST:PORT (default: $DTXFAST_COMPUTE, else local)."),
    private_keys: Optional[str] = typer.Option(
        None, "--private-keys", help="Ray: refuse (default), local (sign on this machine) or send (the RSA "
        "private key goes to the party's own Ray workers)."),
) -> None:
    """Private set intersection of --ids with another party's ids; writes the aligned ids."""
    from ..compute import get_compute

    if mode not in (None, "rsa", "ecdh", "ot"):
        raise ParameterError(f"--mode must be rsa, ecdh or ot, not {mode!r}")
    if role not in ("demo", "signer", "requester"):
        raise ParameterError("--role must be demo, signer or requester")
    if transport not in ("embedded", "process"):
        raise ParameterError("--transport must be embedded or process")
    if role == "requester" and connect is None:
        raise ParameterError("--role requester needs --connect HOST:PORT")
    if role == "demo" and other is None:
        raise ParameterError("the demo needs --other (the second party's CSV)")
    # options of another role would be ignored silently: refuse them
    for flag, value, roles in (("--other", other, ("demo",)), ("--transport", transport != "embedded", ("demo",)),
                               ("--listen", listen, ("signer",)), ("--connect", connect, ("requester",)),
                               ("--key", key, ("demo", "signer")), ("--cache-dir", cache_dir, ("demo", "signer"))):
        if value not in (None, False) and role not in roles:
            raise ParameterError(f"{flag} is for --role {' or '.join(roles)}, not --role {role}")
    if chunk < 1:
        raise ParameterError(f"--chunk must be at least 1, not {chunk}")
    finite("--connect-timeout", connect_timeout, low=0)
    if key is not None and mode in ("ecdh", "ot"):
        raise ParameterError(f"--key is an RSA key (--mode rsa); --mode {mode} draws a fresh key")
    if cache_dir is not None and mode == "ot":
        raise ParameterError("--cache-dir keeps a signer's tags across runs; --mode ot has none (each run is a "
                             "fresh OPRF)")
    for name, path in (("--ids", ids), ("--other", other), ("--key", key)):
        if path is not None and not path.is_file():
            raise ParameterError(f"{name} {path}: {'is a directory' if path.is_dir() else 'no such file'}")
    if cache_dir is not None and cache_dir.exists() and not cache_dir.is_dir():
        raise ParameterError(f"--cache-dir {cache_dir} is a file, not a folder")
    if out is not None:
        if out.is_dir():
            raise ParameterError(f"--out {out} is a directory")
        if not out.parent.is_dir():
            raise ParameterError(f"--out {out}: folder {out.parent} does not exist")
        output_file("--out", out, {"--ids": ids, "--other": other, "--key": key})
    with get_compute(compute, private_keys=private_keys) as backend:
        _psi(ids, column, other, other_column or column, role, transport, listen, connect, mode or "rsa", key, bits,
             chunk, cache_dir, out, quiet, backend, compute, private_keys, mode, connect_timeout)


def _psi(ids: Path, column: str, other: Optional[Path], other_column: str, role: str, transport: str,
         listen: Optional[str], connect: Optional[str], mode: str, key: Optional[Path], bits: int, chunk: int,
         cache_dir: Optional[Path], out: Optional[Path], quiet: bool, backend: ComputeBackend,
         compute: Optional[str], private_keys: Optional[str], expect_mode: Optional[str],
         connect_timeout: float) -> None:
    from ..nodes.psi import (
        SignerProcess,
        load_ids,
        request_intersection,
        serve_signer,
        signer_key,
        write_ids,
    )
    from ..protocols.psi import PSIRequester, PSISigner, SignerTagCache, run_two_party

    cache = SignerTagCache(cache_dir) if cache_dir is not None else None
    err = sys.stderr
    if role == "signer":
        signer = PSISigner(load_ids(ids, column), signer_key(mode, key, bits), chunk_size=chunk, cache=cache,
                           compute=backend)
        served = serve_signer(signer, listen or "127.0.0.1:0",
                              on_listening=lambda a: print(f"listening {a}", flush=True))
        if not quiet:
            done = (f"served the OPRF for the requester's {served} ids" if mode == "ot"
                    else f"signed {served} blinded ids for the requester")
            print(f"dtx psi: {done}", file=err)
        return

    # a requester given --mode refuses a signer of the other mode at the signer's HELLO (before any work)
    requester = PSIRequester(load_ids(ids, column), chunk_size=chunk, compute=backend, mode=expect_mode)
    if role == "requester":
        assert connect is not None
        with _progress(quiet) as progress:
            result = request_intersection(requester, connect, connect_timeout=connect_timeout, on_progress=progress)
        summary = f"{len(result)} ids in common (of {len(requester.ids)}; the signer holds {requester.signer_count})"
    else:  # demo: both parties, in this process or in two processes
        assert other is not None
        if transport == "embedded":
            signer = PSISigner(load_ids(other, other_column), signer_key(mode, key, bits), chunk_size=chunk,
                               cache=cache, compute=backend)
            with _progress(quiet) as progress:
                result = run_two_party(requester, signer, on_progress=progress)
        else:
            with SignerProcess(other, other_column, mode=mode, key=key, bits=bits, chunk=chunk,
                               cache_dir=cache_dir, compute=compute, private_keys=private_keys) as proc, \
                    _progress(quiet) as progress:
                result = request_intersection(requester, proc.address, on_progress=progress)
        summary = (f"{len(result)} ids in common (this party {len(requester.ids)}, "
                   f"the other {requester.signer_count})")
    write_ids(sys.stdout if out is None else out, column, result)
    if not quiet:
        print(f"dtx psi: {summary}", file=err)
