"""Type stub of the compiled ring-matmul kernel (ext/_ring.pyx); see dtxfast.protocols.mpc._ring_ref."""

from typing import Any

SIMD_FALLBACK: str
KC: int

def simd_available() -> bool: ...
def matmul_sum(xs: list[Any], ys: list[Any], y2s: list[Any], out: Any, nthreads: int = ...) -> None: ...
