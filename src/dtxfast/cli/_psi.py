"""``dtx psi``: private set intersection of two id lists (CSV columns).

Three ways to run it:

- embedded demo (default): ``dtx psi --ids a.csv --other b.csv`` runs both parties in this process;
- two local processes over loopback: add ``--transport process``; this process is the requester
  and starts the signer as a second ``dtx psi --role signer`` process on 127.0.0.1;
- one party of a two-process run: ``dtx psi --role signer --ids b.csv --listen 127.0.0.1:7000``
  and ``dtx psi --role requester --ids a.csv --connect 127.0.0.1:7000``.

The requester writes the aligned ids (the intersection, in its own order) as a one-column CSV.
The two-process roles run :mod:`dtxfast.protocols.psi_runner` over a
:class:`~dtxfast.transport.stream.StreamChannel` (one TCP connection, 4-byte length framing).
"""

from __future__ import annotations

import csv
import socket
import subprocess
import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING, Iterator, Optional

import typer

from .._fs import atomic_output
from ..errors import MalformedInput, ParameterError, ProtocolError
from ..protocols.psi_runner import run_requester, run_signer
from ..transport.stream import StreamChannel, listen_once
from ..transport.stream import connect as connect_stream
from . import app

if TYPE_CHECKING:
    from ..compute import ComputeBackend

__all__ = ["psi", "read_id_column"]

_MAX_FRAME = 28 + (1 << 16) * 1024
_WINDOW = 2


def read_id_column(path: Path, column: str) -> Iterator[str]:
    """Stream the values of ``column`` from a CSV file with a header row (skips empty cells)."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            raise MalformedInput(f"{path}: empty CSV file (a header row is needed)") from None
        header = [h.strip().lstrip("\ufeff") for h in header]
        if column not in header:
            raise ParameterError(f"{path}: no column {column!r} (columns: {', '.join(header)})")
        col = header.index(column)
        for row in reader:
            if col < len(row) and row[col] != "":
                yield row[col]


def _load(path: Path, column: str):  # type: ignore[no-untyped-def]
    from ..crypto.blind_rsa import IdBatch

    return IdBatch.from_strings(read_id_column(path, column))


def _request(sock: socket.socket, requester, quiet: bool) -> None:  # type: ignore[no-untyped-def]
    with StreamChannel(sock, "requester", "signer", max_message=_MAX_FRAME) as ch, _progress(quiet) as bar:
        task = bar.add_task("psi", total=None)
        run_requester(requester, ch, "signer", window=_WINDOW,
                      on_progress=lambda d, t: bar.update(task, completed=d, total=t))


def _signer_key(key: Optional[Path], bits: int, mode: str):  # type: ignore[no-untyped-def]
    from ..crypto.blind_rsa import BlindRSASigner
    from ..crypto.ecdh import ECDHMaskKey

    if mode == "ecdh":
        return ECDHMaskKey.generate()
    if key is not None:
        return BlindRSASigner.from_pem(key.read_bytes())
    return BlindRSASigner.generate(bits)


def _write(out: Optional[Path], column: str, ids: list[bytes]) -> None:
    def rows(fh: IO[str]) -> None:
        w = csv.writer(fh)
        w.writerow([column])
        for x in ids:
            w.writerow([x.decode("utf-8", errors="replace")])

    if out is None:
        rows(sys.stdout)
    else:
        with atomic_output(out, "w", newline="", encoding="utf-8") as fh:
            rows(fh)


def _progress(quiet: bool):  # type: ignore[no-untyped-def]
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("psi"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=Console(stderr=True), transient=True, disable=quiet)


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
    mode: str = typer.Option("rsa", "--mode", help="rsa (blind signatures) or ecdh (X25519)."),
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

    with get_compute(compute, private_keys=private_keys) as backend:
        _psi(ids, column, other, other_column, role, transport, listen, connect, mode, key, bits, chunk,
             cache_dir, out, quiet, backend, compute, private_keys)


def _psi(ids: Path, column: str, other: Optional[Path], other_column: Optional[str], role: str,
         transport: str, listen: Optional[str], connect: Optional[str], mode: str, key: Optional[Path],
         bits: int, chunk: int, cache_dir: Optional[Path], out: Optional[Path], quiet: bool,
         backend: ComputeBackend, compute: Optional[str], private_keys: Optional[str]) -> None:
    from ..protocols.psi import PSIRequester, PSISigner, SignerTagCache, run_two_party

    if mode not in ("rsa", "ecdh"):
        raise ParameterError("--mode must be rsa or ecdh")
    if role not in ("demo", "signer", "requester"):
        raise ParameterError("--role must be demo, signer or requester")
    if transport not in ("embedded", "process"):
        raise ParameterError("--transport must be embedded or process")
    cache = SignerTagCache(cache_dir) if cache_dir is not None else None
    err = sys.stderr

    if role == "signer":
        signer = PSISigner(_load(ids, column), _signer_key(key, bits, mode), chunk_size=chunk, cache=cache,
                           compute=backend)
        sock = listen_once(listen or "127.0.0.1:0", on_listening=lambda a: print(f"listening {a}", flush=True))
        with StreamChannel(sock, "signer", "requester", max_message=_MAX_FRAME) as ch:
            run_signer(signer, ch, "requester")
        if not quiet:
            print(f"dtx psi: signed {signer.requests_served} blinded ids for the requester", file=err)
        return

    if role == "requester":
        if connect is None:
            raise ParameterError("--role requester needs --connect HOST:PORT")
        requester = PSIRequester(_load(ids, column), chunk_size=chunk, compute=backend)
        _request(connect_stream(connect), requester, quiet)
        result = requester.intersection().to_list()
        _write(out, column, result)
        if not quiet:
            print(f"dtx psi: {len(result)} ids in common (of {len(requester.ids)}; "
                  f"the signer holds {requester.signer_count})", file=err)
        return

    # demo: both parties, in this process or in two processes
    if other is None:
        raise ParameterError("the demo needs --other (the second party's CSV)")
    ocol = other_column or column
    requester = PSIRequester(_load(ids, column), chunk_size=chunk, compute=backend)
    if transport == "embedded":
        signer = PSISigner(_load(other, ocol), _signer_key(key, bits, mode), chunk_size=chunk, cache=cache,
                           compute=backend)
        with _progress(quiet) as bar:
            task = bar.add_task("psi", total=None)
            result = run_two_party(requester, signer,
                                   on_progress=lambda d, t: bar.update(task, completed=d, total=t))
    else:
        cmd = [sys.executable, "-c", "import sys; from dtxfast.cli import main; sys.exit(main(sys.argv[1:]))",
               "psi", "--role", "signer", "--ids", str(other), "--column", ocol, "--listen", "127.0.0.1:0",
               "--mode", mode, "--bits", str(bits), "--chunk", str(chunk), "--quiet"]
        if key is not None:
            cmd += ["--key", str(key)]
        if cache_dir is not None:
            cmd += ["--cache-dir", str(cache_dir)]
        if compute is not None:
            cmd += ["--compute", compute]
        if private_keys is not None:
            cmd += ["--private-keys", private_keys]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            if not line.startswith("listening "):
                proc.wait(timeout=10)
                msg = (proc.stderr.read() if proc.stderr else "").strip().splitlines()
                raise ProtocolError(f"the signer process did not start: {msg[-1] if msg else line}")
            _request(connect_stream(line.split()[1]), requester, quiet)
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        result = requester.intersection().to_list()
    _write(out, column, result)
    if not quiet:
        print(f"dtx psi: {len(result)} ids in common (this party {len(requester.ids)}, "
              f"the other {requester.signer_count} distinct)", file=err)
