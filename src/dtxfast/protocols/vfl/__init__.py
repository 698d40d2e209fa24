"""Two-party vertical federated linear and logistic regression under Paillier (L2 state machines).

Two parties hold different feature columns of the same PSI-aligned rows: the *feature party* A
(features ``X_A``) and the *label party* B (features ``X_B`` and the labels ``y``; it also owns the
intercept). There is no third party: each has its own Paillier key pair ``(pk_A, sk_A)``,
``(pk_B, sk_B)``. ``[[v]]_A`` is ``v`` encrypted under ``pk_A``. Each party standardizes its own
columns with its own statistics; B standardizes ``y`` (linear) or maps it to ``t = 1{y = positive}``
(logistic). Both parties are lockstep state machines: :meth:`hello` gives the first message, then
each call ``receive(peer_message)`` returns the next message (``None`` when training is over). In
every round each party sends exactly one message, so the same code runs in one process
(:mod:`dtxfast.vfl.runner`), across processes over a :class:`~dtxfast.protocols.channel.Channel`,
or inside a node.

Notation for one batch of ``m`` rows: ``u_A = X_A w_A``, ``u_B = X_B w_B + b``, ``z = u_A + u_B``.
Linear: residual ``d = z - t`` (so ``a = 1``); logistic with the Taylor expansion
``sigmoid(z) ~ 1/2 + z/4``: ``d = z/4 + 1/2 - t`` (``a = 1/4``). Each party's *own term* is
``o_A = a u_A`` and ``o_B = a u_B + (-t or 1/2 - t)``, so ``d = o_A + o_B``.

Messages of one epoch (per batch; the first epoch is preceded by HELLO)
-----------------------------------------------------------------------
0. ``HELLO`` (A->B and B->A, once): own public key, row count, weight count, SHA-256 of the
   training configuration. Learned: the peer's public key and its number of columns.
1. ``PARTIAL`` A->B: ``[[o_A]]_A`` (m ciphertexts under A's own key); B->A: ``[[o_B]]_B``
   (m ciphertexts under B's own key). Receivers learn nothing: they cannot decrypt.
2. ``MASKED`` A->B: ``[[X_A^T d + R_A]]_B`` (d_A ciphertexts, computed as ``X_A^T @ ([[o_B]]_B + o_A)``
   with one Pippenger multi-exponentiation) and one more ciphertext ``[[S_A]]_B`` with
   ``S_A = u_A . d - (a/2) |u_A|^2 + m reg(w_A)``; B->A: ``[[X_B^T d + R_B]]_A`` (d_B + 1
   ciphertexts, the intercept included). ``R_A`` (resp. ``R_B``) is drawn fresh and uniformly in
   ``Z_n`` of the decrypting party's modulus by the party that asked for the decryption, for every
   element and every batch, and the sum is taken *under encryption* before anything is revealed.
   All ciphertexts are re-randomized before they leave.
3. ``UNMASKED`` A->B: the residues ``X_B^T d + R_B mod n_A`` (decrypted by A); B->A: the residues
   ``X_A^T d + R_A mod n_B`` and the batch loss ``L = (S_A + S_B) / m + reg(w_B)``. Each residue is
   uniform in ``Z_n`` to the decrypting party (a one-time pad over ``Z_n``), so A learns nothing of
   B's gradient and B nothing of A's. The asking party subtracts its mask and divides by ``m``.
   Then both update their own weights: ``w <- w - alpha (g + reg'(w))``.

After the last batch of an epoch both know the epoch loss (the mean of the batch losses), so
both apply the same stop rule (``max_epochs``, or the loss changed by less than ``amplitude``)
without another message.

What each party learns
    Besides the public shapes and configuration: the training loss of every batch (B computes it
    from ``S_A``, a single scalar equivalent to the loss given B's own data; A receives it). That
    is the declared output of an epoch. Neither party ever sees the other's features, weights,
    gradients or (for A) labels or residuals, in the clear or under its own key.
    The plaintext values that cross the wire are only ``UNMASKED`` residues (one-time padded) and
    the loss. Semi-honest parties are assumed, as in PaddleDTX.

Two weaknesses of PaddleDTX's implementation are avoided: per-sample gradient terms are summed
under encryption first (one masked value per weight, a fresh mask each), and every party's
features are standardized as floats (no rounding to integers before scaling).

Prediction (``PREDICT``, A->B): A sends its partial scores ``X_A w_A`` of the rows to predict; B
adds ``X_B w_B + b`` and de-standardizes (linear) or applies the sigmoid and the threshold
(logistic). A partial score reveals nothing beyond the prediction B obtains anyway (``z_A = z - z_B``).

Cost per batch and party: m encryptions, one (d + 1)-row multi-exponentiation over m ciphertexts,
d + 1 decryptions; bytes: 2 m ciphertexts (512 bytes each at 2048 bits) plus O(d) per batch.
"""

from __future__ import annotations

from typing import Any

from ._messages import MsgType, VFLMessage
from .config import DEFAULT_BATCH_SIZE, Standardizer, TrainingConfig, batch_schedule
from .model import ModelPart
from .prediction import FeaturePredictor, LabelPredictor, Prediction, finish_prediction
from .shared import SharedFeatureParty, SharedLabelParty
from .training import FeatureParty, LabelEncoding, LabelParty, encode_labels, plain_train_glm


def feature_party(X: Any, config: TrainingConfig, **kwargs: Any) -> FeatureParty | SharedFeatureParty:
    """The feature party of ``config.mode``: :class:`SharedFeatureParty` (``"ss"``) or :class:`FeatureParty`."""
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
