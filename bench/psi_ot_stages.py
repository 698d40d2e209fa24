"""Per-stage wall times of one OT-mode PSI run (KKRT16), both parties in this process, in turn.

Not a pytest benchmark: a breakdown for the notes behind ``psi.total``'s ``dtxfast-ot`` rows (same
ids: requester ``user-%08d`` 0..n-1, signer n/2..3n/2-1). Usage::

    python bench/psi_ot_stages.py 100000 [threads]

Stages: the signer's HELLO (its base-OT point), the requester's SETUP (id hashing, cuckoo table,
128 base-OT receiver points), the signer's base-OT keys and IKNP matrix, the requester's IKNP,
the requester's KKRT rows U and own OPRF values, the signer's rows Q, the signer's id hashing and
OPRF values (3 per id) and shuffle, and the requester's match. Message encoding and decoding are
inside the stage that makes or takes the messages.
"""

from __future__ import annotations

import sys
import time

import dtxfast
from dtxfast.crypto.blind_rsa import IdBatch
from dtxfast.crypto.ot import OPRFKey
from dtxfast.protocols.psi import PSIRequester, PSISigner


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    if len(sys.argv) > 2:
        dtxfast.set_num_threads(int(sys.argv[2]))
    a = IdBatch.from_strings([f"user-{i:08d}" for i in range(n)])
    b = IdBatch.from_strings([f"user-{i:08d}" for i in range(n // 2, n + n // 2)])
    stages: list[tuple[str, float]] = []
    clock = time.perf_counter()

    def stage(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        stages.append((name, now - clock))
        clock = now

    start = clock
    r, s = PSIRequester(a, mode="ot"), PSISigner(b, OPRFKey.generate())
    r.receive(s.hello())
    s.receive(r.hello())
    stage("handshake (signer's base-OT point)")
    setup = r.setup_message()
    stage("requester: hash ids, cuckoo, base-OT points")
    ext = s.receive(setup)
    assert ext is not None
    stage("signer: base-OT keys, IKNP matrix")
    r.receive(ext)
    stage("requester: IKNP")
    msgs = list(r.requests())
    stage("requester: KKRT rows U, own values")
    for m in msgs:
        s.receive(m)
    stage("signer: KKRT rows Q")
    vals = list(s.signer_messages())
    stage("signer: hash ids, 3 OPRF values each, shuffle")
    for m in vals:
        r.receive(m)
    stage("requester: match")
    assert len(r.intersection()) == n // 2
    total = time.perf_counter() - start
    print(f"n = {n}, threads = {dtxfast.num_threads()}, {len(msgs)} U messages, {len(vals)} value messages")
    for name, dt in stages:
        print(f"  {name:48s} {dt:8.3f} s  {dt / n * 1e6:8.2f} us/id")
    print(f"  {'total':48s} {total:8.3f} s  {total / n * 1e6:8.2f} us/id")


if __name__ == "__main__":
    main()
