"""``dtx ledger init|info|show|verify``, ``dtx keys new``, ``dtx nodes list``: the ledger's commands.

Every ``-L/--ledger`` option (and ``DTX_LEDGER``) takes what :func:`dtxfast.ledger.open_ledger`
takes: a SQLite file path, or ``etcd://HOST:PORT[,HOST:PORT...][/CHAIN]`` for a ledger replicated
by an etcd cluster.
"""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import app
from ._check import at_least, choice, output_file

if TYPE_CHECKING:
    from ..ledger import Ledger

__all__ = ["keys_app", "ledger_app", "nodes_app"]

ledger_app = typer.Typer(help="Create, inspect and audit a ledger.", no_args_is_help=True)
keys_app = typer.Typer(help="Node key files.", no_args_is_help=True)
nodes_app = typer.Typer(help="Nodes registered on the ledger.", no_args_is_help=True)
app.add_typer(ledger_app, name="ledger")
app.add_typer(keys_app, name="keys")
app.add_typer(nodes_app, name="nodes")

_LEDGER_OPT = typer.Option(
    "dtx-ledger.db", "--ledger", "-L", envvar="DTX_LEDGER",
    help=escape("The ledger: a SQLite file, or etcd://HOST:PORT[,HOST:PORT...][/CHAIN]."),
)


#: most signature-checking processes ``dtx ledger verify --workers`` starts
_MAX_WORKERS = 256

#: the node roles of the ledger (``RegisterNode.role``)
_ROLES = ("storage", "executor", "dataowner", "requester")


