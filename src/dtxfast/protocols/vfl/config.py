"""Public training configuration both VFL parties agree on, batch schedule, standardization."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ...errors import ParameterError

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "Standardizer",
    "TrainingConfig",
    "batch_schedule",
    "reg_gradient",
    "reg_loss",
]

#: Default mini-batch size. The gradient ``X.T @ [[d]]`` is a Pippenger multi-exponentiation whose
#: cost per sample and column is about ``ceil(b / c) * (1 + 2^(c+1) / m)`` multiplications for a
#: batch of ``m`` rows, ``b``-bit operands and the best window ``c``: with b = 27 bits that is ~9 at
#: m = 256, ~6 at m = 1024, ~5 at m = 4096 and ~3.5 at m = 100 000, while the one encryption per
#: sample and party costs ~100 multiplications whatever the batch. Beyond ~1024 rows a larger
#: batch saves under 10 % of an epoch but gives fewer updates per epoch; below it the per-batch
#: bucket work starts to show.
DEFAULT_BATCH_SIZE = 1024

_MODELS = ("linear", "logistic")
_REG_MODES = ("none", "l1", "l2")
_MODES = ("ss", "fast")
_SIGMOIDS = ("clip", "taylor")

#: Fractional bits of the public fixed-point encoding of the standardized features in the
#: encrypted products (both modes): ``X_int = round(X * 2^FEATURE_FRAC_BITS)``. A public per-run
#: constant, never a property of a batch (a data-dependent exponent would travel in clear).
FEATURE_FRAC_BITS = 20


@dataclass(frozen=True)
class TrainingConfig:
    """Hyper-parameters of one VFL training, public to both parties (PaddleDTX names).

    Parameters
    ----------
    model : {"linear", "logistic"}
    mode : {"ss", "fast"}
        ``"ss"`` (default): the weights, gradients and residuals stay additively secret-shared
        between the parties (:mod:`dtxfast.protocols.vfl.shared`); ``"fast"``: each party holds
        its own weights in the clear and learns its own gradient (:mod:`dtxfast.protocols.vfl.training`).
        The module docstring of :mod:`dtxfast.protocols.vfl` tabulates what each party learns.
    alpha : float
        Learning rate.
    max_epochs : int
        Most passes over the data.
    batch_size : int
        Rows per mini-batch; 0 means full batch.
    reg_mode : {"none", "l1", "l2"}
        Regularization of the weights (never of the intercept).
    reg_param : float
        Regularization strength lambda: loss ``+ lambda/2 ||w||^2`` (l2) or ``+ lambda ||w||_1`` (l1).
    amplitude : float
        Stop when the epoch loss changes by less than this. 0 (the default) disables the rule and
        the loss is then never computed nor revealed; with ``amplitude > 0`` both parties learn
        the loss of every epoch (one aggregate number per epoch, nothing per batch).
    accuracy : int
        Decimal digits kept of the plaintext operands of the encrypted gradient (fixed-point accuracy).
    shuffle : bool
        Reshuffle the rows before every epoch (mini-batch only), from ``seed``.
    seed : int
        Public seed of the batch order (derive it from the task id).
    sigmoid : {"", "clip", "taylor"}
        Logistic only: the sigmoid approximation of training. ``"clip"`` (the default of
        ``mode="ss"``): ``clip(1/2 + z/4, 0, 1)``, saturating like the sigmoid; secret-shared mode
        evaluates it with a secure comparison per row and bound (:mod:`dtxfast.protocols.compare`).
        It reaches central logistic regression's AUC where ``"taylor"`` (``1/2 + z/4``, a
        least-squares fit; the only choice of ``mode="fast"``) cannot, and needs more epochs
        than 10 for it (30 on breast cancer). ``""`` picks the mode's default; linear models
        have ``"none"``.
    """

    model: str = "linear"
    mode: str = "ss"
    alpha: float = 0.1
    max_epochs: int = 100
    batch_size: int = DEFAULT_BATCH_SIZE
    reg_mode: str = "none"
    reg_param: float = 0.0
    amplitude: float = 0.0
    accuracy: int = 8
    shuffle: bool = True
    seed: int = 0
    sigmoid: str = ""

    def __post_init__(self) -> None:
        if self.model not in _MODELS:
            raise ParameterError(f"model must be one of {_MODELS}, not {self.model!r}")
        if self.mode not in _MODES:
            raise ParameterError(f"mode must be one of {_MODES}, not {self.mode!r}")
        if self.mode == "ss" and str(self.reg_mode).lower() == "l1":
            raise ParameterError("reg_mode='l1' needs the sign of each weight, which secret-shared "
                                 "training does not compute: use 'l2' or mode='fast'")
        mode = "none" if self.reg_mode in (None, "") else str(self.reg_mode).lower()
        if mode not in _REG_MODES:
            raise ParameterError(f"reg_mode must be one of {_REG_MODES}, not {self.reg_mode!r}")
        object.__setattr__(self, "reg_mode", mode)
        if not (math.isfinite(self.alpha) and self.alpha > 0):
            raise ParameterError("alpha (the learning rate) must be a positive number")
        if int(self.max_epochs) < 1:
            raise ParameterError("max_epochs must be at least 1")
        if int(self.batch_size) < 0:
            raise ParameterError("batch_size must be >= 0 (0 = full batch)")
        if not (math.isfinite(self.reg_param) and self.reg_param >= 0):
            raise ParameterError("reg_param must be >= 0")
        if not (math.isfinite(self.amplitude) and self.amplitude >= 0):
            raise ParameterError("amplitude must be >= 0")
        if not 2 <= int(self.accuracy) <= 18:
            raise ParameterError("accuracy must be between 2 and 18 decimal digits")
        sig = str(self.sigmoid or "").lower()
        if self.model == "linear":
            if sig not in ("", "none"):
                raise ParameterError("sigmoid applies to model='logistic' only")
            sig = "none"
        elif not sig:
            sig = "clip" if self.mode == "ss" else "taylor"
        elif sig not in _SIGMOIDS:
            raise ParameterError(f"sigmoid must be one of {_SIGMOIDS}, not {self.sigmoid!r}")
        elif sig == "clip" and self.mode == "fast":
            raise ParameterError("sigmoid='clip' needs the secure comparison of mode='ss'; fast mode trains "
                                 "with 'taylor'")
        object.__setattr__(self, "sigmoid", sig)

    @property
    def plaintext_bits(self) -> int:
        """Significant bits kept of the plaintext matrix in the encrypted gradient."""
        return min(63, math.ceil(int(self.accuracy) * math.log2(10)) + 1)

    @property
    def slope(self) -> float:
        """``a`` of the residual ``a * z + offset``: 1 (linear) or 1/4 (Taylor logistic)."""
        return 1.0 if self.model == "linear" else 0.25

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def digest(self) -> bytes:
        """SHA-256 of the canonical JSON form: the parties check they train the same thing."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).digest()


