"""``dtx dataowner start``: run a DataOwner node (parse, call :mod:`dtxfast.nodes.dataowner`)."""

from __future__ import annotations

import typer

from . import app

__all__ = ["dataowner_app"]

dataowner_app = typer.Typer(help="DataOwner nodes: answer executors' applications to use your files.",
                            no_args_is_help=True)
app.add_typer(dataowner_app, name="dataowner")


@dataowner_app.command("start")
def start(
    key: str = typer.Option(None, "--key", "-K", help="The owner's key file (the one its files were uploaded with)."),
    ledger: str = typer.Option(None, "--ledger", "-L", help="The ledger (SQLite file)."),
    data_dir: str = typer.Option(None, "--data-dir", "-d", help="Where the node writes decisions.jsonl."),
    approve: str = typer.Option(None, "--approve", help="auto (approve --executors, reject others) or manual."),
    executors: str = typer.Option(None, "--executors", help="Comma-separated executor node ids to approve "
                                                             "(default: any registered executor)."),
    heartbeat: float = typer.Option(None, "--heartbeat", help="Seconds between heartbeats (default 60)."),
    poll: float = typer.Option(None, "--poll", help="Seconds between looks for new applications (default 0.5)."),
    approval_days: float = typer.Option(None, "--approval-days", help="Days an approval lasts at most "
                                                                      "(never past the file's expiry; default 30)."),
    monitor: bool = typer.Option(None, "--monitor/--no-monitor", help="Also challenge and repair your files."),
    monitor_interval: float = typer.Option(None, "--monitor-interval", help="Seconds between monitor rounds."),
    name: str = typer.Option(None, "--name", help="A name recorded with the registration."),
    config: str = typer.Option(None, "--config", "-c", help="A TOML file of these settings (flags and DTX_* win)."),
) -> None:
    """Run a DataOwner node in the foreground (prints 'listening on dtx://dataowner/ID' when ready)."""
    from ..nodes.dataowner import DataOwnerConfig, run_dataowner_node

    cfg = DataOwnerConfig.load(config, key=key, ledger=ledger, data_dir=data_dir, approve=approve,
                               executors=executors, heartbeat=heartbeat, poll=poll, approval_days=approval_days,
                               monitor=monitor, monitor_interval=monitor_interval, name=name)
    run_dataowner_node(cfg)