def _ts(ms: int) -> str:
    if not ms:
        return "-"
    return _dt.datetime.fromtimestamp(ms / 1000, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _open(location: str) -> Ledger:
    from ..ledger import open_ledger

    return open_ledger(location, max_skew_ms=None)


@ledger_app.command("init")
def init(ledger: str = _LEDGER_OPT) -> None:
    """Create a new ledger (a SQLite file, or a chain on an etcd cluster) with its genesis block."""
    from ..errors import NotFound, StateError
    from ..ledger import open_ledger

    if ledger.startswith("etcd://"):
        try:
            _open(ledger).close()
        except NotFound:
            pass
        else:
            raise StateError(f"{ledger} already has a genesis block")
    elif Path(ledger.removeprefix("sqlite:")).exists():
        raise StateError(f"{ledger} already exists")
    led = open_ledger(ledger, create=True)
    try:
        typer.echo(f"created ledger {ledger}: chain id {led.chain_id.hex()}")
    finally:
        led.close()


@ledger_app.command("info")
def info(ledger: str = _LEDGER_OPT) -> None:
    """The ledger's backend, height, chain id and tip; for etcd also the members and the leader."""
    from ..ledger.etcd import EtcdLedger

    led = _open(ledger)
    try:
        tip = led.block(led.height)
        backend = {"EtcdLedger": "etcd", "SQLiteLedger": "sqlite", "MemoryLedger": "memory"}.get(
            type(led).__name__, type(led).__name__)
        typer.echo(f"backend  {backend}")
        typer.echo(f"location {getattr(led, 'location', None) or getattr(led, 'path', ledger)}")
        typer.echo(f"chain id {led.chain_id.hex()}")
        typer.echo(f"height   {tip.height}  tip {tip.hash.hex()}  time {_ts(tip.header.time_ms)}")
        if isinstance(led, EtcdLedger):
            leader = "-"
            for m in led.members():
                eps = ",".join(m["endpoints"]) or "-"
                typer.echo(f"member   {m['name']} {eps}{'  (leader)' if m['leader'] else ''}")
                if m["leader"]:
                    leader = m["name"]
            typer.echo(f"leader   {leader}")
    finally:
        led.close()


def _summary(body: msgspec.Struct) -> str:
    fields = msgspec.structs.asdict(body)
    parts = []
    for k, v in fields.items():
        if isinstance(v, bytes):
            v = f"<{len(v)} bytes>"
        elif isinstance(v, list) and len(v) > 3:
            v = f"[{len(v)} items]"
        text = str(v)
        parts.append(f"{k}={text[:40]}")
    return " ".join(parts)


@ledger_app.command("show")
def show(
    ledger: str = _LEDGER_OPT,
    height: int = typer.Option(None, "--height", help="Show the entries of the block at this height."),
    last: int = typer.Option(20, "--last", help="How many recent blocks to list."),
) -> None:
    """List recent blocks, or the entries of one block (--height)."""
    at_least("--last", last, 1)
    if height is not None:
        at_least("--height", height, 0)
    led = _open(ledger)
    console = Console()
    try:
        if height is not None:
            block = led.block(height)
            console.print(f"block {block.height}  hash {block.hash.hex()}  prev "
                          f"{block.header.prev_hash.hex()[:16]}…  time {_ts(block.header.time_ms)}")
            table = Table(title=f"entries of block {height}")
            for col in ("#", "kind", "sender", "time", "object id", "fields"):
                table.add_column(col, no_wrap=col != "fields")
            for e in block.entries():
                table.add_row(str(e.index), e.kind, e.sender, _ts(e.tx.ts_ms), e.object_id,
                              _summary(e.tx.body))
            console.print(table)
            return
        tip = led.height
        table = Table(title=f"ledger {ledger}: {tip + 1} blocks, chain id {led.chain_id.hex()[:16]}…")
        for col in ("height", "time", "entries", "kinds", "hash"):
            table.add_column(col)
        for b in led.blocks(max(0, tip - last + 1)):
            kinds = sorted({e.kind for e in b.entries()})
            table.add_row(str(b.height), _ts(b.header.time_ms), str(len(b.txs)),
                          ", ".join(kinds) or "(genesis)" if b.height == 0 else ", ".join(kinds),
                          b.hash.hex()[:16] + "…")
        console.print(table)
    finally:
        led.close()


@ledger_app.command("verify")
def verify(
    ledger: str = _LEDGER_OPT,
    replay: bool = typer.Option(
        False, "--replay", help="Also re-run the contract and compare the state with the chain."
    ),
    workers: int = typer.Option(
        0, "--workers", help="Processes checking signatures (0: all cores for long chains)."
    ),
) -> None:
    """Re-check every hash and signature from genesis; names the first bad height."""
    from .._backend import num_threads
    from ..errors import ParameterError

    at_least("--workers", workers, 0)
    if workers > _MAX_WORKERS:
        raise ParameterError(f"--workers must be at most {_MAX_WORKERS}, not {workers}")
    led = _open(ledger)
    try:
        if workers <= 0:
            workers = num_threads() if led.height >= 20_000 else 1
        rep = led.verify_chain(replay=replay, workers=workers)
    finally:
        led.close()
    typer.echo(f"ledger OK: {rep.blocks} blocks, {rep.entries} entries verified"
               f"{' and replayed' if replay else ''} in {rep.seconds:.2f} s; tip {rep.tip_hash[:16]}…")


@keys_app.command("new")
def keys_new(
    path: str = typer.Argument(..., help="Where to write the key file (mode 0600)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing key file."),
) -> None:
    """Generate a node key pair and print its node id."""
    from ..errors import ParameterError
    from ..ledger import NodeIdentity

    if not path.strip():
        raise ParameterError("PATH is empty: name the key file to write")
    output_file("PATH", path)
    ident = NodeIdentity.generate()
    ident.save(os.fspath(path), overwrite=force)
    typer.echo(f"node id {ident.node_id}  public key {ident.public_key_bytes.hex()}  -> {path}")


@nodes_app.command("list")
def nodes_list(
    ledger: str = _LEDGER_OPT,
    role: str = typer.Option(None, "--role", help="Only nodes of this role."),
    as_json: bool = typer.Option(False, "--json", help=escape('Print [{"node_id", "role", "address", "health"}, ...].')),
) -> None:
    """List registered nodes with their last heartbeat and health."""
    if role is not None:
        choice("--role", role, _ROLES)
    led = _open(ledger)
    try:
        if as_json:
            rows = [{"node_id": n.node_id, "role": n.role, "address": n.address, "health": led.node_health(n.node_id).level,
                     "online": n.online, "last_heartbeat_ms": n.last_heartbeat_ms} for n in led.list_nodes(role=role)]
            typer.echo(msgspec.json.encode(rows).decode())
            return
        table = Table(title="nodes")
        for col in ("node id", "role", "address", "online", "last heartbeat", "health", "score"):
            table.add_column(col, no_wrap=col in ("node id", "address"))
        for n in led.list_nodes(role=role):
            h = led.node_health(n.node_id)
            table.add_row(n.node_id, n.role, n.address or "-", "yes" if n.online else "no",
                          _ts(n.last_heartbeat_ms), h.level, f"{h.score:.2f}")
        Console().print(table)
    finally:
        led.close()
