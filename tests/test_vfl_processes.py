"""Two-party VFL training with one party per OS process over the networked (mutual-TLS) channel."""

from __future__ import annotations

import numpy as np
from transport_helpers import run_ledger_parties

NAMES = ["feature", "label"]


def _party(index: int, name: str, ch, data) -> list:
    from dtxfast.crypto.paillier import generate_keypair
    from dtxfast.protocols.vfl import TrainingConfig, feature_party, label_party
    from dtxfast.vfl.runner import run_party

    XA, XB, y = data
    cfg = TrainingConfig(alpha=0.2, max_epochs=4, batch_size=16, amplitude=1e-12)  # secret-shared mode
    keypair = generate_keypair(1024)
    party = feature_party(XA, cfg, keypair=keypair) if index == 0 else label_party(XB, y, cfg, keypair=keypair)
    run_party(party, ch, NAMES[1 - index], timeout=120)
    assert party.done
    return [list(party.weights), list(party.history), ch.bytes_sent]


def test_linear_regression_across_two_processes_matches_the_reference(tmp_path) -> None:
    from dtxfast.ledger import SQLiteLedger
    from dtxfast.protocols.vfl import TrainingConfig, plain_train_glm

    path = str(tmp_path / "ledger.db")
    SQLiteLedger(path, create=True).close()
    rng = np.random.default_rng(5)
    XA, XB = rng.normal(size=(30, 2)), rng.normal(size=(30, 2))
    y = XA @ [1.0, -1.0] + XB @ [0.5, 2.0]
    got = run_ledger_parties(path, _party, NAMES, [(XA, XB, y)] * 2)
    cfg = TrainingConfig(alpha=0.2, max_epochs=4, batch_size=16, amplitude=1e-12)
    wa, wb, hist = plain_train_glm(XA, XB, y, cfg)
    np.testing.assert_allclose(got[0][0], wa, atol=2e-5)  # 24-bit fixed-point shares
    np.testing.assert_allclose(got[1][0], wb, atol=2e-5)
    assert got[0][1] == got[1][1]  # both parties saw the same (epoch) losses
    np.testing.assert_allclose(got[1][1], hist, atol=1e-5)
    assert got[0][2] > 0 and got[1][2] > 0
