"""scikit-learn–style vertical linear regression (two parties, Paillier, no third party).

Examples
--------
>>> import numpy as np
>>> from dtxfast.vfl import VerticalLinearRegression
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(60, 3)); y = X @ [1.0, -2.0, 0.5] + 3
>>> est = VerticalLinearRegression(max_epochs=60, alpha=0.3, batch_size=0, key_bits=1024)
>>> est.fit([X[:, :1], X[:, 1:]], y).score([X[:, :1], X[:, 1:]], y) > 0.99
True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ParameterError, StateError
from ..protocols.vfl import (
    DEFAULT_BATCH_SIZE,
    ModelPart,
    Prediction,
    Standardizer,
    TrainingConfig,
    encode_labels,
    plain_train_glm,
)
from ..protocols.vfl import feature_party as _feature_party
from ..protocols.vfl import label_party as _label_party
from .evaluation import classification_metrics, regression_metrics
from .runner import predict_in_process, train_in_process

__all__ = ["VerticalLinearRegression"]

_PARAMS = ("mode", "alpha", "max_epochs", "batch_size", "reg_mode", "reg_param", "amplitude", "accuracy",
           "shuffle", "random_state", "label_party", "key_bits", "secure", "progress", "eval_every",
           "compute")


class _VerticalModel:
    """Shared parts of the two estimators (training, prediction, parameters, model parts)."""

    _model = "linear"
    _extra_params: tuple[str, ...] = ()

    def __init__(
        self,
        *,
        mode: str = "ss",
        alpha: float = 0.1,
        max_epochs: int = 100,
        batch_size: int = DEFAULT_BATCH_SIZE,
        reg_mode: str = "none",
        reg_param: float = 0.0,
        amplitude: float = 0.0,
        accuracy: int = 8,
        shuffle: bool = True,
        random_state: int = 0,
        label_party: int = 1,
        key_bits: int = 2048,
        secure: bool = True,
        progress: Any = False,
        eval_every: int = 0,
        compute: Any = None,
    ) -> None:
        self.mode = mode
        self.alpha = alpha
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.reg_mode = reg_mode
        self.reg_param = reg_param
        self.amplitude = amplitude
        self.accuracy = accuracy
        self.shuffle = shuffle
        self.random_state = random_state
        self.label_party = label_party
        self.key_bits = key_bits
        self.secure = secure
        self.progress = progress
        self.eval_every = eval_every
        self.compute = compute

    # -- parameters -------------------------------------------------------------------------------
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {k: getattr(self, k) for k in _PARAMS + self._extra_params}

    def set_params(self, **params: Any) -> Any:
        valid = _PARAMS + self._extra_params
        for k, v in params.items():
            if k not in valid:
                raise ParameterError(f"unknown parameter {k!r}")
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    def config(self) -> TrainingConfig:
        """The public :class:`TrainingConfig` both parties train with."""
        return TrainingConfig(model=self._model, mode=str(self.mode), alpha=float(self.alpha), max_epochs=int(self.max_epochs),
                              batch_size=int(self.batch_size), reg_mode=self.reg_mode or "none",
                              reg_param=float(self.reg_param), amplitude=float(self.amplitude),
                              accuracy=int(self.accuracy), shuffle=bool(self.shuffle),
                              seed=int(self.random_state), sigmoid=str(getattr(self, "sigmoid", "") or ""))

    # -- data -------------------------------------------------------------------------------------
    def _blocks(self, parties: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
        if len(parties) != 2:
            raise ParameterError("vertical training needs the feature blocks of exactly two parties")
        if self.label_party not in (0, 1):
            raise ParameterError("label_party must be 0 or 1")
        blocks = []
        for p in parties:
            a = np.asarray(p, dtype=np.float64)
            blocks.append(a.reshape(-1, 1) if a.ndim == 1 else a)
        if blocks[0].shape[0] != blocks[1].shape[0]:
            raise ParameterError("the two parties' blocks must have the same (aligned) rows")
        lab = int(self.label_party)
        return blocks[1 - lab], blocks[lab]

    # -- training ---------------------------------------------------------------------------------
    def _label_kwargs(self) -> dict[str, Any]:
        return {}

    def fit(self, parties: Sequence[Any], y: Any, *, validation: tuple[Sequence[Any], Any] | None = None,
            keypairs: tuple[Any, Any] | None = None) -> Any:
        """Train federatedly on two aligned feature blocks; ``y`` belongs to ``parties[label_party]``.

        Parameters
        ----------
        parties : [X_0, X_1]
            The two parties' feature blocks, rows aligned (PSI).
        y : array
            The label party's labels.
        validation : ([X_0, X_1], y), optional
            Held-out rows evaluated every ``eval_every`` epochs (recorded in ``history_``).
        keypairs : ((pk, sk) of the feature party, (pk, sk) of the label party), optional
            Reuse key pairs instead of generating fresh ones.
        """
        cfg = self.config()
        XA, XB = self._blocks(parties)
        y = np.asarray(y)
        if len(y) != len(XA):
            raise ParameterError("labels and features have different numbers of rows")
        self.history_: list[dict[str, Any]] = []
        val = None
        if validation is not None and self.eval_every:
            if cfg.mode == "ss" and self.secure:
                raise ParameterError("eval_every needs mode='fast': in secret-shared mode no party knows "
                                     "the weights before training ends")
            vA, vB = self._blocks(validation[0])
            val = (vA, vB, np.asarray(validation[1]))
        every = int(self.eval_every)
        lab_kw = self._label_kwargs()
        if self.secure:
            kpa, kpb = keypairs if keypairs is not None else (None, None)
            fa = _feature_party(XA, cfg, key_bits=int(self.key_bits), keypair=kpa, compute=self.compute)
            lb = _label_party(XB, y, cfg, key_bits=int(self.key_bits), keypair=kpb, compute=self.compute, **lab_kw)

            def on_epoch(epoch: int, loss: float, f: Any, b: Any) -> None:
                rec: dict[str, Any] = {"epoch": epoch + 1, "loss": loss}
                if val is not None and (epoch + 1) % every == 0:
                    rec.update(self._val_metrics(f.model_part(), b.model_part(), val))
                self.history_.append(rec)

            run = train_in_process(fa, lb, progress=self.progress, on_epoch=on_epoch,
                                   description=f"federated {self._model} regression")
            self.feature_part_, self.label_part_ = fa.model_part(), lb.model_part()
            self.bytes_total_ = run.bytes_total
            self.bytes_per_epoch_ = run.bytes_per_epoch
            self.n_epochs_ = run.epochs
        else:
            sa, sb = Standardizer.fit(XA), Standardizer.fit(XB)
            labels = encode_labels(y, cfg.model, lab_kw.get("positive_class"))

            def parts(wa: np.ndarray, wb: np.ndarray) -> tuple[ModelPart, ModelPart]:
                return (ModelPart("feature", cfg.model, wa.copy(), sa.mean, sa.scale),
                        ModelPart("label", cfg.model, wb.copy(), sb.mean, sb.scale, y_mean=labels.y_mean,
                                  y_scale=labels.y_scale, positive_class=labels.positive_class,
                                  negative_class=labels.negative_class,
                                  threshold=float(lab_kw.get("threshold", 0.5))))

            def on_plain(epoch: int, loss: float, wa: np.ndarray, wb: np.ndarray) -> None:
                rec: dict[str, Any] = {"epoch": epoch + 1, "loss": loss}
                if val is not None and (epoch + 1) % every == 0:
                    rec.update(self._val_metrics(*parts(wa, wb), val))
                self.history_.append(rec)

            wa, wb, hist = plain_train_glm(XA, XB, y, cfg, positive_class=lab_kw.get("positive_class"),
                                       on_epoch=on_plain)
            self.feature_part_, self.label_part_ = parts(wa, wb)
            self.bytes_total_, self.bytes_per_epoch_, self.n_epochs_ = 0, 0.0, len(hist)
        return self

    def _val_metrics(self, fp: ModelPart, lp: ModelPart, val: tuple[np.ndarray, np.ndarray, np.ndarray]) -> dict[str, float]:
        pred = predict_in_process(fp, val[0], lp, val[1])
        if self._model == "linear":
            m = regression_metrics(val[2], pred.values)
        else:
            assert pred.proba is not None
            m = classification_metrics(np.asarray(val[2]) == lp.positive_class, pred.proba, lp.threshold)
        return {f"val_{k}": v for k, v in m.items()}

    # -- model parts ------------------------------------------------------------------------------
    @property
    def model_parts_(self) -> tuple[ModelPart, ModelPart]:
        """(feature party's part, label party's part); each party keeps and saves its own."""
        self._check_fitted()
        return self.feature_part_, self.label_part_

    @classmethod
    def from_parts(cls, feature_part: ModelPart, label_part: ModelPart, **params: Any) -> Any:
        """Rebuild an estimator for prediction from two saved model parts."""
        if feature_part.role != "feature" or label_part.role != "label":
            raise ParameterError("expected (feature part, label part)")
        if feature_part.model != cls._model or label_part.model != cls._model:
            raise ParameterError(f"these model parts are not a {cls._model} model")
        est = cls(**params)
        est.feature_part_, est.label_part_ = feature_part, label_part
        est.history_ = []
        return est

    def _check_fitted(self) -> None:
        if not hasattr(self, "label_part_"):
            raise StateError("the model is not fitted yet")

    def _predict(self, parties: Sequence[Any]) -> Prediction:
        self._check_fitted()
        XA, XB = self._blocks(parties)
        return predict_in_process(self.feature_part_, XA, self.label_part_, XB)

    def decision_function(self, parties: Sequence[Any]) -> np.ndarray:
        """The linear score ``z`` (standardized units) the label party computes."""
        return self._predict(parties).scores

    def encode_target(self, y: Any) -> np.ndarray:
        """Logistic: 1 for the positive class, else 0 (the label party's target)."""
        self._check_fitted()
        return (np.asarray(y) == self.label_part_.positive_class).astype(np.float64)


class VerticalLinearRegression(_VerticalModel):
    """Two-party vertical linear regression under Paillier (mean squared error, gradient descent).

    Parameters (PaddleDTX names)
    ----------------------------
    mode : {"ss", "fast"}, default "ss"
        ``"ss"``: weights, gradients and residuals stay secret-shared during training; each party
        learns its own weights at the end (:mod:`dtxfast.protocols.vfl.shared`). ``"fast"``: each
        party holds its weights in the clear and learns its own gradient every batch (see the
        table of what each party learns in :mod:`dtxfast.protocols.vfl`).
    alpha : float, default 0.1
        Learning rate.
    max_epochs : int, default 100
    batch_size : int, default 1024
        Rows per mini-batch, 0 = full batch (see
        :data:`dtxfast.protocols.vfl.config.DEFAULT_BATCH_SIZE` for why 1024).
    reg_mode : {"none", "l1", "l2"}, reg_param : float
        Regularization and its strength lambda.
    amplitude : float, default 0
        Stop when the epoch loss changes by less than this; 0 disables the rule, and the loss
        is then not computed (nor revealed to either party).
    accuracy : int, default 8
        Decimal digits kept of the plaintext operands of the encrypted gradient.
    shuffle : bool, random_state : int
        Mini-batch order (public, the same at both parties).
    label_party : {0, 1}, default 1
        Which of the two blocks belongs to the party holding the labels.
    key_bits : int, default 2048
        Paillier modulus size of each party's key.
    secure : bool, default True
        ``False`` runs the same algorithm centrally in numpy (the reference).
    progress : bool or rich Console
        Show a progress bar over epochs with the loss.
    eval_every : int, default 0
        (fast mode only: in secret-shared mode no party knows the weights before the end)
        With ``fit(..., validation=...)``, evaluate on the validation rows every N epochs.
    compute : ComputeBackend, optional
        Where both parties' encryptions and ``X.T @ [[d]]`` run (:mod:`dtxfast.compute`; public
        keys only); default ``DTXFAST_COMPUTE``, else the local kernels.

    Attributes
    ----------
    feature_part_, label_part_ : ModelPart
    history_ : list of dict (``epoch``, ``loss``, ``val_*``)
    n_epochs_, bytes_total_, bytes_per_epoch_
    """

    _model = "linear"

    def predict(self, parties: Sequence[Any]) -> np.ndarray:
        """Predictions as the label party obtains them (de-standardized)."""
        return self._predict(parties).values

    def score(self, parties: Sequence[Any], y: Any) -> float:
        """R² of the predictions."""
        from .evaluation import r2

        return r2(y, self.predict(parties))

    @property
    def coef_(self) -> np.ndarray:
        """Coefficients on the raw features of (block 0, block 1) - reveals both parties' weights."""
        self._check_fitted()
        fp, lp = self.feature_part_, self.label_part_
        ca = fp.weights / fp.scale * lp.y_scale
        cb = lp.weights[:-1] / lp.scale * lp.y_scale
        return np.r_[ca, cb] if self.label_party == 1 else np.r_[cb, ca]
