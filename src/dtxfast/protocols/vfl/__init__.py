"""Two-party vertical federated linear and logistic regression under Paillier (L2 state machines).

Two parties hold different feature columns of the same PSI-aligned rows: the *feature party* A
(features ``X_A``) and the *label party* B (features ``X_B`` and the labels ``y``; it also owns the
intercept). There is no third party: each has its own Paillier key pair. Each party standardizes
its own columns with its own statistics; B standardizes ``y`` (linear) or maps it to
``t = 1{y = positive}`` (logistic, trained with the Taylor expansion ``sigmoid(z) ~ 1/2 + z/4``).
Both parties are lockstep state machines: :meth:`hello` gives the first message, then each call
``receive(peer_message)`` returns the next message (``None`` when training is over), so the same
code runs in one process (:mod:`dtxfast.vfl.runner`), across processes over a channel, or in a node.

Two modes (``TrainingConfig.mode``; :func:`feature_party` / :func:`label_party` pick the class):

``"ss"`` (default) - :class:`SharedFeatureParty`, :class:`SharedLabelParty`
    The weights, scores, residuals and gradients exist only as additive shares between the two
    parties (FATE SSHE-LR / CAESAR style); see :mod:`dtxfast.protocols.vfl.shared` for the
    messages. About 1.8-2x the cost of fast mode (``dtx bench vfl``; 15 masked scores per
    ciphertext at 2048-bit keys).
``"fast"`` - :class:`FeatureParty`, :class:`LabelParty`
    Each party holds its own weights in the clear. Per batch: each sends its own residual term
    under its own key (``PARTIAL``); each computes the *other's* gradient-to-be
    ``[[X^T d]]_peer`` with one Pippenger multi-exponentiation, adds a uniform mask mod n and
    re-randomizes it with statistically hiding randomness (``MASKED``); each decrypts the peer's
    masked vector and returns the residues (``UNMASKED``); the asker removes its mask and updates
    its weights. With ``amplitude > 0`` a masked loss term rides along and one ``LOSS`` round per
    epoch reveals the epoch's loss to both.

What each party learns (besides public shapes, keys, configuration and the batch order)
---------------------------------------------------------------------------------------
======================  ==========================================  ==========================================
                        feature party A                             label party B
======================  ==========================================  ==========================================
``ss``, during training nothing: every value it decrypts is         nothing: every value it decrypts is
                        masked (statistically, 2^-64 per value);    masked; the rest is under A's key
                        the rest is under B's key
``ss``, at the end      its own weights ``w_A``                     its own weights ``w_B`` (with intercept)
``ss``, loss            the epoch losses, only if ``amplitude > 0``  the same
``fast``, per batch     its own gradient ``X_A^T d`` (so its        its own gradient ``X_B^T d`` (so its
                        weights after every step): a linear         weights after every step)
                        function of the residuals, hence of the
                        labels. Refused: batches no larger than
                        either party's column count (the
                        residuals would be solvable); the first
                        residual is not ``-t`` (random private
                        initial weights). Not closed: over many
                        batches the gradients still carry
                        information on ``t`` (``X_A^T t`` blurred
                        by B's random initial partial scores)
``fast``, loss          the epoch losses, only if ``amplitude > 0``  the same (the per-batch loss term of A is
                                                                    masked: no per-batch quadratic in A's
                                                                    partial scores)
``fast``, exponents     a public constant (64 fractional bits for   the same
                        residuals, 20 for features), never the
                        magnitude of a batch
======================  ==========================================  ==========================================

Both modes re-randomize every ciphertext the key holder will decrypt with a DJN exponent of
``n_bits + 128`` bits (statistically hiding even to the holder of ``p, q``; measured 2.7x the
cost of a short DJN obfuscator and ~100x cheaper than a full-length ``r^n`` with ``mpz_powm_sec``).
Semi-honest parties are assumed, as in PaddleDTX and FATE.

Prediction (``PREDICT``, A->B): A sends its partial scores ``X_A w_A`` of the rows to predict; B
adds ``X_B w_B + b`` and de-standardizes (linear) or applies the sigmoid and the threshold
(logistic). B learns the scores of the rows it predicts: the output it asked for
(``z_A = z - z_B``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import ParameterError
from ._messages import MsgType, VFLMessage
from .config import DEFAULT_BATCH_SIZE, Standardizer, TrainingConfig, batch_schedule
from .model import ModelPart
from .prediction import FeaturePredictor, LabelPredictor, Prediction, finish_prediction
from .shared import SharedFeatureParty, SharedLabelParty
from .training import FeatureParty, LabelEncoding, LabelParty, encode_labels, plain_train_glm


def feature_party(X: Any, config: TrainingConfig, **kwargs: Any) -> FeatureParty | SharedFeatureParty:
    """The feature party of ``config.mode``: :class:`SharedFeatureParty` (``"ss"``) or :class:`FeatureParty`.

    Raises :class:`~dtxfast.errors.ParameterError` when ``X`` has no feature column (the feature
    party brings features; only the label party may bring the label alone)."""
    shape = np.shape(X)
    if len(shape) != 2 or shape[1] < 1:
        raise ParameterError(f"the feature party needs a 2-D array with a feature column at least, not shape {shape}")
    if config.mode == "ss":
        return SharedFeatureParty(X, config, **kwargs)
    return FeatureParty(X, config, **kwargs)


def label_party(X: Any, y: Any, config: TrainingConfig, **kwargs: Any) -> LabelParty | SharedLabelParty:
    """The label party of ``config.mode``: :class:`SharedLabelParty` (``"ss"``) or :class:`LabelParty`."""
    if config.mode == "ss":
        return SharedLabelParty(X, y, config, **kwargs)
    return LabelParty(X, y, config, **kwargs)

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "FeatureParty",
    "FeaturePredictor",
    "LabelEncoding",
    "LabelParty",
    "LabelPredictor",
    "ModelPart",
    "SharedFeatureParty",
    "SharedLabelParty",
    "MsgType",
    "Prediction",
    "Standardizer",
    "TrainingConfig",
    "VFLMessage",
    "batch_schedule",
    "encode_labels",
    "feature_party",
    "finish_prediction",
    "label_party",
    "plain_train_glm",
]
