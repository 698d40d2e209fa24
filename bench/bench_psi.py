"""PSI benchmarks: dtxfast (RSA, ECDH and OT modes) against its twin, OpenMined's PSI, SPU and floors.

Groups, at 10^4, 10^5 and 10^6 ids per side with 50% overlap (``--quick``: 10^3 and 10^4), with a
2048-bit RSA key:

- ``psi.signer`` (µs per id): the signer's cost of answering one of the requester's ids. RSA: one
  blind signature (CRT); ECDH: one X25519 multiplication. ``openmined-psi``: ``ProcessRequest``
  per id (P-256, one thread). Same work on both sides: answering the requester's ids only; the
  signer's own-set work (dtxfast's tags, cached per key and id list; OpenMined's
  ``CreateSetupMessage``) is outside this group and inside ``psi.total``.
- ``psi.requester`` (µs per id): hash, blind, verify + unblind, hash (RSA); hash, mask, hash of the
  answer and mask + hash of the signer's value (ECDH); ``CreateRequest`` + ``GetIntersection``
  (OpenMined).
- ``psi.total`` (seconds): a whole two-party run in-process, cold signer cache (the signer tags its
  own ids inside the timed part), key generation excluded. ``dtxfast-ot`` is the OT mode (KKRT16):
  its base OTs, IKNP, cuckoo hashing and OPRF are all inside the timed part (only the OPRF key's
  64 random bytes and the signer's base-OT point are drawn in the setup); its per-stage times come
  from ``python bench/psi_ot_stages.py N``.

SPU rows of ``psi.total`` (``spu-rr22``, ``spu-ecdh``, ``spu-kkrt``): SecretFlow SPU's two-party PSI
(``spu.psi.psi_execute``: the VOLE-based RR22, ECDH on Curve25519, KKRT16), both parties in one
process over SPU's in-memory link, on the same ids, timed by ``_spu_psi.py`` under the interpreter
named by ``DTX_BENCH_SPU_PYTHON`` (SPU needs ``numpy < 2``); without it these rows are omitted
and ``dtx bench`` says why under the table. SPU parallelises inside each party as it sees fit, so
the rows say ``threads`` = all cores; ``spu-ecdh``'s ratio is taken against ``dtxfast-ecdh``,
``spu-rr22``'s and ``spu-kkrt``'s against ``dtxfast-ot`` (the OT-based mode: KKRT16, the
protocol of SPU's KKRT rows).

``dtxfast-ecdh`` masks with X25519 8 points per ladder on AVX-512 IFMA where the CPU has it;
``dtxfast-ecdh-openssl`` is the same kernel's one-at-a-time OpenSSL path (``DTXFAST_SIMD=0``) on a
sample of the ids, its ratio taken against ``dtxfast-ecdh``.

Floors of ``psi.signer``: ``floor-openssl`` is libcrypto's own RSA private operation
(``RSA_private_decrypt`` without padding, which OpenSSL runs with its AVX-512 IFMA code where the
CPU has it; called through ctypes from ``_openssl_floor``) on the same key, on one thread and on
all cores; ``floor-gmpy2`` is the two CRT half-exponentiations through gmpy2, one thread (gmpy2
holds the GIL). Both floors, and the pure-Python twin ``dtxfast-python``, run on a fixed sample of
values (per-id costs do not depend on the batch size); their rows carry ``sample``.

Threads: every dtxfast row runs on all cores and on one (``threads`` in the row), so each
one-thread peer (``openmined-psi``, the twin, ``floor-gmpy2``) has a same-thread dtxfast row.

Run: ``dtx bench psi`` (``--quick`` for the smallest sizes, ``--json`` for the JSON rows).
"""

from __future__ import annotations

import os

import gmpy2
import pytest

from dtxfast._backend import use_backend
from dtxfast.crypto.blind_rsa import BlindRSASigner, IdBatch
from dtxfast.crypto.ecdh import ECDHMaskKey, ecdh_tags
from dtxfast.crypto.ot import OPRFKey
from dtxfast.protocols.psi import PSIRequester, PSISigner, SignerTagCache, run_two_party

from . import _openssl_floor
from ._util import CORES, QUICK, SPU_PYTHON, measure, peer_row, sizes, thread_variants

BITS = 2048
SIZES = sizes([10_000, 100_000, 1_000_000], [1_000, 10_000])
PY_SAMPLE = 200 if QUICK else 1000  # values the pure-Python twin and floor-gmpy2 handle
FLOOR_SAMPLE = 2_000 if QUICK else 10_000
OPENMINED_MAX = 100_000  # a million-id OpenMined run takes about ten minutes on two cores
PY_TOTAL_MAX = 10_000

