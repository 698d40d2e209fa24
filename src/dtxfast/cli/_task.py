"""``dtx task publish|start|list|show|result`` (the requester) and ``dtx executor start``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer

from ..errors import ParameterError
from . import app, on_close, watch_ledger
from ._check import node_id, output_file

__all__ = ["executor_app", "task_app"]

task_app = typer.Typer(help="Training and prediction tasks: publish, start, follow, collect results.",
                       no_args_is_help=True)
app.add_typer(task_app, name="task")
executor_app = typer.Typer(help="Executor nodes: run the parties of the tasks that name them.", no_args_is_help=True)
app.add_typer(executor_app, name="executor")

_LEDGER = typer.Option(..., "--ledger", "-L", help="The ledger (SQLite file).")
_KEY = typer.Option(..., "--key", "-K", help="The requester's key file (dtx keys new).")


def _open(ledger: str, acting_key: str | None = None) -> Any:
    """The ledger, closed when the command ends (a read leaves no SQLite side files behind); a
    command acting with ``acting_key`` refuses a ledger that went back below that key's mark."""
    from ..ledger import open_ledger

    led = open_ledger(ledger)
    on_close(led.close)
    if acting_key is not None:
        watch_ledger(led, acting_key)
    return led


def _ids(text: str, what: str) -> list[str]:
    items = [x.strip() for x in text.split(",")]
    if not text.strip() or any(not x for x in items):
        raise ParameterError(f"{what} is a comma-separated list without empty items, got {text!r}")
    return items


def _time(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000)) + f".{ms % 1000:03d}"


@task_app.command("publish")
def publish(
    key: str = _KEY,
    ledger: str = _LEDGER,
    algo: str = typer.Option(..., "--algo", help="linear, logistic or dnn."),
    kind: str = typer.Option(..., "--kind", help="train or predict."),
    files: str = typer.Option(..., "--files", help="Each party's sample file id, in party order (F1,F2[,F3])."),
    executors: str = typer.Option(..., "--executors", help="The executors' node ids, in the same order."),
    label: str = typer.Option(..., "--label", help="The label column (in exactly one party's file)."),
    id_column: str = typer.Option(..., "--id-column", help="The id column of every party's file."),
    params: list[str] = typer.Option([], "--params", "-p", help="key=value (alpha, batchSize, epochs, regMode, ...); repeat."),
    model: str = typer.Option("", "--model", help="predict: the finished training task whose model parts are used."),
    name: str = typer.Option("", "--name", help="A name for the task."),
) -> None:
    """Publish a task (it waits in Confirming until every executor confirmed); prints its id."""
    from ..ledger import NodeIdentity
    from ..nodes.jobs import parse_assignments
    from ..nodes.requester import publish_task

    ident = NodeIdentity.load(key)
    task_id = publish_task(_open(ledger, key), ident, algorithm=algo, kind=kind, files=_ids(files, "--files"),
                           executors=_ids(executors, "--executors"), label=label, id_column=id_column,
                           params=parse_assignments(params), model_task=model, name=name)
    typer.echo(task_id)


@task_app.command("start")
def start(
    task_id: str = typer.Argument(..., help="A Ready task of yours."),
    key: str = _KEY,
    ledger: str = _LEDGER,
) -> None:
    """Start a Ready task (Ready -> ToProcess): its executors begin."""
    from ..ledger import NodeIdentity
    from ..nodes.requester import start_task

    start_task(_open(ledger, key), NodeIdentity.load(key), task_id)
    typer.echo(f"started {task_id}")


@task_app.command("list")
def list_cmd(
    ledger: str = _LEDGER,
    status: str | None = typer.Option(None, "--status", help="Only tasks in this status."),
    requester: str | None = typer.Option(None, "--requester", help="Only this requester's tasks (node id)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON array on stdout."),
) -> None:
    """Every task on the ledger, oldest first."""
    from ..nodes.requester import list_tasks

    if requester is not None:
        node_id("--requester", requester)

    rows = list_tasks(_open(ledger), requester=requester, status=status)
    if as_json:
        typer.echo(json.dumps(rows, indent=1))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="tasks")
    for col in ("task id", "name", "kind", "algorithm", "status", "updated", "reason"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["task_id"], r["name"], r["kind"], r["algorithm"], r["status"], _time(r["updated_ms"]),
                      r["reason"][:80])
    Console().print(table)


