"""Shared helpers of the benchmark suite.

Every benchmark records what the ``dtx bench`` table and JSON need in ``extra_info``:
``impl`` (stable names: ``dtxfast``, ``dtxfast-python``, a peer's package name, ``floor-<what>``),
``size``, ``unit`` and ``per`` (elements handled by one timed call).
"""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

__all__ = ["QUICK", "sizes", "measure"]

QUICK = os.environ.get("DTX_BENCH_QUICK", "") not in ("", "0")


def sizes(full: Sequence[int], quick: Sequence[int]) -> list[int]:
    """The sizes to run: ``quick`` under ``--quick``, else ``full``."""
    return list(quick if QUICK else full)


def measure(
    benchmark: Any,
    fn: Callable[..., Any],
    *,
    impl: str,
    size: int,
    unit: str = "us/elem",
    per: int | None = None,
    rounds: int = 3,
    setup: Callable[[], tuple[tuple[Any, ...], dict[str, Any]]] | None = None,
    **extra: Any,
) -> Any:
    """Time ``fn`` with a fixed number of rounds (one call each) and record its metadata."""
    benchmark.extra_info.update(impl=impl, size=size, unit=unit, per=per or size, **extra)
    if QUICK:
        rounds = min(rounds, 2)
    if setup is not None:
        return benchmark.pedantic(fn, setup=setup, rounds=rounds, iterations=1, warmup_rounds=0)
    return benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=1 if rounds > 1 else 0)
