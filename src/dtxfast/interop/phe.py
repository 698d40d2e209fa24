"""Interoperability with python-paillier (``phe``, the optional extra ``dtxfast[phe]``).

Both libraries use ``g = n + 1``, so a ciphertext means the same number in both; only the
encodings differ. python-paillier encodes ``value = mantissa * 16^exponent`` per number;
dtxfast gives a whole vector one binary exponent ``F`` (``value = m * 2^-F``). The conversion
therefore only rescales where the exponents do not line up:

* dtxfast -> phe: with ``F`` a multiple of 4, ``phe_exponent = -F / 4`` and the ciphertexts are
  used as they are; otherwise each ciphertext is raised to ``2^(4 - F mod 4)`` first.
* phe -> dtxfast: the vector takes ``F = max(0, -4 * min(exponent))`` and each ciphertext is
  raised to ``2^(F + 4 * exponent_i)`` to align. Numbers whose exponents lie so far apart that the
  aligned values could leave the plaintext space (e.g. a subnormal float beside 1.0) raise
  :class:`~dtxfast.errors.EncodingOverflowError` instead of decoding wrong.

Keys convert both ways; the private key is rebuilt from ``p`` and ``q``.

Examples
--------
>>> from dtxfast.crypto.paillier import generate_keypair
>>> from dtxfast.interop import phe as interop
>>> pk, sk = generate_keypair(1024)
>>> numbers = interop.to_phe(pk.encrypt([1.5, -2.0]))
>>> [interop.to_phe_private_key(sk).decrypt(x) for x in numbers]
[1.5, -2.0]
>>> phe_pk = interop.to_phe_public_key(pk)
>>> sk.decrypt(interop.from_phe([phe_pk.encrypt(3), phe_pk.encrypt(-0.25)], pk))
array([ 3.  , -0.25])
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from ..crypto.paillier import EncryptedVector, PaillierPrivateKey, PaillierPublicKey
from ..errors import BackendUnavailable, EncodingOverflowError, KeyMismatch, ParameterError

if TYPE_CHECKING:  # pragma: no cover
    import phe

__all__ = [
    "from_phe",
    "from_phe_private_key",
    "from_phe_public_key",
    "to_phe",
    "to_phe_private_key",
    "to_phe_public_key",
]


def _phe() -> Any:
    try:
        import phe
    except ImportError as exc:
        raise BackendUnavailable("python-paillier is not installed: pip install 'dtxfast[phe]'") from exc
    return phe


def to_phe_public_key(pk: PaillierPublicKey) -> phe.PaillierPublicKey:
    """The same public key as a ``phe.PaillierPublicKey``."""
    return _phe().PaillierPublicKey(pk.n)


def to_phe_private_key(sk: PaillierPrivateKey) -> phe.PaillierPrivateKey:
    """The same private key as a ``phe.PaillierPrivateKey``."""
    return _phe().PaillierPrivateKey(to_phe_public_key(sk.public_key), sk.p, sk.q)


def from_phe_public_key(key: phe.PaillierPublicKey) -> PaillierPublicKey:
    """A dtxfast public key from a ``phe.PaillierPublicKey``."""
    return PaillierPublicKey(int(key.n))


def from_phe_private_key(key: phe.PaillierPrivateKey) -> PaillierPrivateKey:
    """A dtxfast private key from a ``phe.PaillierPrivateKey``."""
    return PaillierPrivateKey(from_phe_public_key(key.public_key), int(key.p), int(key.q))


def to_phe(ev: EncryptedVector) -> list[phe.EncryptedNumber]:
    """The elements of ``ev`` as ``phe.EncryptedNumber`` objects (same ciphertexts when the
    exponent is a multiple of 4)."""
    phe = _phe()
    pad = (-ev.exponent) % 4
    src = ev._rescaled(ev.exponent + pad) if pad else ev
    phe_pk = to_phe_public_key(ev.public_key)
    exponent = -(src.exponent // 4)
    return [phe.EncryptedNumber(phe_pk, c, exponent) for c in src.raw_ciphertexts()]


def from_phe(numbers: Sequence[phe.EncryptedNumber], public_key: PaillierPublicKey | None = None) -> EncryptedVector:
    """An :class:`EncryptedVector` from ``phe.EncryptedNumber`` objects under one key.

    Parameters
    ----------
    numbers : sequence of phe.EncryptedNumber
    public_key : PaillierPublicKey, optional
        The dtxfast key to attach (must have the same modulus); built from the numbers' key if
        omitted.
    """
    numbers = list(numbers)
    if not numbers:
        raise ParameterError("nothing to convert")
    n = int(numbers[0].public_key.n)
    if any(int(x.public_key.n) != n for x in numbers):
        raise KeyMismatch("the numbers are encrypted under different keys")
    pk = public_key if public_key is not None else PaillierPublicKey(n)
    if pk.n != n:
        raise KeyMismatch("public_key does not match the numbers' key")
    exps = [int(x.exponent) for x in numbers]
    frac = max(0, max(-4 * e for e in exps))
    is_float = frac > 0
    c = EncryptedVector.from_ciphertexts(pk, [int(x.ciphertext(be_secure=False)) for x in numbers])
    shifts = [frac + 4 * e for e in exps]
    if max(shifts) > pk.max_int.bit_length() - 128:
        # a mantissa of up to 128 bits must still fit after the shift
        raise EncodingOverflowError(
            f"the numbers' exponents are {max(shifts)} bits apart: too far to align in one vector "
            "without risking overflow (convert them in groups of similar magnitude)"
        )
    if any(shifts):
        c = EncryptedVector(pk, (c * [1 << s for s in shifts])._c, 0, False)
    return EncryptedVector(pk, c._c, frac, is_float)
