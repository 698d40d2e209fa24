"""``dtx storage start|demo``, ``dtx file upload|download|list|show|extend``, ``dtx file
applications|approve|reject|revoke``, ``dtx monitor``:
the storage network's commands (parse, call :mod:`dtxfast.nodes.storage` /
:mod:`dtxfast.storage.network` / :mod:`dtxfast.storage.monitor`, print)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import msgspec
import typer
from rich.console import Console
from rich.table import Table

from . import app, on_close, watch_ledger
from ._check import at_least, finite, input_file, node_id, output_file, output_folder
from ._storage import storage_app

if TYPE_CHECKING:
    from ..storage.network import StorageNetwork

__all__ = ["file_app"]

file_app = typer.Typer(help="Files in the storage network: upload, download, list, show, extend.",
                       no_args_is_help=True)
app.add_typer(file_app, name="file")

_LEDGER = typer.Option(..., "--ledger", "-L", envvar="DTX_LEDGER", help="The ledger (SQLite file).")
_KEY = typer.Option(..., "--key", "-K", help="Your key file (dtx keys new).")
_LIVENESS = typer.Option(180.0, "--liveness", help="Seconds without a heartbeat after which a node counts as down.")


def _network(ledger: str, key: str | None, liveness: float = 180.0, *, acts: bool = False) -> StorageNetwork:
    """The storage network on ``ledger`` as ``key`` (closed when the command ends, so a read
    leaves no SQLite side files behind). A command that ``acts`` with the key refuses a ledger
    that went back below the key's mark (:func:`dtxfast.cli.watch_ledger`)."""
    from ..ledger import NodeIdentity, open_ledger
    from ..storage.network import StorageNetwork

    finite("--liveness", liveness, low=0, low_open=True)
    ident = NodeIdentity.load(str(input_file("--key", key))) if key else NodeIdentity.generate()  # views need no key
    led = open_ledger(ledger)
    on_close(led.close)
    if acts and key:
        watch_ledger(led, key)
    return StorageNetwork(led, ident, liveness=liveness)


@contextlib.contextmanager
def _progress(total: int, what: str, quiet: bool) -> Iterator[Callable[[int], None] | None]:
    console = Console(stderr=True)
    if quiet or not console.is_terminal:  # off a terminal a transient bar still leaves a blank line
        yield None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                  TransferSpeedColumn(), console=console, transient=True) as bar:
        task = bar.add_task(what, total=total)
        yield lambda n: bar.advance(task, n)


@storage_app.command("start")
def start(
    key: str = typer.Option(None, "--key", "-K", help="The node's key file."),
    ledger: str = typer.Option(None, "--ledger", "-L", help="The ledger (SQLite file)."),
    data_dir: str = typer.Option(None, "--data-dir", "-d", help="Where the node keeps replicas."),
    listen: str = typer.Option(None, "--listen", help="HOST:PORT (default 127.0.0.1:0, any free port)."),
    heartbeat: float = typer.Option(None, "--heartbeat", help="Seconds between heartbeats (default 60)."),
    max_body: int = typer.Option(None, "--max-body", help="Largest request body in bytes."),
    retention_days: float = typer.Option(None, "--retention-days", help="Days replicas of expired files are kept."),
    config: str = typer.Option(None, "--config", "-c", help="A TOML file of these settings (flags and DTX_* win)."),
) -> None:
    """Run a storage node in the foreground (prints 'listening on http://HOST:PORT' when ready)."""
    from ..nodes.storage import StorageNodeConfig, run_storage_node

    cfg = StorageNodeConfig.load(config, key=key, ledger=ledger, data_dir=data_dir, listen=listen,
                                 heartbeat=heartbeat, max_body=max_body, retention_days=retention_days)
    run_storage_node(cfg)


@storage_app.command("demo")
def demo(
    size_mib: float = typer.Option(24.0, "--size-mib", help="Size of the random file to store."),
    nodes: int = typer.Option(5, "--nodes", help="Storage node processes to start (at least 4)."),
    interval: float = typer.Option(2.0, "--interval", help="Seconds between the monitor's rounds."),
    keep: str = typer.Option(None, "--keep", help="Keep the ledger, keys, data and logs in this directory."),
) -> None:
    """Start local storage nodes on a temporary SQLite ledger, upload, challenge, kill a node,
    repair, download bit-exact, stop everything."""
    from ..errors import ParameterError
    from ..nodes.local import run_storage_demo

    if nodes < 4:
        raise ParameterError("the demo needs at least 4 nodes (3 replicas and one to repair onto)")
    finite("--size-mib", size_mib, low=0, low_open=True, high=1 << 20)
    finite("--interval", interval, low=0, low_open=True)
    if keep:
        output_folder("--keep", keep)
    run_storage_demo(size_mib=size_mib, nodes=nodes, interval=interval, echo=typer.echo, keep=keep)