@task_app.command("show")
def show(
    task_id: str = typer.Argument(..., help="A task id."),
    ledger: str = _LEDGER,
    key: str | None = typer.Option(None, "--key", "-K", help="The requester's key: also show its sealed metrics."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object on stdout."),
) -> None:
    """A task: status, parameters, per-party progress, results, failure reason and timeline."""
    from ..ledger import NodeIdentity
    from ..nodes.requester import task_view

    view = task_view(_open(ledger), task_id, NodeIdentity.load(key) if key else None)
    if as_json:
        typer.echo(json.dumps(view, indent=1))
        return
    typer.echo(f"task {view['task_id']}  {view['kind']} {view['algorithm']}  {view['status']}"
               + (f"  ({view['name']})" if view["name"] else ""))
    if view["reason"]:
        typer.echo(f"reason: {view['reason']}")
    if view["model_task"]:
        typer.echo(f"model: task {view['model_task']}")
    typer.echo("params: " + ", ".join(f"{k}={v}" for k, v in sorted(view["params"].items())))
    for i, p in enumerate(view["parties"]):
        prog = p["progress"]
        where = "-" if prog is None else (f"{prog['stage']} {prog['done']}/{prog['total']}"
                                          + (f" loss {prog['loss']:.6g}" if prog["loss"] is not None else ""))
        typer.echo(f"party p{i}: executor {p['executor']}  files {','.join(p['files'])}  "
                   f"{'confirmed' if p['confirmed'] else 'not confirmed'}  {where}")
    for r in view["results"]:
        sealed = r.startswith(("key:", "metrics:"))
        typer.echo(f"result: {r.split(':', 1)[0] + ': (sealed to the requester)' if sealed else r}")
    for k, v in sorted((view.get("metrics") or {}).items()):
        typer.echo(f"metric: {k} = {v:.6g}")
    typer.echo("timeline:")
    for e in view["timeline"]:
        extra = " ".join(f"{k}={e[k]}" for k in ("stage", "done", "total", "loss", "reason") if k in e)
        typer.echo(f"  {_time(e['time_ms'])}  {e['node']}  {e['event']}  {extra}".rstrip())


@task_app.command("result")
def result(
    task_id: str = typer.Argument(..., help="A finished prediction task of yours."),
    key: str = _KEY,
    ledger: str = _LEDGER,
    out: Path = typer.Option(..., "--out", "-o", help="Write the predictions here (CSV)."),
) -> None:
    """Download and decrypt a prediction task's result (only its requester can)."""
    from ..ledger import NodeIdentity
    from ..nodes.requester import fetch_result

    output_file("--out", out, {"--key": key, "--ledger": ledger})
    size = fetch_result(_open(ledger, key), NodeIdentity.load(key), task_id, out, revive=True,
                        notice=lambda msg: typer.echo(msg, err=True))
    typer.echo(f"wrote {out} ({size} bytes)")


@executor_app.command("start")
def executor_start(
    key: str = typer.Option(None, "--key", "-K", help="The executor's key file."),
    ledger: str = typer.Option(None, "--ledger", "-L", help="The ledger (SQLite file)."),
    data_dir: str = typer.Option(None, "--data-dir", "-d", help="Where models and task folders are kept."),
    listen: str = typer.Option(None, "--listen", help="HOST:PORT of the executors' network (default 127.0.0.1:0)."),
    heartbeat: float = typer.Option(None, "--heartbeat", help="Seconds between heartbeats (default 60)."),
    poll: float = typer.Option(None, "--poll", help="Seconds between looks at the ledger (default 0.5)."),
    task_timeout: float = typer.Option(None, "--task-timeout",
                                       help="Seconds without a peer's message before a task fails (default 180)."),
    max_tasks: int = typer.Option(None, "--max-tasks", help="Tasks run at once (default 4)."),
    compute: str = typer.Option(None, "--compute", help="Where the batch kernels run: local, ray, ray:HOST:PORT "
                                "or ray://HOST:PORT (default: $DTXFAST_COMPUTE, else local)."),
    name: str = typer.Option(None, "--name", help="A name recorded with the registration."),
    config: str = typer.Option(None, "--config", "-c", help="A TOML file of these settings (flags and DTX_* win)."),
) -> None:
    """Run an executor in the foreground (prints 'listening on tls://HOST:PORT' when ready)."""
    from ..nodes.executor import ExecutorConfig, run_executor_node

    cfg = ExecutorConfig.load(config, key=key, ledger=ledger, data_dir=data_dir, listen=listen, heartbeat=heartbeat,
                              poll=poll, task_timeout=task_timeout, max_tasks=max_tasks, compute=compute,
                              name=name)
    run_executor_node(cfg)
