"""The exception hierarchy of dtxfast.

Every error dtxfast raises on purpose derives from :class:`DtxError`. Where a built-in exception
means the same thing, the subclass inherits it too (``ParameterError`` is also a ``ValueError``),
so a caller's existing ``except ValueError`` keeps working.

Security failures have types of their own so that callers can never confuse "bad input" with
"someone is cheating": :class:`InvalidProof`, :class:`InvalidSignature`, :class:`KeyMismatch`,
:class:`ProtocolError`.

Examples
--------
>>> from dtxfast.errors import DtxError, ParameterError
>>> issubclass(ParameterError, ValueError) and issubclass(ParameterError, DtxError)
True
"""

from __future__ import annotations

__all__ = [
    "DtxError",
    "ParameterError",
    "WrongType",
    "EncodingOverflowError",
    "MalformedInput",
    "KeyMismatch",
    "InvalidProof",
    "InvalidSignature",
    "ProtocolError",
    "BackendUnavailable",
    "NotFound",
    "StateError",
    "Unauthorized",
]


class DtxError(Exception):
    """Root of every error dtxfast raises on purpose.

    The ``dtx`` command line maps each class to an exit code (the table in :mod:`dtxfast.cli`).
    """


class ParameterError(DtxError, ValueError):
    """An argument is out of range or of the wrong kind (a caller's mistake)."""


class WrongType(DtxError, TypeError):
    """An argument has a type the call does not accept (a caller's mistake)."""


class EncodingOverflowError(DtxError, OverflowError):
    """A value does not fit the plaintext space of the key (fixed-point encoding overflow)."""


class MalformedInput(DtxError, ValueError):
    """Serialized input is truncated, oversized, of an unknown version, or otherwise invalid."""


class KeyMismatch(DtxError, ValueError):
    """An object was made under a different key than the one it is used with."""


class InvalidProof(DtxError):
    """A proof (of storage, of possession) failed verification."""


class InvalidSignature(DtxError):
    """A signature did not verify."""


class ProtocolError(DtxError):
    """A protocol peer sent a message out of order, of the wrong kind, or inconsistent."""


class BackendUnavailable(DtxError, ImportError):
    """A compiled backend was requested explicitly but is not available."""


class NotFound(DtxError, KeyError):
    """A requested object (task, file, node, entry) does not exist."""

    def __str__(self) -> str:  # KeyError quotes its argument; we want the plain message
        return str(self.args[0]) if self.args else ""


class StateError(DtxError):
    """An operation is not allowed in the object's current state (e.g. a task already finished)."""


class Unauthorized(DtxError, PermissionError):
    """The sender is not allowed to do this (e.g. approving a file it does not own)."""
