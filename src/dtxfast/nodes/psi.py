"""Two-party PSI between processes: a signer serving one requester over a TCP stream.

What ``dtx psi --role signer|requester`` and ``dtx psi --transport process`` run. The parties are
the state machines of :mod:`dtxfast.protocols.psi` driven by :mod:`dtxfast.protocols.psi_runner`
over a :class:`~dtxfast.transport.stream.StreamChannel` (one TCP connection, length framing):

* :func:`serve_signer` listens on ``HOST:PORT`` (port 0: any free port), accepts one requester,
  serves it until it is done and returns how many blinded ids it signed;
* :func:`request_intersection` connects to a signer and returns the intersection in the
  requester's own order;
* :class:`SignerProcess` starts the signer as a second ``dtx psi --role signer`` process on
  loopback and stops it on exit (a requester that wants both parties on one machine);
* :func:`read_id_column`, :func:`load_ids`, :func:`signer_key` and :func:`write_ids` read the
  parties' CSV ids and keys and write the aligned ids.

The stream is neither authenticated nor encrypted: the PSI messages are blinded or masked and
safe to show, and the peer is trusted by where it is (one host). Executors talking to each other
use the mutual-TLS channel (:mod:`dtxfast.transport.tls`).

Examples
--------
>>> import threading
>>> from dtxfast.protocols.psi import PSIRequester, PSISigner
>>> ready, box = threading.Event(), {}
>>> signer = PSISigner(["u1", "u2", "u3"], signer_key("ecdh"))
>>> t = threading.Thread(target=serve_signer, args=(signer, "127.0.0.1:0"),
...                      kwargs={"on_listening": lambda a: (box.update(address=a), ready.set())})
>>> t.start()
>>> _ = ready.wait(10)
>>> request_intersection(PSIRequester(["u3", "u9", "u1"]), box["address"], timeout=30)
[b'u3', b'u1']
>>> t.join()
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from .._fs import atomic_output
from ..errors import MalformedInput, ParameterError, ProtocolError
from ..protocols.psi_runner import run_requester, run_signer
from ..transport.stream import StreamChannel, connect, listen_once

if TYPE_CHECKING:
    from ..crypto.blind_rsa import BlindRSASigner, IdBatch
    from ..crypto.ecdh import ECDHMaskKey
    from ..crypto.ot import OPRFKey
    from ..protocols.psi import PSIRequester, PSISigner

__all__ = [
    "MAX_MESSAGE",
    "WINDOW",
    "SignerProcess",
    "load_ids",
    "read_id_column",
    "request_intersection",
    "serve_signer",
    "signer_key",
    "write_ids",
]

#: largest PSI message accepted from the peer (a chunk of up to 2^16 ids of up to 1 KiB, plus header)
MAX_MESSAGE = 28 + (1 << 16) * 1024
#: blinded chunks the requester keeps in flight
WINDOW = 2
_MODES = ("rsa", "ecdh", "ot")


def read_id_column(path: str | os.PathLike[str], column: str) -> Iterator[str]:
    """Stream the values of ``column`` from a CSV file with a header row.

    Ids are compared as :func:`dtxfast.vfl.jobs.read_table` compares them, on both sides of a
    PSI: surrounding whitespace is stripped, nothing else is changed (no Unicode normalization:
    ``"é"`` as one code point and as ``e`` + a combining accent are different ids). An empty id
    (or one of whitespace only) is refused with its line, never dropped silently.

    Raises
    ------
    MalformedInput
        The file is empty (no header row), not UTF-8, or a row has an empty id.
    ParameterError
        The header has no such column.

    Examples
    --------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "ids.csv")
    >>> _ = open(p, "w").write("id,x\\na,1\\n b ,3\\n")
    >>> list(read_id_column(p, "id"))
    ['a', 'b']
    """
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            raise MalformedInput(f"{path}: empty CSV file (a header row is needed)") from None
        except UnicodeDecodeError:
            raise MalformedInput(f"{path}: line 1 is not UTF-8 text") from None
        header = [h.strip().lstrip("\ufeff") for h in header]
        if column not in header:
            raise ParameterError(f"{path}: no column {column!r} (columns: {', '.join(header)})")
        col = header.index(column)
        try:
            for row in reader:
                if not row:  # a blank line
                    continue
                rid = row[col].strip() if col < len(row) else ""
                if not rid:
                    raise MalformedInput(f"{path}, line {reader.line_num}: empty id in column {column!r}")
                yield rid
        except UnicodeDecodeError:
            raise MalformedInput(f"{path}: line {reader.line_num + 1} is not UTF-8 text") from None


def load_ids(path: str | os.PathLike[str], column: str) -> IdBatch:
    """The ids of one CSV column as an :class:`~dtxfast.crypto.blind_rsa.IdBatch` (UTF-8)."""
    from ..crypto.blind_rsa import IdBatch

    return IdBatch.from_strings(read_id_column(path, column))


def signer_key(mode: str, key: str | os.PathLike[str] | None = None, bits: int = 2048
               ) -> BlindRSASigner | ECDHMaskKey | OPRFKey:
    """The signer's key: an RSA key from a PEM file (or a fresh one of ``bits``) for ``rsa``, a
    fresh X25519 mask key for ``ecdh``, a fresh OPRF key (KKRT16's secret bits) for ``ot``.

    Examples
    --------
    >>> type(signer_key("ecdh")).__name__
    'ECDHMaskKey'
    """
    from ..crypto.blind_rsa import BlindRSASigner
    from ..crypto.ecdh import ECDHMaskKey
    from ..crypto.ot import OPRFKey

    if mode not in _MODES:
        raise ParameterError(f"the PSI mode must be rsa, ecdh or ot, got {mode!r}")
    if mode == "ecdh":
        if key is not None:
            raise ParameterError("a key file is for the rsa mode; the ecdh mode draws a fresh X25519 key")
        return ECDHMaskKey.generate()
    if mode == "ot":
        if key is not None:
            raise ParameterError("a key file is for the rsa mode; the ot mode draws a fresh OPRF key")
        return OPRFKey.generate()
    if key is not None:
        return BlindRSASigner.from_pem(Path(key).read_bytes())
    return BlindRSASigner.generate(bits)


def serve_signer(signer: PSISigner, listen: str = "127.0.0.1:0", *,
                 on_listening: Callable[[str], Any] | None = None, accept_timeout: float | None = None,
                 timeout: float | None = None) -> int:
    """Listen on ``listen``, serve the one requester that connects, return the ids signed.

    Parameters
    ----------
    signer : PSISigner
    listen : str
        ``HOST:PORT`` (port 0: any free port).
    on_listening : callable, optional
        Called with the bound ``HOST:PORT`` once listening (e.g. to print a readiness line).
    accept_timeout : float, optional
        Seconds to wait for the requester to connect (default: forever).
    timeout : float, optional
        Seconds to wait for any one message of the requester.

    Raises
    ------
    ProtocolError
        Nobody connected in time, or the requester went away before it was done.
    """
    sock = listen_once(listen, on_listening=on_listening, timeout=accept_timeout)
    with StreamChannel(sock, "signer", "requester", max_message=MAX_MESSAGE) as ch:
        return run_signer(signer, ch, "requester", timeout=timeout)


def request_intersection(requester: PSIRequester, address: str, *, window: int = WINDOW,
                         timeout: float | None = None, connect_timeout: float = 10.0,
                         on_progress: Callable[[int, int], None] | None = None) -> list[bytes]:
    """Connect to the signer at ``address`` and run the requester; the intersection (own order).

    Raises
    ------
    ProtocolError
        Nobody listens at ``address`` (after ``connect_timeout`` s), or the signer went away.
    """
    with StreamChannel(connect(address, timeout=connect_timeout), "requester", "signer",
                       max_message=MAX_MESSAGE) as ch:
        return run_requester(requester, ch, "signer", window=window, timeout=timeout, on_progress=on_progress)


class SignerProcess:
    """A ``dtx psi --role signer`` process on loopback serving one requester (a context manager).

    On entry the process is started and its readiness line (``listening HOST:PORT``) read;
    :attr:`address` is where it listens. On exit it is waited for (``wait`` s) and killed if it
    is still running, also when the run failed.

    Parameters
    ----------
    ids : path
        The signer's CSV file.
    column : str
        Its id column.
    mode, key, bits, chunk, cache_dir, compute, private_keys
        As the options of ``dtx psi`` of the same names.
    wait : float
        Seconds the process may take to finish after the requester is done.
    """

    def __init__(self, ids: str | os.PathLike[str], column: str, *, mode: str = "rsa",
                 key: str | os.PathLike[str] | None = None, bits: int = 2048, chunk: int = 4096,
                 cache_dir: str | os.PathLike[str] | None = None, compute: str | None = None,
                 private_keys: str | None = None, wait: float = 60.0) -> None:
        if mode not in _MODES:
            raise ParameterError(f"the PSI mode must be rsa, ecdh or ot, got {mode!r}")
        self.argv = [sys.executable, "-m", "dtxfast", "psi", "--role", "signer", "--ids", str(ids),
                     "--column", column, "--listen", "127.0.0.1:0", "--mode", mode, "--bits", str(bits),
                     "--chunk", str(chunk), "--quiet"]
        for flag, value in (("--key", key), ("--cache-dir", cache_dir), ("--compute", compute),
                            ("--private-keys", private_keys)):
            if value is not None:
                self.argv += [flag, str(value)]
        self.wait = wait
        self.proc: subprocess.Popen[str] | None = None
        self.address = ""

    def __enter__(self) -> SignerProcess:
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert self.proc.stdout is not None
            line = self.proc.stdout.readline().strip()
            if not line.startswith("listening "):
                self.proc.wait(timeout=10)
                msg = (self.proc.stderr.read() if self.proc.stderr else "").strip().splitlines()
                raise ProtocolError(f"the signer process did not start: {msg[-1] if msg else line}")
            self.address = line.split()[1]
        except BaseException:
            self._reap()
            raise
        return self

    def _reap(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __exit__(self, exc_type: object, *exc: object) -> None:
        try:
            if exc_type is None and self.proc is not None:
                self.proc.wait(timeout=self.wait)
        except subprocess.TimeoutExpired:
            raise ProtocolError(f"the signer process did not finish within {self.wait} s") from None
        finally:
            self._reap()


def write_ids(out: str | os.PathLike[str] | IO[str], column: str, ids: Sequence[bytes]) -> None:
    """Write ``ids`` as a one-column CSV headed ``column`` (a path is written all or nothing).

    Examples
    --------
    >>> import io
    >>> buf = io.StringIO()
    >>> write_ids(buf, "id", [b"u3", b"u1"])
    >>> buf.getvalue().split()
    ['id', 'u3', 'u1']
    """
    def rows(fh: IO[str]) -> None:
        w = csv.writer(fh)
        w.writerow([column])
        for x in ids:
            w.writerow([x.decode("utf-8", errors="replace")])

    if isinstance(out, (str, os.PathLike)):
        with atomic_output(out, "w", newline="", encoding="utf-8") as fh:
            rows(fh)
    else:
        rows(out)
