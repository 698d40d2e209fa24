"""Prediction: the feature party sends its partial score, the label party combines and decodes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ...errors import MalformedInput, ParameterError, ProtocolError
from ._messages import MsgType, pack, unpack
from .model import ModelPart

__all__ = ["FeaturePredictor", "LabelPredictor", "Prediction", "finish_prediction"]


@dataclass
class Prediction:
    """What the label party obtains.

    ``values``: regression predictions (de-standardized), or class labels; ``scores``: the linear
    score ``z``; ``proba``: the positive-class probability (logistic only, exact sigmoid of ``z``).
    """

    values: np.ndarray
    scores: np.ndarray
    proba: np.ndarray | None = None


class FeaturePredictor:
    """Feature party side: one ``PREDICT`` message with its partial scores ``X_A w_A``.

    The partial score reveals nothing the label party does not learn from the prediction itself
    (the label party gets ``z = z_A + z_B`` and knows ``z_B``).
    """

    def __init__(self, part: ModelPart, X: Any) -> None:
        if part.role != "feature":
            raise ParameterError("FeaturePredictor needs the feature party's model part")
        self.part = part
        self.X = np.asarray(X, dtype=np.float64)

    def message(self) -> bytes:
        z = np.ascontiguousarray(self.part.partial_score(self.X), dtype=">f8")
        return pack(MsgType.PREDICT, 0, 0, [z.tobytes()])


def finish_prediction(part: ModelPart, z: np.ndarray, threshold: float | None = None) -> Prediction:
    """Turn the full linear score into predictions (label party only)."""
    if part.model == "linear":
        return Prediction(z * part.y_scale + part.y_mean, z)
    thr = part.threshold if threshold is None else float(threshold)
    proba = 1.0 / (1.0 + np.exp(-np.clip(z, -700, 700)))
    pos = proba >= thr
    if part.negative_class is not None:
        values = np.array([part.positive_class, part.negative_class])[np.where(pos, 0, 1)]
    else:
        values = pos
    return Prediction(values, z, proba)


class LabelPredictor:
    """Label party side: adds its own partial score and the intercept, then de-standardizes."""

    def __init__(self, part: ModelPart, X: Any, *, threshold: float | None = None) -> None:
        if part.role != "label":
            raise ParameterError("LabelPredictor needs the label party's model part")
        self.part = part
        self.X = np.asarray(X, dtype=np.float64)
        self.threshold = threshold

    def receive(self, data: bytes) -> Prediction:
        msg = unpack(data, MsgType.PREDICT)
        if len(msg.sections) != 1 or len(msg.sections[0]) % 8:
            raise MalformedInput("malformed PREDICT")
        za = np.frombuffer(msg.sections[0], dtype=">f8").astype(np.float64)
        zb = self.part.partial_score(self.X)
        if len(za) != len(zb):
            raise ProtocolError(f"the peer predicted {len(za)} rows, this party has {len(zb)}")
        return finish_prediction(self.part, za + zb, self.threshold)