def batch_schedule(n: int, cfg: TrainingConfig, epoch: int) -> list[np.ndarray]:
    """Row indices of each batch of ``epoch`` (the same at both parties)."""
    bs = int(cfg.batch_size)
    if bs == 0 or bs >= n:
        return [np.arange(n)]
    order = np.arange(n)
    if cfg.shuffle:
        order = np.random.default_rng([int(cfg.seed) & 0xFFFFFFFF, epoch]).permutation(n)
    return [order[i : i + bs] for i in range(0, n, bs)]


@dataclass
class Standardizer:
    """Column means and scales (population std, 1 for a constant column) of one party's data."""

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, X: np.ndarray) -> Standardizer:
        """Means and scales of ``X``'s columns.

        Raises
        ------
        ParameterError
            A column's mean or spread is not a finite float64 (values near the float64 limit,
            e.g. 1e308, overflow the sums): training on it would give NaN weights, not an error.

        Examples
        --------
        >>> Standardizer.fit(np.array([[1.0, 5.0], [3.0, 5.0]])).scale
        array([1., 1.])
        >>> Standardizer.fit(np.array([[1e308], [-1e308], [1e308]]))
        Traceback (most recent call last):
        ...
        dtxfast.errors.ParameterError: feature column 1: its values are too large to standardize (the mean or spread overflows float64)
        """
        X = np.asarray(X, dtype=np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            mean = X.mean(axis=0)
            scale = X.std(axis=0)
        bad = np.flatnonzero(~(np.isfinite(mean) & np.isfinite(scale)))
        if bad.size:
            raise ParameterError(f"feature column {int(bad[0]) + 1}: its values are too large to standardize "
                                 "(the mean or spread overflows float64)")
        scale = np.where(scale > 0, scale, 1.0)
        return cls(mean, scale)

    def transform(self, X: np.ndarray) -> np.ndarray:
        return (np.asarray(X, dtype=np.float64) - self.mean) / self.scale


def reg_loss(w: np.ndarray, cfg: TrainingConfig) -> float:
    """Regularization term of the loss for weights ``w`` (intercept excluded by the caller)."""
    if cfg.reg_mode == "l2":
        return 0.5 * cfg.reg_param * float(w @ w)
    if cfg.reg_mode == "l1":
        return cfg.reg_param * float(np.abs(w).sum())
    return 0.0


def reg_gradient(w: np.ndarray, cfg: TrainingConfig) -> np.ndarray:
    """Gradient (sub-gradient for l1) of :func:`reg_loss`."""
    if cfg.reg_mode == "l2":
        return cfg.reg_param * w
    if cfg.reg_mode == "l1":
        return cfg.reg_param * np.sign(w)
    return np.zeros_like(w)
