"""Batched signature checks for chain verification, here or in a pool of worker processes.

:class:`SignatureChecker` collects ``(height, public key, signature, message)`` quadruples, checks
them in batches with :func:`dtxfast.crypto.signatures.check_signatures` (in this process, or spread
over ``workers`` spawned processes, at most ``2 * workers`` batches in flight), and raises
:class:`~dtxfast.ledger.block.ChainCorrupted` at the lowest height whose signature fails, whatever
the order the workers finish in.

Examples
--------
>>> from dtxfast.crypto.signatures import Ed25519PrivateKey
>>> key = Ed25519PrivateKey.generate()
>>> checker = SignatureChecker(workers=1)
>>> checker.add(1, key.public_key().to_bytes(), key.sign(b"block 1"), b"block 1")
>>> checker.add(2, key.public_key().to_bytes(), key.sign(b"block 2"), b"tampered")
>>> try:
...     checker.drain()
... except ChainCorrupted as exc:
...     exc.height
2
>>> checker.close()
"""

from __future__ import annotations

import collections
from typing import Any

from ..crypto.signatures import check_signatures
from .block import ChainCorrupted

__all__ = ["SignatureChecker"]


def _verify_chunk(keys: list[bytes], sigs: list[bytes], msgs: list[bytes]) -> list[bool]:
    return check_signatures(keys, sigs, msgs)


class SignatureChecker:
    """Checks signatures in batches, here or in worker processes, reporting failures in order.

    Parameters
    ----------
    workers : int
        1 checks in this process; more starts a spawned process pool of that size (call
        :meth:`close` to stop it).
    """

    def __init__(self, workers: int) -> None:
        self.heights: list[int] = []
        self.keys: list[bytes] = []
        self.sigs: list[bytes] = []
        self.msgs: list[bytes] = []
        self.inflight: collections.deque[tuple[list[int], Any]] = collections.deque()
        self.workers = workers
        self.pool: Any = None
        if workers > 1:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            self.pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))

    def add(self, height: int, key: bytes, sig: bytes, msg: bytes) -> None:
        """Queue one signature of the block at ``height``."""
        self.heights.append(height)
        self.keys.append(key)
        self.sigs.append(sig)
        self.msgs.append(msg)

    def pending_count(self) -> int:
        """Signatures queued but not yet submitted."""
        return len(self.heights)

    @staticmethod
    def _check(heights: list[int], ok: list[bool]) -> None:
        for h, good in zip(heights, ok):
            if not good:
                raise ChainCorrupted(h, "a signature does not verify")

    def submit(self) -> None:
        """Check the queued signatures (here) or hand them to a worker (with a pool)."""
        if not self.heights:
            return
        heights, keys, sigs, msgs = self.heights, self.keys, self.sigs, self.msgs
        self.heights, self.keys, self.sigs, self.msgs = [], [], [], []
        if self.pool is None:
            self._check(heights, check_signatures(keys, sigs, msgs))
            return
        self.inflight.append((heights, self.pool.submit(_verify_chunk, keys, sigs, msgs)))
        while len(self.inflight) > 2 * self.workers:  # bound memory; check the oldest first
            done_heights, fut = self.inflight.popleft()
            self._check(done_heights, fut.result())

    def drain(self) -> None:
        """Submit what is queued and wait for every batch; raises at the first bad height."""
        self.submit()
        while self.inflight:
            heights, fut = self.inflight.popleft()
            self._check(heights, fut.result())

    def close(self) -> None:
        """Stop the worker pool, if any."""
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None
