"""Time SecretFlow SPU's CHEETAH on one epoch of the ``vfl`` benchmark's regression (run under SPU's Python).

SPU needs ``numpy < 2``, so it cannot share dtxfast's environment: ``bench_vfl.py`` runs this
script under the interpreter named by ``DTX_BENCH_SPU_PYTHON`` (see :func:`._util.run_peer_script`).
It imports nothing from dtxfast. Usage::

    python _spu_vfl.py '{"model": "linear", "rows": 10240, "d_a": 20, "d_b": 20, "batch": 1024,
                         "alpha": 0.05, "rounds": 1}'

and prints one JSON object: ``{"times": [seconds per epoch, ...], "spu": version, "rows": n,
"max_abs_error": e, "sigmoid": mode}``.

What is timed: SPU's simulator with two parties (one thread each, in-memory link), protocol
CHEETAH (two parties, no dealer and no third party: oblivious transfer and lattice HE for the
products), ring FM64, SPU's default fixed-point and sigmoid settings. Party 0 holds ``X_A``
(``d_a`` columns), party 1 holds ``X_B`` (``d_b`` columns and the intercept column) and the labels;
the data are standardized in plaintext by their owners and secret-shared, and the program compiled,
before the clock starts. The clock covers both parties' run of one epoch of mini-batch gradient
descent on their shares: per batch of ``batch`` consecutive rows the score ``X_A w_A + X_B w_B``,
the residual (``score - y`` for ``linear``; ``sigmoid(score) - y`` for ``logistic``, with the
sigmoid as SPU evaluates ``jax.nn.sigmoid``), the gradient ``X^T d / m`` and the update
``w -= alpha * grad``, everything (weights included) kept secret-shared; not sharing the inputs or
revealing the weights. The script checks the revealed weights against the same epoch in numpy.
"""

from __future__ import annotations

import json
import sys
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import spu
import spu.api as spu_api
import spu.libspu as libspu
import spu.utils.frontend as spu_fe


def _data(n: int, d_a: int, d_b: int, model: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The benchmark's data shape (seeded), standardized by each owner; intercept column on B."""
    rng = np.random.default_rng(7)
    X = rng.normal(size=(n, d_a + d_b)) * rng.uniform(0.5, 3.0, size=d_a + d_b)
    y = X @ rng.normal(size=d_a + d_b) + rng.normal(size=n)
    X = (X - X.mean(0)) / X.std(0)
    if model == "logistic":
        t = (y > np.median(y)).astype(np.float64)
    else:
        t = (y - y.mean()) / y.std()
    xb = np.hstack([X[:, d_a:], np.ones((n, 1))])
    return X[:, :d_a].astype(np.float32), xb.astype(np.float32), t.astype(np.float32)


def _epoch_fn(n: int, batch: int, alpha: float, model: str, xp):  # type: ignore[no-untyped-def]
    """One epoch over consecutive batches, written once for jax (under SPU) and numpy (the check)."""
    sigmoid = jax.nn.sigmoid if xp is jnp else (lambda z: 1.0 / (1.0 + np.exp(-z)))

    def epoch(xa, xb, t, wa, wb):  # type: ignore[no-untyped-def]
        for lo in range(0, n, batch):
            hi = min(lo + batch, n)
            a, b, y = xa[lo:hi], xb[lo:hi], t[lo:hi]
            z = a @ wa + b @ wb
            d = (sigmoid(z) if model == "logistic" else z) - y
            scale = alpha / (hi - lo)
            wa = wa - scale * (a.T @ d)
            wb = wb - scale * (b.T @ d)
        return wa, wb

    return epoch


def main() -> None:
    args = json.loads(sys.argv[1])
    model, n, rounds = args.get("model", "linear"), int(args["rows"]), int(args.get("rounds", 1))
    d_a, d_b, batch, alpha = int(args["d_a"]), int(args["d_b"]), int(args["batch"]), float(args["alpha"])
    if model not in ("linear", "logistic"):
        raise SystemExit(f"unknown model {model!r}")
    config = libspu.RuntimeConfig(protocol=libspu.ProtocolKind.CHEETAH, field=libspu.FieldType.FM64)
    xa, xb, t = _data(n, d_a, d_b, model)
    rng = np.random.default_rng(1)
    wa0 = (rng.normal(size=d_a) * 0.1).astype(np.float32)
    wb0 = (rng.normal(size=d_b + 1) * 0.1).astype(np.float32)
    inputs = [xa, xb, t, wa0, wb0]
    owners = [0, 1, 1, 0, 1]  # who holds each input before it is shared
    names = ["xa", "xb", "t", "wa", "wb"]
    fn = _epoch_fn(n, batch, alpha, model, jnp)
    executable, _ = spu_fe.compile(spu_fe.Kind.JAX, fn, inputs, {}, names,
                                   [libspu.Visibility.VIS_SECRET] * len(inputs), lambda out: ["wa1", "wb1"])
    io = spu_api.Io(2, config)
    shares = [io.make_shares(x, libspu.Visibility.VIS_SECRET, owner_rank=o) for x, o in zip(inputs, owners)]
    desc = libspu.link.Desc()
    for rank in range(2):
        desc.add_party(f"id_{rank}", f"thread_{rank}")

    # Each party keeps one runtime (and link) for all epochs, as a training does: the first epoch
    # (untimed) includes CHEETAH's one-off setup (base OTs, HE keys); the main thread times the
    # following ones between barriers.
    outs: list = [None, None]  # type: ignore[type-arg]
    errors: list = []  # type: ignore[type-arg]
    gate = threading.Barrier(3)

    def party(rank: int) -> None:
        try:
            lctx = libspu.link.create_mem(desc, rank)
            rt = spu_api.Runtime(lctx, config)
            for r in range(rounds + 1):
                for name, sh in zip(names, shares):
                    rt.set_var(name, sh[rank])
                if r:
                    gate.wait()
                rt.run(executable)
                if r:
                    gate.wait()
            outs[rank] = (rt.get_var("wa1"), rt.get_var("wb1"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
            gate.abort()

    threads = [threading.Thread(target=party, args=(r,)) for r in range(2)]
    for th in threads:
        th.start()
    times = []
    try:
        for _ in range(rounds):
            gate.wait()
            t0 = time.perf_counter()
            gate.wait()
            times.append(time.perf_counter() - t0)
    except threading.BrokenBarrierError:
        pass
    for th in threads:
        th.join()
    if errors:
        raise errors[0]
    got = np.concatenate([np.asarray(io.reconstruct([o[k] for o in outs]), dtype=np.float64) for k in (0, 1)])
    want = np.concatenate(_epoch_fn(n, batch, alpha, model, np)(*(np.asarray(x, np.float64) for x in inputs)))
    err = float(np.max(np.abs(got - want)))
    if not err < 0.05 * max(1.0, float(np.max(np.abs(want)))):  # SPU did not compute the epoch
        raise SystemExit(f"SPU's weights differ from numpy's by {err}")
    print(json.dumps({"times": times, "spu": getattr(spu, "__version__", "?"), "rows": n, "max_abs_error": err,
                      "sigmoid": str(config.sigmoid_mode).rsplit(".", 1)[-1]}))


if __name__ == "__main__":
    main()
