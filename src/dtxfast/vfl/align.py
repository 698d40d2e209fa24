"""Row alignment of two parties' tables by private set intersection, before vertical training.

Vertical federated learning needs both parties' rows of the same samples, in the same order.
:func:`psi_align` runs RSA blind-signature PSI (:mod:`dtxfast.protocols.psi`; B signs, A requests
and learns the intersection, then tells B, since both need the common rows) with both parties in
this process, and returns each party's row positions of the common ids, sorted by id. Across
processes, run :class:`~dtxfast.protocols.psi.PSIRequester` and
:class:`~dtxfast.protocols.psi.PSISigner` over a channel instead.

Examples
--------
>>> ia, ib, common = psi_align(["u3", "u1", "u9"], ["u1", "u7", "u3"], rsa_bits=1024)
>>> common
['u1', 'u3']
>>> ia.tolist(), ib.tolist()
([1, 0], [0, 2])
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..crypto.blind_rsa import BlindRSASigner
from ..protocols.psi import PSIRequester, PSISigner, run_two_party

__all__ = ["psi_align"]


def psi_align(ids_a: list[str], ids_b: list[str], *, rsa_bits: int = 2048,
              compute: Any = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Align two parties' rows with RSA blind-signature PSI (B signs, A requests).

    Parameters
    ----------
    ids_a, ids_b : list of str
        Each party's row ids, in its row order.
    rsa_bits : int, default 2048
        Size of B's fresh RSA signing key.
    compute : ComputeBackend, optional
        Where both sides' RSA work runs (:mod:`dtxfast.compute`); default ``DTXFAST_COMPUTE``,
        else the local kernels.

    Returns
    -------
    (positions in A, positions in B, common ids)
        The row positions of the common ids in A's and in B's table, both in the order of the
        sorted common ids, and those ids.
    """
    key = BlindRSASigner.generate(rsa_bits)
    common = sorted(x.decode() for x in run_two_party(PSIRequester(ids_a, compute=compute),
                                                           PSISigner(ids_b, key, compute=compute)))
    # A learned the intersection; it sends it to B, since both need the common rows in one order.
    pos_a = {v: i for i, v in enumerate(ids_a)}
    pos_b = {v: i for i, v in enumerate(ids_b)}
    return (np.array([pos_a[c] for c in common], dtype=np.intp),
            np.array([pos_b[c] for c in common], dtype=np.intp), common)