try:
    import private_set_intersection.python as om_psi
except ImportError:  # pragma: no cover - optional peer
    om_psi = None


def _rounds(n: int) -> int:
    return 3 if n <= 10_000 else 1


def _sets(n: int) -> tuple[list[str], list[str]]:
    """Requester ids 0..n-1, signer ids n/2..3n/2-1: 50% overlap."""
    return [f"user-{i:08d}" for i in range(n)], [f"user-{i:08d}" for i in range(n // 2, n + n // 2)]


class _FixedRng:
    """Replays one random buffer, so that every round blinds to the same values (signed once)."""

    def __init__(self) -> None:
        self.buf = b""

    def __call__(self, n: int) -> bytes:
        if len(self.buf) < n:
            self.buf = os.urandom(n)
        return self.buf[:n]


def _twin():
    """Context: use the pure-Python kernel."""
    return use_backend("python", ["_psi"])


@pytest.fixture(scope="module")
def key() -> BlindRSASigner:
    return BlindRSASigner.generate(BITS)


@pytest.fixture(scope="module")
def data():
    cache: dict[int, tuple[IdBatch, IdBatch]] = {}

    def get(n: int) -> tuple[IdBatch, IdBatch]:
        if n not in cache:
            cache.clear()
            a, b = _sets(n)
            cache[n] = (IdBatch.from_strings(a), IdBatch.from_strings(b))
        return cache[n]

    return get


def _note(**extra: object) -> dict[str, object]:
    return {"bits": BITS, **extra}


# ---------------------------------------------------------------------------------------------
# psi.signer

@pytest.mark.benchmark(group="psi.signer")
@pytest.mark.parametrize("threads", thread_variants())
@pytest.mark.parametrize("n", SIZES)
def test_signer_dtxfast(benchmark, key, data, n, threads):
    a, _ = data(n)
    blinded = key.public_key().blind(a).blinded
    measure(benchmark, lambda: key.sign_blinded(blinded), impl="dtxfast", size=n, rounds=_rounds(n),
            threads=threads, **_note())


@pytest.mark.benchmark(group="psi.signer")
@pytest.mark.parametrize("threads", thread_variants())
@pytest.mark.parametrize("n", SIZES)
def test_signer_dtxfast_ecdh(benchmark, data, n, threads):
    a, _ = data(n)
    ka, kb = ECDHMaskKey.generate(), ECDHMaskKey.generate()
    req = kb.mask(ECDHMaskKey.hash_ids(a))
    measure(benchmark, lambda: ka.mask(req), impl="dtxfast-ecdh", size=n, rounds=_rounds(n), threads=threads,
            **_note())


@pytest.mark.benchmark(group="psi.signer")
@pytest.mark.parametrize("threads", thread_variants())
@pytest.mark.parametrize("n", SIZES)
def test_signer_dtxfast_ecdh_openssl(benchmark, data, n, threads, monkeypatch):
    """The one-at-a-time OpenSSL path of the same kernel (``DTXFAST_SIMD=0``), on a sample."""
    a, _ = data(n)
    ka, kb = ECDHMaskKey.generate(), ECDHMaskKey.generate()
    req = kb.mask(ECDHMaskKey.hash_ids(a.slice(0, min(n, FLOOR_SAMPLE))))
    monkeypatch.setenv("DTXFAST_SIMD", "0")  # read by the kernel at every call
    measure(benchmark, lambda: ka.mask(req), impl="dtxfast-ecdh-openssl", size=n, sample=len(req),
            rounds=_rounds(n), threads=threads, ref="dtxfast-ecdh", **_note(note="X25519 via OpenSSL"))


@pytest.mark.benchmark(group="psi.signer")
@pytest.mark.parametrize("n", SIZES)
def test_signer_python_twin(benchmark, key, data, n):
    a, _ = data(n)
    blinded = key.public_key().blind(a.slice(0, PY_SAMPLE)).blinded
    with _twin():
        measure(benchmark, lambda: key.sign_blinded(blinded), impl="dtxfast-python", size=n,
                sample=len(blinded), rounds=1, threads=1, **_note())


@pytest.mark.benchmark(group="psi.signer")
@pytest.mark.parametrize("n", SIZES)
def test_signer_openmined(benchmark, data, n):
    if om_psi is None:
        pytest.skip("openmined.psi not installed")
    if n > OPENMINED_MAX:
        pytest.skip("openmined.psi at this size takes too long")
    a, b = _sets(n)
    server = om_psi.server.CreateWithNewKey(True)
    client = om_psi.client.CreateWithNewKey(True)
    request = client.CreateRequest(a)
    server.CreateSetupMessage(1e-9, n, b, om_psi.DataStructure.RAW)  # own set: not this group's work

    measure(benchmark, lambda: server.ProcessRequest(request), impl="openmined-psi", size=n, rounds=_rounds(n),
            threads=1, **_note(note="P-256, ProcessRequest per id"))


@pytest.mark.benchmark(group="psi.signer")
@pytest.mark.parametrize("threads", thread_variants())
@pytest.mark.parametrize("n", SIZES)
def test_signer_floor_openssl(benchmark, key, data, n, threads):
    if not _openssl_floor.available():
        pytest.skip("libcrypto not found")
    a, _ = data(n)
    blinded = key.public_key().blind(a.slice(0, min(n, FLOOR_SAMPLE))).blinded
    rows = [bytes(r) for r in blinded]
    der = key.to_der()
    measure(benchmark, lambda: _openssl_floor.rsa_private_raw(der, rows, threads), impl="floor-openssl",
            size=n, sample=len(rows), rounds=_rounds(n), threads=threads,
            **_note(note="RSA_private_decrypt"))


@pytest.mark.benchmark(group="psi.signer")
@pytest.mark.parametrize("n", SIZES)
def test_signer_floor_gmpy2(benchmark, key, data, n):
    a, _ = data(n)
    blinded = key.public_key().blind(a.slice(0, PY_SAMPLE)).blinded
    n_be, p, q, dp, dq, qinv = (gmpy2.mpz(int.from_bytes(x, "big")) for x in key._parts)
    xs = [gmpy2.mpz(int.from_bytes(row.tobytes(), "big")) for row in blinded]

    def crt():
        for x in xs:
            m1 = gmpy2.powmod(x % p, dp, p)
            m2 = gmpy2.powmod(x % q, dq, q)
            _ = m2 + ((m1 - m2) * qinv % p) * q

    measure(benchmark, crt, impl="floor-gmpy2", size=n, sample=len(xs), rounds=1, threads=1,
            **_note(note="CRT powmod"))


# ---------------------------------------------------------------------------------------------
# psi.requester

def _rsa_requester(key: BlindRSASigner, ids: IdBatch):
    pub = key.public_key()
    rng = _FixedRng()
    signed = key.sign_blinded(pub.blind(ids, rng=rng).blinded)

    def run():
        return pub.finalize(pub.blind(ids, rng=rng), signed)

    return run


@pytest.mark.benchmark(group="psi.requester")
@pytest.mark.parametrize("threads", thread_variants())
@pytest.mark.parametrize("n", SIZES)
def test_requester_dtxfast(benchmark, key, data, n, threads):
    a, _ = data(n)
    measure(benchmark, _rsa_requester(key, a), impl="dtxfast", size=n, rounds=_rounds(n), threads=threads,
            **_note())


@pytest.mark.benchmark(group="psi.requester")
@pytest.mark.parametrize("threads", thread_variants())
@pytest.mark.parametrize("n", SIZES)
def test_requester_dtxfast_ecdh(benchmark, data, n, threads):
    a, b = data(n)
    ka, kb = ECDHMaskKey.generate(), ECDHMaskKey.generate()
    answers = ka.mask(kb.mask(ECDHMaskKey.hash_ids(a)))
    signer_points = ka.mask(ECDHMaskKey.hash_ids(b))

    def run():
        kb.mask(ECDHMaskKey.hash_ids(a))
        ecdh_tags(answers)
        return ecdh_tags(kb.mask(signer_points))

    measure(benchmark, run, impl="dtxfast-ecdh", size=n, rounds=_rounds(n), threads=threads, **_note())


@pytest.mark.benchmark(group="psi.requester")
@pytest.mark.parametrize("n", SIZES)
def test_requester_python_twin(benchmark, key, data, n):
    a, _ = data(n)
    sample = a.slice(0, PY_SAMPLE)
    with _twin():
        measure(benchmark, _rsa_requester(key, sample), impl="dtxfast-python", size=n, sample=len(sample),
                rounds=1, threads=1, **_note())


@pytest.mark.benchmark(group="psi.requester")
@pytest.mark.parametrize("n", SIZES)
def test_requester_openmined(benchmark, data, n):
    if om_psi is None:
        pytest.skip("openmined.psi not installed")
    if n > OPENMINED_MAX:
        pytest.skip("openmined.psi at this size takes too long")
    a, b = _sets(n)
    server = om_psi.server.CreateWithNewKey(True)
    client = om_psi.client.CreateWithNewKey(True)
    setup = server.CreateSetupMessage(1e-9, n, b, om_psi.DataStructure.RAW)
    response = server.ProcessRequest(client.CreateRequest(a))

    def run():
        client.CreateRequest(a)
        return client.GetIntersection(setup, response)

    measure(benchmark, run, impl="openmined-psi", size=n, rounds=_rounds(n), threads=1,
            **_note(note="P-256"))


# ---------------------------------------------------------------------------------------------
# psi.total

def _total(key_factory, n: int, data):  # type: ignore[no-untyped-def]
    a, b = data(n)
    key = key_factory()

    def setup():
        return (PSIRequester(a), PSISigner(b, key, cache=SignerTagCache())), {}

    def check(result: list[bytes]) -> None:
        assert len(result) == n // 2

    return setup, check


@pytest.mark.benchmark(group="psi.total")
@pytest.mark.parametrize("threads", thread_variants())
@pytest.mark.parametrize("n", SIZES)
def test_total_dtxfast(benchmark, key, data, n, threads):
    setup, check = _total(lambda: key, n, data)
    check(measure(benchmark, run_two_party, impl="dtxfast", size=n, unit="s", rounds=_rounds(n),
                  setup=setup, threads=threads, **_note(note="cold signer cache")))


@pytest.mark.benchmark(group="psi.total")
@pytest.mark.parametrize("threads", thread_variants())
@pytest.mark.parametrize("n", SIZES)
def test_total_dtxfast_ecdh(benchmark, data, n, threads):
    setup, check = _total(ECDHMaskKey.generate, n, data)
    check(measure(benchmark, run_two_party, impl="dtxfast-ecdh", size=n, unit="s", rounds=_rounds(n),
                  setup=setup, threads=threads, **_note(note="cold signer cache")))


@pytest.mark.benchmark(group="psi.total")
@pytest.mark.parametrize("threads", thread_variants())
@pytest.mark.parametrize("n", SIZES)
def test_total_dtxfast_ot(benchmark, data, n, threads):
    a, b = data(n)

    def setup():
        return (PSIRequester(a, mode="ot"), PSISigner(b, OPRFKey.generate())), {}

    def check(result: list[bytes]) -> None:
        assert len(result) == n // 2

    check(measure(benchmark, run_two_party, impl="dtxfast-ot", size=n, unit="s", rounds=_rounds(n),
                  setup=setup, threads=threads, **_note(note="KKRT16, base OTs included")))


@pytest.mark.benchmark(group="psi.total")
@pytest.mark.parametrize("n", SIZES)
def test_total_python_twin(benchmark, key, data, n):
    if n > PY_TOTAL_MAX:
        pytest.skip("the pure-Python twin at this size takes too long")
    setup, check = _total(lambda: key, n, data)
    with _twin():
        check(measure(benchmark, run_two_party, impl="dtxfast-python", size=n, unit="s", rounds=1,
                      setup=setup, threads=1, **_note(note="cold signer cache")))


@pytest.mark.benchmark(group="psi.total")
@pytest.mark.parametrize("n", SIZES)
def test_total_openmined(benchmark, n):
    if om_psi is None:
        pytest.skip("openmined.psi not installed")
    if n > OPENMINED_MAX:
        pytest.skip("openmined.psi at this size takes too long")
    a, b = _sets(n)

    def run():
        server = om_psi.server.CreateWithNewKey(True)
        client = om_psi.client.CreateWithNewKey(True)
        setup = server.CreateSetupMessage(1e-9, n, b, om_psi.DataStructure.RAW)
        response = server.ProcessRequest(client.CreateRequest(a))
        return client.GetIntersection(setup, response)

    result = measure(benchmark, run, impl="openmined-psi", size=n, unit="s", rounds=_rounds(n), threads=1,
                     **_note(note="P-256"))
    assert len(result) == n // 2


@pytest.mark.benchmark(group="psi.total")
@pytest.mark.parametrize("protocol", ["rr22", "ecdh", "kkrt"])
@pytest.mark.parametrize("n", SIZES)
def test_total_spu(benchmark, n, protocol):
    rounds = min(_rounds(n), 2) if QUICK else _rounds(n)
    out = peer_row(benchmark, SPU_PYTHON, "_spu_psi.py", {"protocol": protocol, "size": n, "rounds": rounds},
                   impl=f"spu-{protocol}", size=n, threads=CORES,
                   ref="dtxfast-ecdh" if protocol == "ecdh" else "dtxfast-ot")
    curve = ", Curve25519" if protocol == "ecdh" else ""
    benchmark.extra_info["note"] = f"SPU {out['spu']} {protocol.upper()}{curve}, CSV in/out"