@file_app.command("upload")
def upload(
    path: str = typer.Argument(..., help="The file to store."),
    key: str = _KEY,
    ledger: str = _LEDGER,
    namespace: str = typer.Option("default", "--namespace", "-n", help="Namespace (sets the replica count)."),
    replicas: int = typer.Option(None, "--replicas", "-r", help="Replicas per slice (a new namespace's count)."),
    expire_days: float = typer.Option(365.0, "--expire-days", help="Days until the file expires."),
    slice_size: int = typer.Option(4 * 1024 * 1024, "--slice-size", help="Plaintext bytes per slice."),
    chunk_size: int = typer.Option(4096, "--chunk-size", help="Merkle chunk size of the proofs of storage."),
    name: str = typer.Option("", "--name", help="Name on the ledger (default: the file's name)."),
    description: str = typer.Option("", "--description"),
    liveness: float = _LIVENESS,
    as_json: bool = typer.Option(False, "--json", help='Print {"file_id": ...}.'),
) -> None:
    """Encrypt, slice and replicate a file onto storage nodes; publish it on the ledger."""
    import os

    input_file("PATH", path)
    finite("--expire-days", expire_days, low=0, low_open=True, high=100 * 365)
    if replicas is not None:
        at_least("--replicas", replicas, 1)
    at_least("--slice-size", slice_size, 1)
    at_least("--chunk-size", chunk_size, 1)
    net = _network(ledger, key, liveness, acts=True)
    with _progress(os.path.getsize(path), "upload", as_json) as progress:
        fid = net.upload(path, name=name or None, namespace=namespace, replicas=replicas,
                         expire_days=expire_days, description=description, slice_size=slice_size,
                         chunk_size=chunk_size, progress=progress)
    typer.echo(msgspec.json.encode({"file_id": fid}).decode() if as_json else fid)


