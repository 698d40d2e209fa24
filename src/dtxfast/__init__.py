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

import os as _os
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

# Before any compiled kernel loads libgomp: idle OpenMP threads wait passively instead of
# spinning at every barrier. Active spinning starves the working thread whenever the machine has
# fewer free cores than threads (CI, other jobs, several dtxfast processes): a 2-thread Merkle
# build ran >10x slower than 1 thread under load. Our parallel regions last milliseconds, so a
# passive wake-up costs nothing measurable. A user's own OMP_WAIT_POLICY wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from ._backend import BackendInfo, backend_info, num_threads, set_num_threads
from .errors import DtxError

try:
    __version__ = _version("dtxfast")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "BackendInfo",
    "DtxError",
    "__version__",
    "backend_info",
    "num_threads",
    "set_num_threads",
]
