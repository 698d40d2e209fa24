"""The Ray backend: batch operations split into chunks that run as Ray tasks on a party's cluster.

See :mod:`dtxfast.compute` for what each worker sees and the private-key policy.

Chunks
------
An operation on ``n`` elements is cut into contiguous chunks of ``rows`` elements (the last may be
shorter), chosen from a per-element cost estimate of the operation at the key's size
(:data:`COST_US`, one core, 2048-bit keys, scaled by ``(bits / 2048)^2``):

* at least :data:`MIN_CHUNK_S` (20 ms) of work, so Ray's 1.4–1.8 ms per task stays small;
* at most :data:`MAX_CHUNK_S` (2 s), so a worker that dies costs little, and the cluster's CPUs
  stay busy to the end;
* otherwise about :data:`CHUNKS_PER_CPU` chunks per CPU of the cluster.

``X @ E(v)`` is split by rows of ``X`` (multiples of 8, the kernel's row group); the encrypted
vector and its inverted columns go to the object store once and every chunk reads them from there.
PSI unblinding chunks are multiples of 64 (the batch check's group), so the checks are the same as
on one machine. Results come back in chunk order (``ray.get`` over the list of references).

Failures
--------
Each chunk is a pure function of its inputs, so a chunk whose worker dies is simply run again:
tasks carry ``max_retries`` (default 3; Ray retries only system failures, such as a killed worker,
not errors of the operation). A retried encryption chunk draws fresh randomness: different
ciphertexts of the same values, and the lost attempt's output is never used. A
:class:`~dtxfast.errors.DtxError` in a chunk (an overflow, an invalid signature) is raised again on
the driver with the same class, naming the chunk's element range.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from typing import Any, Literal

import numpy as np

from .. import errors
from ..crypto import paillier
from ..crypto.blind_rsa import BlindedBatch, BlindRSAPublicKey, BlindRSASigner, IdBatch, Rng, _check_signed
from ..crypto.paillier import PLAINTEXT_BITS, EncryptedVector, PaillierPrivateKey, PaillierPublicKey
from ..errors import BackendUnavailable, MalformedInput, ParameterError, Unauthorized
from . import _worker
from .base import ComputeBackend, PrivateKeyPolicy, check_policy

__all__ = ["CHUNKS_PER_CPU", "COST_US", "INSTALL_HINT", "MAX_CHUNK_S", "MIN_CHUNK_S", "RayCompute"]

#: what to run when Ray is missing
INSTALL_HINT = "Ray is not installed: pip install 'dtxfast[ray]'"
#: shortest and longest work per chunk, in seconds (estimated)
MIN_CHUNK_S = 0.02
MAX_CHUNK_S = 2.0
#: chunks per CPU of the cluster between those bounds
CHUNKS_PER_CPU = 4
#: estimated microseconds per element on one core at 2048 bits (matmul: per entry of X)
COST_US = {
    "encrypt": 125.0,
    "decrypt": 650.0,
    "matmul": 9.0,
    "sign_blinded": 260.0,
    "sign_own": 265.0,
    "blind": 40.0,
    "finalize": 20.0,
}
_ALIGN = {"matmul": 8, "finalize": 64}

_remote_fns: dict[str, Any] = {}


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise BackendUnavailable(INSTALL_HINT) from exc
    return ray


def _remote(ray: Any, name: str, max_retries: int) -> Any:
    key = f"{name}/{max_retries}"
    if key not in _remote_fns:
        fn = getattr(_worker, name)
        _remote_fns[key] = ray.remote(num_cpus=1, max_retries=max_retries, retry_exceptions=False)(fn)
    return _remote_fns[key]


def plan_rows(op: str, n: int, bits: int, cpus: int, *, per_element: float = 1.0) -> int:
    """Elements per chunk for ``n`` elements of ``op`` on ``cpus`` CPUs (see the module doc)."""
    cost = COST_US[op] * per_element * (bits / 2048) ** 2 * 1e-6
    lo = max(1, math.ceil(MIN_CHUNK_S / cost))
    hi = max(1, int(MAX_CHUNK_S / cost))
    rows = min(max(math.ceil(n / (max(cpus, 1) * CHUNKS_PER_CPU)), lo), hi)
    align = _ALIGN.get(op, 1)
    return max(align, (rows + align - 1) // align * align)


class RayCompute(ComputeBackend):
    """Batch operations as Ray tasks on a party's own Ray cluster.

    Parameters
    ----------
    address : str, optional
        What ``ray.init`` connects to: ``"ray://HOST:PORT"`` (Ray Client), ``"auto"`` (the cluster
        this machine belongs to), ``"HOST:PORT"`` (a cluster's GCS), ``"local"`` (start a
        single-machine cluster listening on 127.0.0.1 only), or None (Ray's default:
        ``RAY_ADDRESS``, else a running local cluster, else a new one). If this process is already
        connected to Ray, that connection is used and ``address`` is ignored.
    private_keys : {"refuse", "local", "send"}
        What decryption and RSA signing do with the private key: ``"refuse"`` (default) raises
        :class:`~dtxfast.errors.Unauthorized`; ``"local"`` runs those operations on this machine's
        kernels; ``"send"`` ships the key to the workers (the party trusts every node of its
        cluster with it).
    num_cpus : int, optional
        CPUs of a local cluster this backend starts (default: all).
    object_store_memory : int, optional
        Bytes of Ray's object store of a local cluster this backend starts.
    chunk_size : int, optional
        Elements per chunk for every operation (default: :func:`plan_rows`).
    max_retries : int, default 3
        How often a chunk whose worker died is run again.

    Attributes
    ----------
    shipped : list of (str, str)
        Every key sent to the cluster, as ``(kind, fingerprint hex)``: kinds
        ``paillier-public``, ``paillier-private``, ``rsa-public``, ``rsa-private``.
    """

    name = "ray"

    def __init__(self, address: str | None = None, *, private_keys: PrivateKeyPolicy = "refuse",
                 num_cpus: int | None = None, object_store_memory: int | None = None,
                 chunk_size: int | None = None, max_retries: int = 3) -> None:
        self.private_keys = check_policy(private_keys)
        if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
            raise ParameterError("chunk_size must be a positive int")
        if not isinstance(max_retries, int) or max_retries < 0:
            raise ParameterError("max_retries must be a non-negative int")
        self.chunk_size = chunk_size
        self.max_retries = max_retries
        ray = _import_ray()
        if address == "local" and not ray.is_initialized():
            # a cluster started here binds and advertises the loopback address only: Ray's
            # single-machine mode (its processes read the variable; this process reads the
            # constant, fixed when Ray was imported)
            os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
            from ray._private import ray_constants

            ray_constants.ENABLE_RAY_CLUSTER = False
        self._ray = ray
        self._owns = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"address": address, "logging_level": logging.WARNING,
                                      "log_to_driver": False}
            if address in (None, "local"):
                kwargs.update(num_cpus=num_cpus, object_store_memory=object_store_memory,
                              include_dashboard=False)
            try:
                ray.init(**kwargs)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                hint = ""
                if str(address or "").startswith("ray://") and os.environ.get("RAY_AUTH_MODE") != "token":
                    # Ray >= 2.52 clusters may require a token; the client sends it only in token mode
                    hint = ("; if the cluster uses token authentication, set RAY_AUTH_MODE=token and "
                            "RAY_AUTH_TOKEN (or keep the token in ~/.ray/auth_token)")
                raise BackendUnavailable(
                    f"cannot reach the Ray cluster {address or '(default)'}: {exc}{hint}") from exc
            self._owns = True
        self.shipped: list[tuple[str, str]] = []
        self._keys: dict[bytes, Any] = {}

    # -- plumbing -------------------------------------------------------------------------------
    @property
    def cpus(self) -> int:
        """CPUs of the cluster (what the chunk plan divides the work by)."""
        return max(1, int(self._ray.cluster_resources().get("CPU", 1)))

    def describe(self) -> str:
        return f"ray ({self.cpus} CPUs, private keys: {self.private_keys})"

    def close(self) -> None:
        self._keys.clear()
        if self._owns and self._ray.is_initialized():
            self._ray.shutdown()
        self._owns = False

    def _ship(self, kind: str, data: bytes, fingerprint: bytes) -> tuple[str, bytes, Any]:
        """The key as it travels: (kind, digest, object reference); each key is put once."""
        digest = hashlib.sha256(kind.encode() + b"\0" + data).digest()[:16]
        ref = self._keys.get(digest)
        if ref is None:
            ref = self._ray.put(data)
            self._keys[digest] = ref
            self.shipped.append((kind, fingerprint.hex()))
        return kind, digest, ref

    def _private(self, op: str) -> bool:
        """True if ``op`` (which needs a private key) runs on the cluster, False if locally."""
        if self.private_keys == "send":
            return True
        if self.private_keys == "local":
            return False
        raise Unauthorized(
            f"{op} needs the private key, and this Ray backend does not send private keys to its "
            "workers (private_keys='refuse'); choose 'send' to run it on the cluster or 'local' to "
            "run it on this machine"
        )

    def _rows(self, op: str, n: int, bits: int, per_element: float = 1.0) -> int:
        if self.chunk_size is not None:
            align = _ALIGN.get(op, 1)
            return (self.chunk_size + align - 1) // align * align
        return plan_rows(op, n, bits, self.cpus, per_element=per_element)

    def _map(self, op: str, key: tuple[str, bytes, Any], n: int, rows: int,
             args: Any) -> list[Any]:
        """Run ``op`` over the chunks ``[s, s + rows)`` of ``n`` elements; ``args(s, e)`` gives a
        chunk's inputs. Returns the outputs in chunk order."""
        fn = _remote(self._ray, "run_chunk", self.max_retries)
        spans = [(s, min(s + rows, n)) for s in range(0, n, rows)]
        refs = [fn.remote(op, *key, *args(s, e)) for s, e in spans]
        try:
            outs = self._ray.get(refs)
        except self._ray.exceptions.RayError as exc:
            for r in refs:
                self._ray.cancel(r, force=False)
            raise errors.DtxError(f"{op} failed on the Ray cluster: {str(exc).splitlines()[0]}") from exc
        for (s, e), out in zip(spans, outs):
            if isinstance(out, _worker.ChunkError):
                cls = getattr(errors, out.name, errors.DtxError)
                raise cls(f"elements {s}..{e - 1}: {out.message}")
        return outs

    # -- Paillier -------------------------------------------------------------------------------
    def encrypt(self, pk: PaillierPublicKey, values: Any, *, frac_bits: int | None = None) -> EncryptedVector:
        original = paillier._as_array(values)
        arr = original
        if arr.dtype.kind == "O" and any(isinstance(v, float) for v in arr.tolist()):
            arr = arr.astype(np.float64)  # as pk.encode does: one float makes the whole vector float
        n = len(arr)
        if n == 0:
            return pk.encrypt(arr, frac_bits=frac_bits)
        key = self._ship("paillier-public", pk.to_bytes(), pk.fingerprint)
        outs = self._map("encrypt", key, n, self._rows("encrypt", n, pk.n_bits),
                         lambda s, e: (arr[s:e], frac_bits))
        exponent, is_float = outs[0][1], outs[0][2]
        c = np.ascontiguousarray(np.concatenate([o[0] for o in outs]))
        return EncryptedVector(pk, c, exponent, is_float, obfuscated=True,
                               bound=paillier._value_bound(original, exponent))

    def decrypt(self, sk: PaillierPrivateKey, ev: EncryptedVector) -> np.ndarray:
        sk._check(ev)
        if not self._private("decrypt") or len(ev) == 0:
            return sk.decrypt(ev)
        key = self._ship("paillier-private", sk.to_bytes(), sk.public_key.fingerprint)
        n = len(ev)
        outs = self._map("decrypt", key, n, self._rows("decrypt", n, sk.public_key.n_bits),
                         lambda s, e: (ev._c[s:e], ev.exponent, ev.is_float))
        if any(o.dtype == object for o in outs):
            outs = [o.astype(object) for o in outs]
        return np.concatenate(outs)

    def matmul(self, X: Any, ev: EncryptedVector, *, plaintext_bits: int = PLAINTEXT_BITS) -> EncryptedVector:
        A = paillier._matmul_check(X, ev, plaintext_bits)
        plan = paillier._matmul_plan(A, ev, plaintext_bits)
        m, k = A.shape
        if m == 0 or k == 0:
            return paillier.matmul(A, ev, plaintext_bits=plaintext_bits)
        pk = ev.public_key
        key = self._ship("paillier-public", pk.to_bytes(), pk.fingerprint)
        c_ref = self._ray.put(ev._c)
        cinv_ref = None if plan.cinv is None else self._ray.put(plan.cinv)
        xneg = plan.xneg
        rows = self._rows("matmul", m, pk.n_bits, per_element=k)
        outs = self._map("matmul", key, m, rows, lambda s, e: (
            plan.xabs[s:e], None if xneg is None else xneg[s:e], c_ref, cinv_ref, plan.bits, plan.window))
        return plan.result(ev, np.ascontiguousarray(np.concatenate(outs)))

    # -- blind-RSA PSI --------------------------------------------------------------------------
    def _rsa_private(self, signer: BlindRSASigner) -> tuple[str, bytes, Any]:
        return self._ship("rsa-private", signer.to_der(), signer.public_key().fingerprint)

    def sign_blinded(self, signer: BlindRSASigner, blinded: np.ndarray) -> np.ndarray:
        pub = signer.public_key()
        blinded = np.ascontiguousarray(blinded, dtype=np.uint8)
        if blinded.ndim != 2 or blinded.shape[1] != pub.k:
            raise MalformedInput(f"blinded values must be rows of {pub.k} bytes")
        n = blinded.shape[0]
        if not self._private("blind signing") or n == 0:
            return signer.sign_blinded(blinded)
        outs = self._map("sign_blinded", self._rsa_private(signer), n,
                         self._rows("sign_blinded", n, pub.n.bit_length()), lambda s, e: (blinded[s:e],))
        return np.ascontiguousarray(np.concatenate(outs))

    def sign_own(self, signer: BlindRSASigner, ids: IdBatch) -> np.ndarray:
        n = len(ids)
        if not self._private("signing the signer's own ids") or n == 0:
            return signer.tags(ids)

        def chunk(s: int, e: int) -> tuple[np.ndarray, np.ndarray]:
            part = ids.slice(s, e)
            return part.buffer, part.offsets

        outs = self._map("sign_own", self._rsa_private(signer), n,
                         self._rows("sign_own", n, signer.public_key().n.bit_length()), chunk)
        return np.ascontiguousarray(np.concatenate(outs))

    def blind(self, pub: BlindRSAPublicKey, ids: IdBatch, *, rng: Rng | None = None) -> BlindedBatch:
        if rng is not None:
            raise ParameterError("Ray workers draw their own blinding factors (from their OS CSPRNG): "
                                 "a custom rng works with the local backend only")
        n = len(ids)
        if n == 0:
            return pub.blind(ids)

        def chunk(s: int, e: int) -> tuple[np.ndarray, np.ndarray]:
            part = ids.slice(s, e)
            return part.buffer, part.offsets

        key = self._ship("rsa-public", pub.to_bytes(), pub.fingerprint)
        outs = self._map("blind", key, n, self._rows("blind", n, pub.n.bit_length()), chunk)
        blinded = np.ascontiguousarray(np.concatenate([o[0] for o in outs]))
        rinv = np.ascontiguousarray(np.concatenate([o[1] for o in outs]))
        return BlindedBatch(blinded, rinv, pub.key_id)

    def finalize(self, pub: BlindRSAPublicKey, batch: BlindedBatch, signed: np.ndarray, *,
                 verify: Literal["batch", "each"] = "batch") -> np.ndarray:
        signed = _check_signed(pub.key_id, batch, signed, verify)
        n = len(batch)
        if n == 0:
            return pub.finalize(batch, signed, verify=verify)
        key = self._ship("rsa-public", pub.to_bytes(), pub.fingerprint)
        outs = self._map("finalize", key, n, self._rows("finalize", n, pub.n.bit_length()),
                         lambda s, e: (signed[s:e], batch.rinv[s:e], batch.blinded[s:e], verify))
        return np.ascontiguousarray(np.concatenate(outs))

    # -- inspection -----------------------------------------------------------------------------
    def worker_reports(self, count: int | None = None) -> list[dict[str, Any]]:
        """Ask ``count`` tasks (default: one per CPU of the cluster) for their worker's pid and the
        keys it holds, as ``(class name, fingerprint hex)``: an audit of the private-key policy
        (Ray picks which workers answer)."""
        fn = _remote(self._ray, "worker_report", 0)
        refs = [fn.remote() for _ in range(count or self.cpus)]
        return list(self._ray.get(refs))
