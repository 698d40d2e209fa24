"""dtxfast: privacy-preserving machine learning over decentralized, encrypted storage.

The stable surface is re-exported here; everything else lives in its subpackage
(:mod:`dtxfast.crypto`, :mod:`dtxfast.protocols`, :mod:`dtxfast.ledger`, :mod:`dtxfast.storage`,
...).

Examples
--------
>>> import dtxfast
>>> dtxfast.__version__
'0.1.0'
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version as _version

from ._backend import BackendInfo, backend_info, num_threads, set_num_threads
from .errors import DtxError

try:
    __version__ = _version("dtxfast")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "__version__",
    "BackendInfo",
    "DtxError",
    "backend_info",
    "num_threads",
    "set_num_threads",
]
