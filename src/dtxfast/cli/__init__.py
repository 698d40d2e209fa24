"""The ``dtx`` command line (L4): parses, calls the library, maps errors to exit codes.

Each area registers its commands in its own module (``_bench``, ``_demo``, ...); this module
only assembles them and turns every :class:`~dtxfast.errors.DtxError`, every usage mistake and
every operating-system error a user can cause (a missing file, a directory where a file was
expected, an unreadable or non-UTF-8 file) into one line on stderr and the exit code of its class:

=====  ===========================================================================
code   meaning
=====  ===========================================================================
0      success
1      any other :class:`~dtxfast.errors.DtxError`
2      usage: an unknown option, a value of the wrong form (click) or out of range
       (:class:`~dtxfast.errors.ParameterError`)
3      :class:`~dtxfast.errors.EncodingOverflowError`
4      :class:`~dtxfast.errors.MalformedInput` (a file or message that does not parse)
5      :class:`~dtxfast.errors.KeyMismatch`
6      :class:`~dtxfast.errors.InvalidProof` (includes a corrupted ledger chain)
7      :class:`~dtxfast.errors.ProtocolError` (a peer misbehaved, or is unreachable)
8      :class:`~dtxfast.errors.BackendUnavailable`
9      :class:`~dtxfast.errors.NotFound`
10     :class:`~dtxfast.errors.StateError`
11     :class:`~dtxfast.errors.Unauthorized`
12     :class:`~dtxfast.errors.InvalidSignature`
13     :class:`~dtxfast.errors.WrongType`
14     the operating system refused a file or a socket (missing, a directory, no permission,
       not UTF-8 text, address in use)
130    interrupted (Ctrl-C)
=====  ===========================================================================

The table lives here, in the CLI, not on the error classes: a library caller catches types.

Examples
--------
>>> from dtxfast.errors import InvalidProof, InvalidSignature
>>> exit_code(InvalidProof("x")), exit_code(InvalidSignature("x"))
(6, 12)
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

import typer

try:  # typer >= 0.20 carries its own copy of click
    from typer._click import core as _click_core
    from typer._click import exceptions as _click_exc
    from typer._click import globals as _click_globals
except ImportError:  # pragma: no cover - older typer on click
    from click import core as _click_core  # type: ignore[no-redef]
    from click import exceptions as _click_exc  # type: ignore[no-redef]
    from click import globals as _click_globals  # type: ignore[no-redef]

from .. import __version__
from ..errors import (
    BackendUnavailable,
    DtxError,
    EncodingOverflowError,
    InvalidProof,
    InvalidSignature,
    KeyMismatch,
    MalformedInput,
    NotFound,
    ParameterError,
    ProtocolError,
    StateError,
    Unauthorized,
    WrongType,
)

if TYPE_CHECKING:
    from ..ledger.watermark import HighWaterMark

__all__ = ["EXIT_CODES", "OS_ERROR", "USAGE", "app", "command", "exit_code", "main", "on_close", "on_success",
           "watch_ledger"]

#: exit code of each error class (the most specific class in an error's MRO wins)
EXIT_CODES: dict[type[BaseException], int] = {
    DtxError: 1,
    ParameterError: 2,
    EncodingOverflowError: 3,
    MalformedInput: 4,
    KeyMismatch: 5,
    InvalidProof: 6,
    ProtocolError: 7,
    BackendUnavailable: 8,
    NotFound: 9,
    StateError: 10,
    Unauthorized: 11,
    InvalidSignature: 12,
    WrongType: 13,
}
#: a usage mistake caught by the parser (same code as :class:`~dtxfast.errors.ParameterError`)
USAGE = 2
#: the operating system refused a file or a socket
OS_ERROR = 14


def exit_code(error: BaseException | type[BaseException]) -> int:
    """The exit code ``dtx`` uses for an error (or an error class); see the module's table."""
    cls = error if isinstance(error, type) else type(error)
    for klass in cls.__mro__:
        if klass in EXIT_CODES:
            return EXIT_CODES[klass]
    if issubclass(cls, (OSError, UnicodeError)):
        return OS_ERROR
    return 1

_ON_SUCCESS = "dtx.on_success"


def _run_on_success(value: object, **_params: object) -> object:
    ctx = _click_globals.get_current_context(silent=True)
    for fn in (ctx.meta.pop(_ON_SUCCESS, []) if ctx is not None else []):
        fn()
    return value


