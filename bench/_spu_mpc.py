"""Time SecretFlow SPU's ABY3 on the ``mpc`` benchmark's operations (run under SPU's own Python).

SPU needs ``numpy < 2``, so it cannot share dtxfast's environment: ``bench_mpc.py`` runs this
script under the interpreter named by ``DTX_BENCH_SPU_PYTHON`` (see :func:`._util.run_peer`).
It imports nothing from dtxfast. Usage::

    python _spu_mpc.py '{"op": "matmul", "size": 1000, "rounds": 3, "frac_bits": 16}'

and prints one JSON object: ``{"times": [seconds per run, ...], "spu": version, "note": ...}``.

What is timed: SPU's simulator with three parties (one thread each, in-memory links), protocol
ABY3, ring FM64, ``frac_bits`` fractional bits; the inputs are secret-shared and the program
compiled before the clock starts; the clock covers the three parties' run of the program on
their shares (with the truncation of the fixed-point product), not sharing or reconstructing,
as the dtxfast rows do. ``matmul``: ``x @ y`` of two ``size x size`` matrices; ``relu``:
``maximum(x, 0)`` on ``size`` values.
"""

from __future__ import annotations

import json
import sys
import time

import jax.numpy as jnp
import numpy as np
import spu
import spu.api as spu_api
import spu.libspu as libspu
import spu.utils.frontend as spu_fe
from _spu_parties import link_desc, run_parties


def _program(op: str):  # type: ignore[no-untyped-def]
    if op == "matmul":
        return (lambda x, y: jnp.matmul(x, y)), 2
    if op == "relu":
        return (lambda x: jnp.maximum(x, 0.0)), 1
    raise SystemExit(f"unknown op {op!r}")


def main() -> None:
    args = json.loads(sys.argv[1])
    op, size, rounds = args["op"], int(args["size"]), int(args.get("rounds", 3))
    config = libspu.RuntimeConfig(protocol=libspu.ProtocolKind.ABY3, field=libspu.FieldType.FM64)
    config.fxp_fraction_bits = int(args.get("frac_bits", 16))
    fn, arity = _program(op)
    rng = np.random.default_rng(0)
    shape = (size, size) if op == "matmul" else (size,)
    inputs = [rng.normal(size=shape).astype(np.float32) for _ in range(arity)]
    names = [f"in{i}" for i in range(arity)]
    executable, _ = spu_fe.compile(spu_fe.Kind.JAX, fn, inputs, {}, names,
                                   [libspu.Visibility.VIS_SECRET] * arity, lambda out: ["out0"])
    io = spu_api.Io(3, config)
    shares = [io.make_shares(x, libspu.Visibility.VIS_SECRET) for x in inputs]
    desc = link_desc(3)

    def party(rank: int):  # type: ignore[no-untyped-def]
        rt = spu_api.Runtime(libspu.link.create_mem(desc, rank), config)
        for name, sh in zip(names, shares):
            rt.set_var(name, sh[rank])
        rt.run(executable)
        return rt.get_var("out0")

    def run_once() -> list:  # type: ignore[type-arg]
        return run_parties(3, party)

    outs = run_once()  # warm-up, and a check that SPU computed the right thing
    got = io.reconstruct(outs)
    want = inputs[0] @ inputs[1] if op == "matmul" else np.maximum(inputs[0], 0)
    err = float(np.max(np.abs(np.asarray(got, dtype=np.float64) - want)))
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        run_once()
        times.append(time.perf_counter() - t0)
    print(json.dumps({"times": times, "spu": spu.version.__version__ if hasattr(spu, "version") else "?",
                      "max_abs_error": err}))


if __name__ == "__main__":
    main()
