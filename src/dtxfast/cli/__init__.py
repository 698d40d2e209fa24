"""The ``dtx`` command line (L4): parses, calls the library, maps errors to exit codes.

Each area registers its commands in its own module (``_bench``, ``_demo``, ...); this module
only assembles them and turns every :class:`~dtxfast.errors.DtxError` (and the operating system
errors a user can cause, such as a missing file) into one line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import sys

import typer

from .. import __version__
from ..errors import DtxError

__all__ = ["app", "main"]

app = typer.Typer(
    name="dtx",
    help="dtxfast: privacy-preserving machine learning over decentralized, encrypted storage.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"dtx {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """dtxfast command line."""


def _register() -> None:
    # Import for side effects: each module adds its commands to ``app``.
    from . import _bench, _dataowner, _demo, _ledger, _mpc, _psi, _storage, _storagenet, _task, _vfl  # noqa: F401


_register()


def main(argv: list[str] | None = None) -> int:
    """Run the ``dtx`` command line; returns the exit code instead of raising."""
    try:
        # standalone mode: click reports usage errors itself (one "Error:" line, exit 2) and lets
        # every other exception through to be mapped below
        app(args=argv, prog_name="dtx", standalone_mode=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except DtxError as exc:
        print(f"dtx: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as exc:
        print(f"dtx: error: {exc.strerror}: {exc.filename}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dtx: interrupted", file=sys.stderr)
        return 130
    return 0


def _entry() -> None:
    sys.exit(main())
