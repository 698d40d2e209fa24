"""Run SecretFlow SPU parties as threads of one process (imported by the ``_spu_*.py`` scripts).

The scripts run under SPU's own interpreter (``DTX_BENCH_SPU_PYTHON``), by path, so this module
is imported as a sibling file and imports nothing from dtxfast.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

import spu.libspu as libspu

T = TypeVar("T")

__all__ = ["link_desc", "run_parties"]


def link_desc(parties: int) -> libspu.link.Desc:
    """An in-memory link description for ``parties`` parties named ``id_0``, ``id_1``, ..."""
    desc = libspu.link.Desc()
    for rank in range(parties):
        desc.add_party(f"id_{rank}", f"thread_{rank}")
    return desc


def run_parties(parties: int, party: Callable[[int], T]) -> list[T]:
    """Run ``party(rank)`` for every rank in its own thread; the results by rank.

    The first exception raised by a party is raised again here, after every thread has ended.
    """
    outs: list = [None] * parties  # type: ignore[type-arg]
    errors: list[BaseException] = []

    def run(rank: int) -> None:
        try:
            outs[rank] = party(rank)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(r,)) for r in range(parties)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return outs