@file_app.command("download")
def download(
    file_id: str = typer.Argument(..., help="The file id."),
    key: str = _KEY,
    ledger: str = _LEDGER,
    out: str = typer.Option(..., "--out", "-o", help="Where to write the file (all or nothing)."),
    liveness: float = _LIVENESS,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Fetch, verify and decrypt a file from any healthy replica of each slice."""
    output_file("--out", out, {"--key": key, "--ledger": ledger})
    net = _network(ledger, key, liveness, acts=True)
    f = net.live_file(file_id)
    with _progress(f.size, "download", quiet) as progress:
        size = net.download(file_id, out, progress=progress)
    if not quiet:
        typer.echo(f"wrote {size} bytes to {out}")


@file_app.command("list")
def list_files(
    ledger: str = _LEDGER,
    owner: str = typer.Option(None, "--owner", help="Only this owner's files (a node id)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Files on the ledger with their health."""
    if owner is not None:
        node_id("--owner", owner)
    rows = _network(ledger, None).list_files(owner=owner)
    if as_json:
        typer.echo(msgspec.json.encode(rows).decode())
        return
    table = Table(title="files")
    for col in ("file id", "name", "size", "slices", "replicas", "expires", "status", "health"):
        table.add_column(col, no_wrap=col == "file id")
    for r in rows:
        table.add_row(r["file_id"], r["name"], str(r["size"]), str(r["slices"]), str(r["replicas"]),
                      time.strftime("%Y-%m-%d", time.gmtime(r["expires_at"])), r["status"], r["health"])
    Console().print(table)


@file_app.command("show")
def show(
    file_id: str = typer.Argument(...),
    ledger: str = _LEDGER,
    liveness: float = _LIVENESS,
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """A file's placement: every slice's replicas, their nodes and health."""
    info = _network(ledger, None, liveness).show(file_id)
    if as_json:
        typer.echo(msgspec.json.encode(info).decode())
        return
    table = Table(title=f"file {info['file_id']} ({info['name']}, {info['size']} bytes, {info['status']}, "
                        f"{info['health']})")
    for col in ("slice", "node", "address", "healthy"):
        table.add_column(col)
    for s in info["slices"]:
        for r in s["replicas"]:
            table.add_row(str(s["index"]), r["node_id"], r["address"], "yes" if r["healthy"] else "NO")
    Console().print(table)


@file_app.command("extend")
def extend(
    file_id: str = typer.Argument(...),
    key: str = _KEY,
    ledger: str = _LEDGER,
    days: float = typer.Option(..., "--days", help="New expiry: this many days from now."),
) -> None:
    """Move a file's expiry later (also during the retention period after it expired)."""
    from ..ledger import ExtendFile

    finite("--days", days, low=0, low_open=True, high=100 * 365)
    net = _network(ledger, key, acts=True)
    expires = net.ledger.now_ms() + int(days * 86_400_000)
    net.ledger.submit(net.identity, ExtendFile(file_id=file_id, expires_ms=expires))
    typer.echo(f"file {file_id} now expires at {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(expires / 1000))}")


def _decided(rec: Any) -> str:
    return f"application {rec.application_id}: executor {rec.executor}, file {rec.file_id} -> {rec.status}"


@file_app.command("applications")
def applications(
    ledger: str = _LEDGER,
    key: str = typer.Option(None, "--key", "-K", help="Only applications to your files (your key file)."),
    file_id: str = typer.Option(None, "--file", help="Only applications to this file."),
    status: str = typer.Option(None, "--status", help="Only this status: Unapproved, Approved, Rejected, Revoked."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list."),
) -> None:
    """Executors' applications to use files, with their status."""
    from ..storage.applications import application_row, list_applications

    net = _network(ledger, key)
    rows = [application_row(a) for a in list_applications(
        net.ledger, owner=net.identity.node_id if key else None, file_id=file_id, status=status)]
    if as_json:
        typer.echo(msgspec.json.encode(rows).decode())
        return
    table = Table(title="applications")
    for col in ("application id", "file id", "executor", "purpose", "status", "applied", "expires", "reason"):
        table.add_column(col, no_wrap=col.endswith(" id"))
    day = "%Y-%m-%d %H:%M"
    for r in rows:
        table.add_row(r["application_id"], r["file_id"], r["executor"], r["purpose"], r["status"],
                      time.strftime(day, time.gmtime(r["applied_at"])),
                      time.strftime(day, time.gmtime(r["expires_at"])) if r["expires_at"] else "-", r["reason"])
    Console().print(table)


@file_app.command("approve")
def approve(
    application_id: str = typer.Argument(..., help="An executor's application (ApplyFile)."),
    key: str = _KEY,
    ledger: str = _LEDGER,
    days: float = typer.Option(30.0, "--days", help="Days the approval lasts (at most the file's life)."),
) -> None:
    """Approve an executor's application: hands it the file key, sealed to its key."""
    from ..storage.applications import approve_application

    finite("--days", days, low=0, low_open=True, high=100 * 365)
    rec = approve_application(_network(ledger, key, acts=True), application_id, days=days)
    typer.echo(f"approved {rec.executor} for file {rec.file_id} until "
               f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(rec.expires_ms / 1000))}")


@file_app.command("reject")
def reject(
    application_id: str = typer.Argument(..., help="An executor's application (ApplyFile)."),
    key: str = _KEY,
    ledger: str = _LEDGER,
    reason: str = typer.Option(..., "--reason", help="Why (recorded on the ledger for the executor)."),
) -> None:
    """Reject an executor's application, with a reason."""
    from ..storage.applications import reject_application

    typer.echo(_decided(reject_application(_network(ledger, key, acts=True), application_id, reason)))


@file_app.command("revoke")
def revoke(
    application_id: str = typer.Argument(..., help="An approved application."),
    key: str = _KEY,
    ledger: str = _LEDGER,
    reason: str = typer.Option(..., "--reason", help="Why (recorded on the ledger)."),
) -> None:
    """Withdraw an approval: storage nodes stop serving the file to that executor."""
    from ..storage.applications import revoke_application

    typer.echo(_decided(revoke_application(_network(ledger, key, acts=True), application_id, reason)))


def _print_round(report: Any) -> None:
    typer.echo(report.summary())


@app.command("monitor")
def monitor(
    key: str = _KEY,
    ledger: str = _LEDGER,
    interval: float = typer.Option(60.0, "--interval", help="Seconds between challenge rounds."),
    liveness: float = _LIVENESS,
    k: int = typer.Option(44, "--k", help="Chunks asked per challenge."),
    rounds: int = typer.Option(0, "--rounds", help="Stop after this many rounds (0: until interrupted)."),
) -> None:
    """Challenge every replica of your files on a schedule, record the outcomes, repair what fails.

    SIGTERM / SIGINT stop it after the round in progress."""
    import signal
    import threading

    from ..storage.monitor import StorageMonitor

    finite("--interval", interval, low=0, low_open=True)
    at_least("--k", k, 1)
    at_least("--rounds", rounds, 0)
    net = _network(ledger, key, liveness)
    mark = watch_ledger(net.ledger, key)
    mon = StorageMonitor(net, interval=interval, k=k)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    # as nodes do at every heartbeat: a ledger that went back (or was rewritten) stops the run
    # before the next round acts on it; the mark moves up with the ledger as rounds go
    mon.run(rounds=rounds or None, on_round=_print_round, stop=stop, before_round=lambda: mark.check(net.ledger))
