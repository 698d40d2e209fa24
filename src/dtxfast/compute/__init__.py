"""Compute backends: where the batch operations of large runs execute.

Large runs spend their time in a handful of batch operations: Paillier encryption, decryption and
``X @ E(v)``, and in PSI the signer's blind signatures, the signer's tags of its own ids and the
requester's blinding and unblinding. A :class:`ComputeBackend` runs exactly these:

=================  =========================================  ===============================
operation          the L1 call it runs                        key it needs
=================  =========================================  ===============================
``encrypt``        ``pk.encrypt(values)``                     Paillier public key
``decrypt``        ``sk.decrypt(ev)``                         Paillier **private** key
``matmul``         ``X @ ev``                                 Paillier public key
``sign_blinded``   ``signer.sign_blinded(blinded)``           RSA **private** key
``sign_own``       ``signer.tags(ids)``                       RSA **private** key
``blind``          ``pub.blind(ids)``                         RSA public key
``finalize``       ``pub.finalize(batch, signed)``            RSA public key
=================  =========================================  ===============================

Two backends give the same results (ciphertexts of ``matmul`` bit for bit; encryptions and blinding
draw fresh randomness, so they are equal after decryption / unblinding):

* ``local`` (:class:`LocalCompute`, the default): the compiled kernels of this process, on
  ``dtxfast.num_threads()`` cores.
* ``ray`` (:class:`~dtxfast.compute.ray_backend.RayCompute`, the ``dtxfast[ray]`` extra): the
  batch is cut into chunks of 20 ms to 2 s of work that run as Ray tasks on the party's cluster,
  come back in order, and are run again if their worker dies.

Choosing one: ``get_compute(spec)``, or the environment (``DTXFAST_COMPUTE``, read by
:func:`default_compute`, which the protocol objects use when given no backend), or ``--compute``
on ``dtx psi`` and ``dtx vfl``. Specs: ``local``; ``ray`` (Ray's default address);
``ray:auto``; ``ray:local`` (start a single-machine cluster on 127.0.0.1); ``ray:HOST:PORT``
(a cluster's GCS address); ``ray://HOST:PORT`` (Ray Client).

What a worker sees
------------------
A party's Ray cluster belongs to that party, as in SecretFlow, where each party runs its own
cluster: no other party's process runs on it, and nothing in dtxfast sends work to another
party's cluster. Within the cluster, every worker that runs a chunk sees that chunk's inputs and
outputs in the clear, and the key the operation needs:

* ``encrypt``: the plaintext values of the chunk, the public key; it returns the ciphertexts.
* ``matmul``: the rows of the plaintext matrix ``X`` of the chunk, the whole encrypted vector
  (ciphertexts only), the public key.
* ``decrypt``: the ciphertexts of the chunk, the **private key**, and the plaintexts it returns.
* ``sign_blinded``: blinded values (uniform in Z_n, they reveal nothing of the ids), the RSA
  **private key**.
* ``sign_own``: the signer's own ids of the chunk, the RSA **private key**, the tags.
* ``blind`` / ``finalize``: the requester's ids of the chunk, the blinding factors (drawn on the
  worker from its OS CSPRNG) and their inverses, the signer's answers, the resulting tags; the RSA
  public key.

Private keys travel to the workers only as the party decides, with the ``private_keys`` policy
of :class:`~dtxfast.compute.ray_backend.RayCompute` (``DTXFAST_COMPUTE_PRIVATE_KEYS``,
``--private-keys``): ``refuse`` (the default: ``decrypt``, ``sign_blinded`` and ``sign_own``
raise :class:`~dtxfast.errors.Unauthorized`), ``local`` (those three run on this machine, the key
stays here; the public-key operations still run on the cluster), or ``send`` (the key goes to the
cluster's object store and to each worker that runs a chunk; the worker keeps it in memory for the
next chunks). Public keys always travel. Every key sent is listed in ``RayCompute.shipped``.

Ray itself: Ray 2.60 authenticates the connections of a cluster with a token (``~/.ray``), but
without its TLS (``RAY_USE_TLS``) the object store and the task payloads cross the network in the
clear: run a party's cluster inside that party's own network. Workers must have the same dtxfast installed (``pip install
'dtxfast[ray]'`` on every node).

Layering: a backend executes L1 operations and nothing else; the L2 protocol objects (PSI
parties, the VFL parties) take one as a parameter (``compute=``), and the CLI builds it from
``--compute``.

Examples
--------
>>> from dtxfast.compute import get_compute
>>> from dtxfast.crypto.paillier import generate_keypair
>>> pk, sk = generate_keypair(1024)
>>> with get_compute("local") as cb:
...     cb.decrypt(sk, cb.encrypt(pk, [1.5, -2.0]))
array([ 1.5, -2. ])
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ..errors import ParameterError
from .base import PRIVATE_KEY_POLICIES, ComputeBackend, LocalCompute, PrivateKeyPolicy, check_policy

if TYPE_CHECKING:
    from .ray_backend import RayCompute

__all__ = [
    "PRIVATE_KEY_POLICIES",
    "ComputeBackend",
    "LocalCompute",
    "PrivateKeyPolicy",
    "RayCompute",
    "default_compute",
    "get_compute",
]

_default: ComputeBackend | None = None
_default_spec: tuple[str, str] | None = None


def __getattr__(name: str) -> Any:
    if name == "RayCompute":  # importing the class does not need Ray; using it does
        from .ray_backend import RayCompute

        return RayCompute
    raise AttributeError(name)


def get_compute(spec: str | None = None, *, private_keys: str | None = None, **options: Any) -> ComputeBackend:
    """A compute backend from a spec string.

    Parameters
    ----------
    spec : str, optional
        ``local``, ``ray``, ``ray:auto``, ``ray:local``, ``ray:HOST:PORT`` or ``ray://HOST:PORT``;
        default ``DTXFAST_COMPUTE``, else ``local``.
    private_keys : {"refuse", "local", "send"}, optional
        The Ray backend's private-key policy; default ``DTXFAST_COMPUTE_PRIVATE_KEYS``, else
        ``refuse``. Ignored by ``local`` (keys never leave the process).
    **options
        Passed to :class:`~dtxfast.compute.ray_backend.RayCompute` (``num_cpus``, ``chunk_size``, ...).

    Raises
    ------
    ParameterError
        An unknown spec or policy.
    BackendUnavailable
        Ray is not installed (the message says how to install it), or the cluster is unreachable.

    Examples
    --------
    >>> get_compute("local").describe().startswith("local")
    True
    >>> get_compute("spark")
    Traceback (most recent call last):
    ...
    dtxfast.errors.ParameterError: unknown compute backend 'spark': use local, ray, ray:auto, ray:local, ray:HOST:PORT or ray://HOST:PORT
    """
    text = (spec if spec is not None else os.environ.get("DTXFAST_COMPUTE", "local")).strip()
    policy = check_policy(private_keys if private_keys is not None
                          else os.environ.get("DTXFAST_COMPUTE_PRIVATE_KEYS", "refuse").strip())
    if text in ("", "local"):
        return LocalCompute()
    address: str | None
    if text == "ray":
        address = None
    elif text.startswith("ray://"):
        address = text
    elif text.startswith("ray:") and len(text) > 4:
        address = text[4:]
    else:
        raise ParameterError(f"unknown compute backend {text!r}: use local, ray, ray:auto, ray:local, "
                             "ray:HOST:PORT or ray://HOST:PORT")
    from .ray_backend import RayCompute

    return RayCompute(address, private_keys=policy, **options)


def default_compute() -> ComputeBackend:
    """The backend ``DTXFAST_COMPUTE`` / ``DTXFAST_COMPUTE_PRIVATE_KEYS`` name (one per process,
    made on first use; ``local`` when unset).

    Examples
    --------
    >>> default_compute().name in ("local", "ray")
    True
    """
    global _default, _default_spec
    spec = (os.environ.get("DTXFAST_COMPUTE", "local").strip() or "local",
            os.environ.get("DTXFAST_COMPUTE_PRIVATE_KEYS", "refuse").strip())
    if _default is None or spec != _default_spec:
        if _default is not None:
            _default.close()
        _default = get_compute(spec[0], private_keys=spec[1])
        _default_spec = spec
    return _default
