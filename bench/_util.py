"""Shared helpers of the benchmark suite: every row says what ran, on how many threads.

Every benchmark records what the ``dtx bench`` table and JSON need in ``extra_info`` through
:func:`measure`: ``impl`` (stable names: ``dtxfast`` and ``dtxfast-<variant>``, ``dtxfast-python``
for the pure-Python twin, a peer's package name, ``floor-<what>`` for the true minimum work of the
operation, ``naive-<what>`` for a straightforward baseline that is not a floor), ``size``,
``unit``, ``per`` (elements one timed call handles) and ``threads``.

Fair by construction:

* ``threads`` is recorded on every row. A dtxfast row runs its timed calls with the library's
  thread setting *set to* ``threads`` (default: all cores), so the number is what ran; every other
  row must say how many threads it uses.
* A peer that cannot run the full ``size`` runs a ``sample`` of it: the row keeps dtxfast's
  ``size`` (the work being compared) and records ``sample`` (what one timed call handled), and the
  per-element value is over the sample.
* ``ref`` names the dtxfast row that does the same work as this row (default ``dtxfast``; e.g.
  ``dtxfast-standard`` for python-paillier's full-length ``r^n`` encryption). ``dtx bench`` takes
  ratios against the ``ref`` row at the same ``threads``, and beside it against the ``ref`` row on
  all cores.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable, Sequence

import dtxfast

__all__ = ["CORES", "QUICK", "SMOKE", "SPU_PYTHON", "THREAD_FREE_UNITS", "blas_threads", "is_dtxfast", "measure",
           "peer_row", "run_peer_script", "sizes", "thread_variants"]

#: environment variable naming the Python interpreter of a separate venv with SecretFlow SPU
#: (``pip install spu``; SPU pins ``numpy < 2``, so it cannot share dtxfast's environment)
SPU_PYTHON = "DTX_BENCH_SPU_PYTHON"

#: ``--quick``: the smallest sizes, at most two rounds
QUICK = os.environ.get("DTX_BENCH_QUICK", "") not in ("", "0")
#: a smoke run of ``--quick`` (the test of the row convention): only the first quick size, one round;
#: every group and every row still runs, the numbers mean nothing
SMOKE = QUICK and os.environ.get("DTX_BENCH_SMOKE", "") not in ("", "0")
CORES = dtxfast.num_threads()
#: units of recorded values that do not depend on threads (bytes on the wire)
THREAD_FREE_UNITS = ("bytes/sample", "MiB/party")


def sizes(full: Sequence[int], quick: Sequence[int]) -> list[int]:
    """The sizes to run: ``quick`` under ``--quick`` (its first one in a smoke run), else ``full``."""
    if SMOKE:
        return list(quick[:1])
    return list(quick if QUICK else full)


def thread_variants() -> list[int]:
    """Thread counts of dtxfast rows: all cores, and 1 (when there is more than one core)."""
    return [CORES, 1] if CORES > 1 else [1]


@contextlib.contextmanager
def blas_threads(n: int) -> Iterator[None]:
    """Run numpy's BLAS (and OpenMP) on ``n`` threads inside the block (threadpoolctl)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=n):
        yield


def is_dtxfast(impl: str) -> bool:
    """True for dtxfast's compiled rows (``dtxfast``, ``dtxfast-<variant>``), not the Python twin."""
    return (impl == "dtxfast" or impl.startswith("dtxfast-")) and impl != "dtxfast-python"


def measure(
    benchmark: Any,
    fn: Callable[..., Any],
    *,
    impl: str,
    size: int,
    threads: int | None = None,
    unit: str = "us/elem",
    per: int | None = None,
    sample: int | None = None,
    ref: str | None = None,
    rounds: int = 3,
    setup: Callable[[], tuple[tuple[Any, ...], dict[str, Any]]] | None = None,
    **extra: Any,
) -> Any:
    """Time ``fn`` with a fixed number of rounds (one call each) and record its metadata.

    Parameters
    ----------
    impl, size, unit
        The row's implementation name, problem size and unit.
    threads : int, optional
        Threads the timed calls use. Required unless ``impl`` is one of dtxfast's compiled rows
        (default: all cores) or ``unit`` is thread-free; for dtxfast rows the library's thread
        setting is set to it around every timed call.
    per : int, optional
        Elements one timed call handles (default ``size``).
    sample : int, optional
        A peer too slow for ``size`` elements runs ``sample`` of them: ``per`` becomes ``sample``
        and the row is marked.
    ref : str, optional
        The dtxfast row doing the same work (default ``dtxfast``).
    """
    if threads is None:
        if is_dtxfast(impl) or unit in THREAD_FREE_UNITS:
            threads = CORES
        else:
            raise TypeError(f"measure(impl={impl!r}): say threads= (how many threads this row uses)")
    if sample is not None:
        if sample > size:
            raise ValueError(f"sample={sample} is larger than size={size}")
        per = sample
        if sample < size:
            extra["sample"] = sample
    if ref is not None:
        extra["ref"] = ref
    benchmark.extra_info.update(impl=impl, size=size, unit=unit, per=per or size, threads=threads, **extra)
    if QUICK:
        rounds = min(rounds, 2)
    if SMOKE:
        rounds = 1
    if is_dtxfast(impl) or impl == "dtxfast-python":
        inner = fn

        def fn(*args: Any, **kwargs: Any) -> Any:
            dtxfast.set_num_threads(threads)
            try:
                return inner(*args, **kwargs)
            finally:
                dtxfast.set_num_threads(None)

    if setup is not None:
        return benchmark.pedantic(fn, setup=setup, rounds=rounds, iterations=1, warmup_rounds=0)
    return benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=1 if rounds > 1 else 0)


def run_peer_script(env_var: str, script: str, args: dict[str, Any], *, timeout: float = 3600) -> dict[str, Any]:
    """Run ``bench/<script>`` under the interpreter named by ``$env_var``; return its JSON output.

    For peers that cannot be installed beside dtxfast (SPU pins ``numpy < 2``). The script gets
    ``args`` as one JSON argument and prints one JSON object on its last stdout line. When the
    variable is unset the calling benchmark is skipped, so its rows are omitted, with a note that
    ``dtx bench`` prints under the table.
    """
    import pytest

    python = os.environ.get(env_var, "").strip()
    if not python:
        pytest.skip(f"{env_var} is not set: point it at a Python with the peer installed to get these rows")
    if not Path(python).exists():
        pytest.fail(f"{env_var}={python}: no such interpreter")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    proc = subprocess.run([python, str(Path(__file__).with_name(script)), json.dumps(args)], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=str(Path(__file__).parent))
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        pytest.fail(f"{script} under {env_var} failed: {tail[0]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def peer_row(benchmark: Any, env_var: str, script: str, args: dict[str, Any], *, impl: str, size: int,
             threads: int, unit: str = "s", per: int = 1, **extra: Any) -> dict[str, Any]:
    """Record one row for a peer timed out of process by :func:`run_peer_script`.

    The script reports seconds per timed run in ``times``; the row's value is their median
    (``unit="s"``) or the median per element (``"us/elem"``, over ``per``). Returns the script's
    output (for notes such as the peer's version).
    """
    out = run_peer_script(env_var, script, args)
    median = statistics.median(out["times"])
    value = median if unit == "s" else median / per * 1e6
    measure(benchmark, lambda: None, impl=impl, size=size, threads=threads, unit=unit, per=per, rounds=1,
            value=value, **extra)
    return out
