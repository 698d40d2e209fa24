"""A drop-in for python-paillier 1.5 (``phe``), backed by dtxfast's compiled Paillier kernel.

Change one import line and an existing program runs on dtxfast::

    from phe import paillier                     # before
    from dtxfast.compat.phe import paillier      # after

``paillier``, ``encoding`` and ``util`` mirror ``phe.paillier``, ``phe.encoding`` and
``phe.util``; the top-level names mirror ``phe``'s. python-paillier's own test suite runs against
this package in dtxfast's tests. What differs, and the batch helpers python-paillier lacks, are
described in :mod:`dtxfast.compat.phe.paillier`.

Examples
--------
>>> from dtxfast.compat.phe import paillier
>>> public_key, private_key = paillier.generate_paillier_keypair(n_length=1024)
>>> private_key.decrypt(public_key.encrypt(2.5) * 4)
10.0
"""

from __future__ import annotations

from . import encoding, paillier, util
from .encoding import EncodedNumber
from .paillier import (
    EncryptedNumber,
    PaillierPrivateKey,
    PaillierPrivateKeyring,
    PaillierPublicKey,
    from_vector,
    generate_paillier_keypair,
    to_vector,
)

__all__ = [
    "EncodedNumber",
    "EncryptedNumber",
    "PaillierPrivateKey",
    "PaillierPrivateKeyring",
    "PaillierPublicKey",
    "encoding",
    "from_vector",
    "generate_paillier_keypair",
    "paillier",
    "to_vector",
    "util",
]
