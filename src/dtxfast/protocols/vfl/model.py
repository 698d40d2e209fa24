"""One party's part of a trained vertical model, with a versioned, checksummed byte form."""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...errors import MalformedInput, ParameterError

__all__ = ["FORMAT", "FORMAT_VERSION", "ModelPart"]

FORMAT = "dtxfast-vfl-model"
FORMAT_VERSION = 1


def _plain(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    return v


@dataclass
class ModelPart:
    """What one party keeps after training: its weights and its own standardization.

    The feature party's part never contains anything of the label party and vice versa.

    Attributes
    ----------
    role : {"feature", "label"}
    model : {"linear", "logistic"}
    weights : ndarray
        Weights on the standardized features; the label party's last weight is the intercept.
    mean, scale : ndarray
        This party's feature standardization.
    y_mean, y_scale : float
        Label standardization (label party, linear model).
    positive_class, negative_class : label values (label party, logistic model).
    threshold : float
        Probability threshold of the positive class (logistic model).
    """

    role: str
    model: str
    weights: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    y_mean: float = 0.0
    y_scale: float = 1.0
    positive_class: Any = None
    negative_class: Any = None
    threshold: float = 0.5
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.role not in ("feature", "label"):
            raise ParameterError(f"role must be 'feature' or 'label', not {self.role!r}")
        if self.model not in ("linear", "logistic"):
            raise ParameterError(f"model must be 'linear' or 'logistic', not {self.model!r}")
        self.weights = np.asarray(self.weights, dtype=np.float64)
        self.mean = np.asarray(self.mean, dtype=np.float64)
        self.scale = np.asarray(self.scale, dtype=np.float64)
        extra = 1 if self.role == "label" else 0
        if self.weights.shape != (len(self.mean) + extra,) or self.scale.shape != self.mean.shape:
            raise ParameterError("weights, mean and scale do not fit together")

    @property
    def n_features(self) -> int:
        return len(self.mean)

    def partial_score(self, X: np.ndarray) -> np.ndarray:
        """This party's share of the linear score on its own (raw) feature rows."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ParameterError(f"expected rows of {self.n_features} features, got shape {X.shape}")
        Z = (X - self.mean) / self.scale
        if self.role == "label":
            return Z @ self.weights[:-1] + self.weights[-1]
        return Z @ self.weights

    # -- serialization -------------------------------------------------------------------------
    def _payload(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "model": self.model,
            "weights": [float(x) for x in self.weights],
            "mean": [float(x) for x in self.mean],
            "scale": [float(x) for x in self.scale],
            "y_mean": float(self.y_mean),
            "y_scale": float(self.y_scale),
            "positive_class": _plain(self.positive_class),
            "negative_class": _plain(self.negative_class),
            "threshold": float(self.threshold),
            "meta": self.meta,
        }

    def to_bytes(self) -> bytes:
        """Versioned JSON with a SHA-256 checksum of the canonical payload."""
        payload = json.dumps(self._payload(), sort_keys=True, separators=(",", ":"))
        digest = hashlib.sha256(payload.encode()).hexdigest()
        doc = {"format": FORMAT, "version": FORMAT_VERSION, "payload": payload, "sha256": digest}
        return json.dumps(doc, indent=1).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> ModelPart:
        """Inverse of :meth:`to_bytes`; raises MalformedInput on a bad format or checksum."""
        try:
            doc = json.loads(bytes(data).decode())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise MalformedInput(f"not a model file: {exc}") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise MalformedInput("not a dtxfast VFL model part")
        if doc.get("version") != FORMAT_VERSION:
            raise MalformedInput(f"unsupported model format version {doc.get('version')!r}")
        payload = doc.get("payload")
        if not isinstance(payload, str) or not isinstance(doc.get("sha256"), str):
            raise MalformedInput("model part is missing its payload or checksum")
        if not hmac.compare_digest(hashlib.sha256(payload.encode()).hexdigest(), doc["sha256"]):
            raise MalformedInput("model part checksum does not match (corrupted or edited)")
        p = json.loads(payload)
        try:
            return cls(**p)
        except (TypeError, ParameterError) as exc:
            raise MalformedInput(f"invalid model part: {exc}") from None