app = typer.Typer(
    name="dtx",
    result_callback=_run_on_success,
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



def _flags_as_flags(cmd: _click_core.Command) -> None:
    """Flags take no value, so their help shows none: typer's rich help prints a type beside every
    option, flags included (``--quick <bool>``, ``--help <bool>``); an empty metavar removes it.
    Applied to every command of the tree, the help option included, so new commands get it too."""
    for param in cmd.params:
        if param.param_type_name == "option" and getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    help_option = cmd.get_help_option(_click_core.Context(cmd))
    if help_option is not None:
        help_option.metavar = ""
    for sub in getattr(cmd, "commands", {}).values():
        _flags_as_flags(sub)


_command: _click_core.Command | None = None


def command() -> _click_core.Command:
    """The click command tree of ``dtx`` (built once from :data:`app`, flags shown as flags).

    Examples
    --------
    >>> quick = next(p for p in command().commands["bench"].params if p.name == "quick")
    >>> quick.is_flag, quick.metavar
    (True, '')
    """
    global _command
    if _command is None:
        cmd = typer.main.get_command(app)
        _flags_as_flags(cmd)
        _command = cmd
    return _command


def on_close(fn: Callable[[], object]) -> None:
    """Run ``fn`` when the running command ends, however it ends (closes ledgers and networks)."""
    ctx = _click_globals.get_current_context(silent=True)
    if ctx is None:  # called outside a command (a test): the caller closes
        return
    ctx.call_on_close(fn)


def on_success(fn: Callable[[], object]) -> None:
    """Run ``fn`` after the running command returned normally (not when it failed): what a
    command records only once it did what it said, e.g. moving a ledger mark up."""
    ctx = _click_globals.get_current_context(silent=True)
    if ctx is None:  # called outside a command (a test): nothing to wait for
        return
    ctx.meta.setdefault(_ON_SUCCESS, []).append(fn)


def watch_ledger(ledger: object, key: str) -> HighWaterMark:
    """Refuse ``ledger`` if it went back below the mark kept beside ``key`` (a command that acts
    on the ledger with that key; see :mod:`dtxfast.ledger.watermark`), and move the mark up to
    the ledger's height at the end of the command if it succeeded. Call it after the ledger's
    ``on_close(ledger.close)``: the height is read before the ledger closes. Returns the mark
    (a long-running command checks it again as it goes, as nodes do)."""
    from ..errors import DtxError
    from ..ledger.watermark import HighWaterMark

    mark = HighWaterMark.for_key(key, ledger.chain_id)  # type: ignore[attr-defined]
    mark.verify(ledger)  # type: ignore[arg-type]
    seen: list[tuple[bytes, int, bytes]] = []

    def observe() -> None:
        try:
            seen.append(mark.observe(ledger))  # type: ignore[arg-type]
        except DtxError:
            pass  # the ledger went away meanwhile: the command failed anyway

    def record() -> None:
        if not seen:  # a top-level command: its context (and the ledger) is still open
            observe()
        if seen:
            mark.record(*seen[0])

    on_close(observe)  # a subcommand's context closes (and its ledger with it) before on_success
    on_success(record)
    return mark


def _os_error_line(exc: OSError) -> str:
    what = exc.strerror or str(exc)
    names = [n for n in (exc.filename, exc.filename2) if n is not None]
    return f"{what}: {' -> '.join(map(str, names))}" if names else what


def main(argv: list[str] | None = None) -> int:
    """Run the ``dtx`` command line; returns the exit code instead of raising.

    Every error becomes one line on stderr (``dtx: error: ...``) and the exit code of its class
    (:data:`EXIT_CODES`); help and ``--version`` print to stdout and return 0.
    """
    try:
        rv = command().main(args=argv, prog_name="dtx", standalone_mode=False)
    except _click_exc.NoArgsIsHelpError as exc:  # "dtx" or "dtx storage" alone: the help
        typer.echo(exc.ctx.get_help() if exc.ctx is not None else str(exc))
        return USAGE
    except _click_exc.UsageError as exc:
        where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        message = " ".join(exc.format_message().split())
        print(f"dtx: error: {message}{where}", file=sys.stderr)
        return USAGE
    except typer.Abort:
        print("dtx: aborted", file=sys.stderr)
        return 1
    except _click_exc.ClickException as exc:
        print(f"dtx: error: {' '.join(exc.format_message().split())}", file=sys.stderr)
        return exc.exit_code or 1
    except typer.Exit as exc:
        return exc.exit_code
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except DtxError as exc:
        print(f"dtx: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return exit_code(exc)
    except OSError as exc:  # what the user's files and sockets can cause
        print(f"dtx: error: {_os_error_line(exc)}", file=sys.stderr)
        return OS_ERROR
    except UnicodeDecodeError as exc:
        print(f"dtx: error: input is not UTF-8 text ({exc.reason} at byte {exc.start})", file=sys.stderr)
        return OS_ERROR
    except KeyboardInterrupt:
        print("dtx: interrupted", file=sys.stderr)
        return 130
    return rv if isinstance(rv, int) else 0


def _entry() -> None:
    sys.exit(main())


_register()
