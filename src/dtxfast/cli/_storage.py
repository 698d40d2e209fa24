"""``dtx storage put|get|audit|odds``: encrypted, sliced, replicated files in a local replica store."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from .._fs import atomic_output
from . import app
from ._check import at_least, finite, input_file, output_file, output_folder

if TYPE_CHECKING:
    from ..storage import DataOwner, FileMetadata

__all__ = ["storage_app"]

storage_app = typer.Typer(help="Encrypted, sliced, replicated files and proofs of storage.", no_args_is_help=True)
app.add_typer(storage_app, name="storage")

_KEY_OPT = typer.Option(..., "--key", "-K", help="The owner's key file (dtx keys new).")
_STORE_OPT = typer.Option(..., "--store", "-s", help="Replica store directory.")


def _owner(key: str) -> DataOwner:
    from ..ledger.identity import NodeIdentity
    from ..storage import DataOwner

    return DataOwner(NodeIdentity.load(str(input_file("--key", key))).private_key)


def _meta(path: str) -> FileMetadata:
    from ..errors import DtxError, MalformedInput
    from ..storage import FileMetadata

    try:
        meta = FileMetadata.from_bytes(input_file("metadata", path).read_bytes())
    except DtxError as exc:
        if isinstance(exc, MalformedInput):
            raise MalformedInput(f"{path}: not a file's signed metadata ({exc})") from None
        raise
    meta.verify()
    if meta.expires_at < time.time():  # still readable locally, but the user should know
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(meta.expires_at))
        typer.echo(f"dtx: note: file {meta.file_id_hex} expired on {when}; storage nodes may drop it", err=True)
    return meta


@storage_app.command("put")
def put(
    file: str = typer.Argument(..., help="The file to store."),
    key: str = _KEY_OPT,
    store: str = _STORE_OPT,
    meta_out: str = typer.Option("", "--meta", help="Where to write the signed metadata (default: <store>/<file id>.meta)."),
    name: str = typer.Option("", "--name", help="Name recorded in the metadata (default: the file's name)."),
    namespace: str = typer.Option("default", "--namespace"),
    description: str = typer.Option("", "--description"),
    slice_size: int = typer.Option(4 * 1024 * 1024, "--slice-size", help="Bytes per slice."),
    replicas: int = typer.Option(3, "--replicas", "-r", help="Replicas per slice."),
    chunk_size: int = typer.Option(4096, "--chunk-size", help="Merkle chunk size of the proofs of storage."),
    ttl_days: float = typer.Option(365.0, "--ttl-days", help="Days until the file expires."),
) -> None:
    """Encrypt FILE into slices × replicas in the store and write its signed metadata."""
    from ..storage import DirectoryReplicaStore

    input_file("FILE", file)
    finite("--ttl-days", ttl_days, low=0, low_open=True, high=100 * 365)
    at_least("--replicas", replicas, 1)
    at_least("--slice-size", slice_size, 1)
    at_least("--chunk-size", chunk_size, 1)
    output_folder("--store", store)
    if meta_out:
        output_file("--meta", meta_out, {"FILE": file, "--key": key})
    owner = _owner(key)
    replica_store = DirectoryReplicaStore(store)
    now = int(time.time())
    with open(file, "rb") as f:
        meta = owner.upload(f, replica_store, name=name or os.path.basename(file), namespace=namespace,
                            description=description, slice_size=slice_size, replicas=replicas,
                            chunk_size=chunk_size, now=now, expires_at=now + int(ttl_days * 86400))
    out = Path(meta_out or Path(store) / f"{meta.file_id_hex}.meta")
    with atomic_output(out, "wb", private=False) as fh:  # signed metadata is meant to be shared
        fh.write(meta.to_bytes())
    typer.echo(f"file {meta.file_id_hex}: {meta.size} bytes, {meta.slice_count} slices × {meta.replicas} "
               f"replicas -> {store}; metadata {out}")


@storage_app.command("get")
def get(
    meta: str = typer.Argument(..., help="The file's signed metadata."),
    key: str = _KEY_OPT,
    store: str = _STORE_OPT,
    out: str = typer.Option(..., "--out", "-o", help="Where to write the rebuilt file."),
) -> None:
    """Rebuild a file from any one intact replica of each slice."""
    from ..storage import DirectoryReplicaStore

    target = output_file("--out", out, {"META": meta, "--key": key})
    metadata = _meta(meta)
    owner = _owner(key)
    replicas = DirectoryReplicaStore(store, create=False)
    with atomic_output(target, "wb") as f:  # a failed rebuild leaves --out untouched
        owner.download(metadata, replicas, f)
    typer.echo(f"wrote {metadata.size} bytes to {out}")


@storage_app.command("audit")
def audit(
    meta: str = typer.Argument(..., help="The file's signed metadata."),
    store: str = _STORE_OPT,
    k: int = typer.Option(44, "--k", help="Chunks asked per challenge."),
) -> None:
    """Challenge every replica held in the store and check the answers against the metadata's roots."""
    from ..errors import InvalidProof
    from ..storage import DirectoryReplicaStore
    from ..storage.audit import audit_store

    at_least("--k", k, 1)
    report = audit_store(_meta(meta), DirectoryReplicaStore(store, create=False), k=k)
    table = Table(title=f"audit of {report.file_id} ({report.name})")
    for col in ("slice", "replica", "result"):
        table.add_column(col)
    for s, r, err in report.rows():
        table.add_row(str(s), str(r), "pass" if err is None else f"FAIL: {err}")
    Console().print(table)
    if report.failed:
        raise InvalidProof(f"{report.failed} of {report.total} replicas failed their proof of storage")


@storage_app.command("odds")
def odds(
    lost: float = typer.Option(0.1, "--lost", help="Fraction of a replica a node lost."),
    k: int = typer.Option(44, "--k", help="Chunks asked per challenge."),
    leaves: int = typer.Option(0, "--leaves", help="Chunks in the replica (0: the with-replacement bound)."),
) -> None:
    """Chance that one challenge catches a node that lost a fraction of a replica."""
    from ..protocols.storage import detection_probability

    finite("--lost", lost, low=0, high=1)
    at_least("--k", k, 1)
    at_least("--leaves", leaves, 0)
    p = detection_probability(lost, k, leaves or None)
    typer.echo(f"one challenge of k={k} catches a {lost:.2%} loss with probability {p:.4%}"
               f" (passes with {1 - p:.4%})")
