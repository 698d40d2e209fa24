"""Vertical federated learning: estimators and runners over the protocols in dtxfast.protocols.

* :class:`VerticalLinearRegression`, :class:`VerticalLogisticRegression`: two parties, Paillier,
  no third party (:mod:`dtxfast.protocols.vfl` documents every message).
* :func:`psi_align` (:mod:`dtxfast.vfl.align`): the parties' common rows, in one order, by PSI.
* :mod:`dtxfast.vfl.runner`: both parties in one process, or one party over a channel.
* :mod:`dtxfast.vfl.evaluation`: metrics, splits, k-fold / leave-one-out jobs, ROC, curves.
* :mod:`dtxfast.vfl.dnn`: three-party neural networks on secret shares.
"""

from __future__ import annotations

from .align import psi_align
from .linear import VerticalLinearRegression
from .logistic import VerticalLogisticRegression
from .runner import load_model_part, predict_in_process, run_party, save_model_part, train_in_process

__all__: list[str] = [
    "VerticalLinearRegression",
    "VerticalLogisticRegression",
    "load_model_part",
    "predict_in_process",
    "psi_align",
    "run_party",
    "save_model_part",
    "train_in_process",
]
