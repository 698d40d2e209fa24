"""The MPC party programs run one party per OS process over any Channel (here: multiprocessing queues)."""

from __future__ import annotations

import multiprocessing as mp
import queue
from typing import Any

import numpy as np

from dtxfast.errors import ProtocolError
from dtxfast.protocols.channel import BytesLike, Channel

NAMES = ["P0", "P1", "P2"]


class QueueChannel(Channel):
    """A minimal cross-process Channel: one multiprocessing queue per ordered pair of parties."""

    def __init__(self, name: str, queues: dict[tuple[str, str], Any]) -> None:
        self.name = name
        self._q = queues
        self._sent = 0
        self._received = 0
        self._peeked: dict[str, list[bytes]] = {}

    def send(self, peer: str, data: BytesLike) -> None:
        payload = bytes(data)
        self._sent += len(payload)
        self._q[(self.name, peer)].put(payload)

    def recv(self, peer: str, timeout: float | None = None) -> bytes:
        if self._peeked.get(peer):
            payload = self._peeked[peer].pop(0)
        else:
            try:
                payload = self._q[(peer, self.name)].get(timeout=timeout)
            except queue.Empty:
                raise ProtocolError(f"{self.name}: nothing from {peer}") from None
        self._received += len(payload)
        return payload

    def poll(self, peer: str) -> bool:
        if self._peeked.get(peer):
            return True
        try:
            self._peeked.setdefault(peer, []).append(self._q[(peer, self.name)].get_nowait())
            return True
        except queue.Empty:
            return False

    @property
    def bytes_sent(self) -> int:
        return self._sent

    @property
    def bytes_received(self) -> int:
        return self._received


def _party_main(index: int, queues: dict, x: np.ndarray, y: np.ndarray, results: Any) -> None:
    from dtxfast.protocols.mpc import MPCParty, decode, encode, run_blocking

    ch = QueueChannel(NAMES[index], queues)
    p = MPCParty(index, ch, NAMES)

    def program():
        yield from p.setup()
        sx = yield from p.share_input(0, encode(x) if index == 0 else None, x.shape)
        sy = yield from p.share_input(1, encode(y) if index == 1 else None, y.shape)
        z = yield from p.matmul(sx, sy)
        r, _ = yield from p.relu(z)
        return (yield from p.reveal(r, to=2))

    out = run_blocking(program(), ch, timeout=120)
    results.put((index, None if out is None else decode(out), ch.bytes_sent))


def test_three_processes_compute_relu_of_a_product() -> None:
    ctx = mp.get_context("spawn")
    queues = {(a, b): ctx.Queue() for a in NAMES for b in NAMES if a != b}
    results = ctx.Queue()
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(5, 4)), rng.normal(size=(4, 3))
    procs = [ctx.Process(target=_party_main, args=(i, queues, x, y, results)) for i in range(3)]
    for pr in procs:
        pr.start()
    try:
        got = {i: (out, sent) for i, out, sent in (results.get(timeout=180) for _ in range(3))}
    finally:
        for pr in procs:
            pr.join(timeout=30)
            if pr.is_alive():
                pr.kill()
    assert got[0][0] is None and got[1][0] is None
    assert np.allclose(got[2][0], np.maximum(x @ y, 0), atol=1e-3)
    assert all(sent > 0 for _, sent in got.values())
