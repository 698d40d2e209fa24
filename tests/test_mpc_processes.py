"""The MPC party programs run one party per OS process over the networked channel.

Three processes, each a node registered on a shared SQLite ledger, talk over mutual TLS bound to
those registered keys (:mod:`dtxfast.transport.tls`): the three-party setup seeds and every share
cross real sockets, encrypted.
"""

from __future__ import annotations

import numpy as np
from transport_helpers import run_ledger_parties

NAMES = ["P0", "P1", "P2"]


def _party(index: int, name: str, ch, xy) -> tuple:
    from dtxfast.protocols.mpc import MPCParty, decode, encode, run_blocking

    x, y = xy
    p = MPCParty(index, ch, NAMES)

    def program():
        yield from p.setup()
        sx = yield from p.share_input(0, encode(x) if index == 0 else None, x.shape)
        sy = yield from p.share_input(1, encode(y) if index == 1 else None, y.shape)
        z = yield from p.matmul(sx, sy)
        r, _ = yield from p.relu(z)
        return (yield from p.reveal(r, to=2))

    out = run_blocking(program(), ch, timeout=120)
    return (None if out is None else decode(out), ch.bytes_sent)


def test_three_processes_compute_relu_of_a_product_over_tls(tmp_path) -> None:
    from dtxfast.ledger import SQLiteLedger

    path = str(tmp_path / "ledger.db")
    SQLiteLedger(path, create=True).close()
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(5, 4)), rng.normal(size=(4, 3))
    got = run_ledger_parties(path, _party, NAMES, [(x, y)] * 3)
    assert got[0][0] is None and got[1][0] is None
    assert np.allclose(got[2][0], np.maximum(x @ y, 0), atol=1e-3)
    assert all(sent > 0 for _, sent in got.values())
    led = SQLiteLedger(path)
    assert {n.role for n in led.list_nodes()} == {"executor"} and len(led.list_nodes()) == 3
    led.verify_chain()
    led.close()
