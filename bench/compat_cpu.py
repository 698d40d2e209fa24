"""CPU time of the ``paillier.compat`` scripts on one thread, for a machine other work keeps busy.

``dtx bench paillier -k compat`` times wall clock, which a loaded machine inflates unevenly (a
waiting thread counts); on one thread the process's CPU time (``time.process_time``) is nearly
unaffected. This runs the benchmark's own scripts (``bench_paillier._per_number_script``,
``_batch_script``, ``_vector_script``) on the same data with one kernel thread and prints one JSON
object in the ``dtx bench --json`` shape, unit ``us/elem-cpu``.

Run from the repository root: ``python -m bench.compat_cpu [--no-phe] [--repeat K]``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import dtxfast
from dtxfast.crypto.paillier import generate_keypair

from .bench_paillier import BITS, N_COMPAT, _batch_script, _compat_keys, _per_number_script, _vector_script

__all__ = ["main"]


def _cpu_us(fn: Callable[[], Any], repeat: int) -> float:
    fn()  # warm-up (a fresh DJN key builds its table here, as in the benchmark's warm-up)
    best = float("inf")
    for _ in range(repeat):
        t = time.process_time()
        fn()
        best = min(best, time.process_time() - t)
    return best * 1e6 / N_COMPAT


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-phe", action="store_true", help="leave out python-paillier's row (~3 s)")
    ap.add_argument("--repeat", type=int, default=3, help="timed calls per row (the best counts)")
    args = ap.parse_args(argv)
    pk, sk = generate_keypair(BITS)
    pk.encrypt([0])
    rng = np.random.default_rng(20261130)  # the benchmark's compat_data
    d = {k: rng.normal(0, s, N_COMPAT).tolist() for k, s in (("x", 100), ("y", 100), ("k", 1))}
    xs, ys, ks = d["x"], d["y"], d["k"]
    rows = []

    def row(group: str, impl: str, fn: Callable[[], Any], repeat: int) -> None:
        rows.append({"group": group, "impl": impl, "size": N_COMPAT, "unit": "us/elem-cpu",
                     "value": round(_cpu_us(fn, repeat), 1), "threads": 1})

    dtxfast.set_num_threads(1)
    try:
        if not args.no_phe:
            import phe

            ppk = phe.PaillierPublicKey(pk.n)
            psk = phe.PaillierPrivateKey(ppk, sk.p, sk.q)
            row("paillier.compat", "phe", lambda: _per_number_script(ppk, psk, xs, ys, ks), 1)
        for impl, obf in (("dtxfast", "djn"), ("dtxfast-standard", "standard")):
            ck = _compat_keys((pk, sk), obf)
            row("paillier.compat", impl, lambda: _per_number_script(*ck, xs, ys, ks), args.repeat)
            row("paillier.compat.batch", impl, lambda: _batch_script(*ck, xs, ys, ks), args.repeat)
        row("paillier.compat.batch", "dtxfast-vector", lambda: _vector_script(pk, sk, xs, ys, ks), args.repeat)
    finally:
        dtxfast.set_num_threads(None)
    out = {"area": "paillier", "bits": BITS, "cores": os.cpu_count(), "clock": "process_time",
           "load": os.getloadavg()[0], "rows": rows}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
