"""scikit-learn–style vertical logistic regression (two parties, Paillier; an approximated sigmoid in training).

Training replaces the sigmoid by ``clip(1/2 + z/4, 0, 1)`` in secret-shared mode (the default;
the clipping is a secure comparison per row and bound on shares) or by its Taylor line
``1/2 + z/4`` (fast mode, or ``sigmoid="taylor"``; log-likelihood
``~ ln 1/2 + (y - 1/2) z - z^2/8``). Prediction uses the exact sigmoid of the learned score (the
label party holds ``z`` in the clear).

Examples
--------
>>> import numpy as np
>>> from dtxfast.vfl import VerticalLogisticRegression
>>> rng = np.random.default_rng(1)
>>> X = rng.normal(size=(80, 4)); y = np.where(X @ [2.0, -1.0, 1.0, 0.5] > 0, "yes", "no")
>>> est = VerticalLogisticRegression(max_epochs=30, alpha=0.5, batch_size=0, key_bits=1024)
>>> est.fit([X[:, :2], X[:, 2:]], y).score([X[:, :2], X[:, 2:]], y) > 0.9
True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ParameterError
from .evaluation import accuracy
from .linear import _VerticalModel

__all__ = ["VerticalLogisticRegression"]


class VerticalLogisticRegression(_VerticalModel):
    """Two-party vertical logistic regression under Paillier.

    Parameters are those of :class:`~dtxfast.vfl.VerticalLinearRegression`, plus:

    positive_class : label value, optional
        Which label value is the positive class (PaddleDTX's ``label`` choice); default the larger
        of exactly two values. With more classes the model is one-vs-rest on this class.
    threshold : float, default 0.5
        Probability at or above which a row is predicted positive.
    sigmoid : {"", "clip", "taylor"}
        The sigmoid approximation of training (see
        :class:`~dtxfast.protocols.vfl.TrainingConfig`): by default ``"clip"`` in secret-shared
        mode (a secure comparison per row and bound; give it about 30 epochs), ``"taylor"`` in
        fast mode.

    ``predict`` returns class labels when the labels had two values, else booleans
    ("is the positive class").
    """

    _model = "logistic"
    _extra_params = ("positive_class", "threshold", "sigmoid")

    def __init__(self, *, positive_class: Any = None, threshold: float = 0.5, sigmoid: str = "",
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.positive_class = positive_class
        self.threshold = threshold
        self.sigmoid = sigmoid

    def _label_kwargs(self) -> dict[str, Any]:
        if not 0.0 < float(self.threshold) < 1.0:
            raise ParameterError("threshold must lie in (0, 1)")
        return {"positive_class": self.positive_class, "threshold": float(self.threshold)}

    @property
    def classes_(self) -> np.ndarray:
        self._check_fitted()
        lp = self.label_part_
        if lp.negative_class is None:
            return np.array([False, True])
        return np.array([lp.negative_class, lp.positive_class])

    def predict_proba(self, parties: Sequence[Any]) -> np.ndarray:
        """``(n, 2)``: probabilities of the negative and the positive class."""
        p = self._predict(parties).proba
        assert p is not None
        return np.column_stack([1.0 - p, p])

    def predict(self, parties: Sequence[Any]) -> np.ndarray:
        """Class labels (threshold on the positive-class probability)."""
        self._check_fitted()
        from ..protocols.vfl import finish_prediction

        z = self._predict(parties).scores
        return finish_prediction(self.label_part_, z, float(self.threshold)).values

    def score(self, parties: Sequence[Any], y: Any) -> float:
        """Accuracy on the positive-vs-rest task."""
        pred_pos = self.predict_proba(parties)[:, 1] >= float(self.threshold)
        return accuracy(self.encode_target(y), pred_pos)
