"""Three-party vertical neural networks trained and evaluated on replicated secret shares.

Three parties hold different feature columns of the same (PSI-aligned) samples; one of them also
holds the labels. Each party secret-shares its columns with :mod:`dtxfast.protocols.mpc`, and the
three train a multilayer perceptron (ReLU hidden layers, mini-batch SGD with L2 weight decay) on
the shares: no party ever sees another party's features, the labels, the activations or the
weights in the clear. The trained model stays secret-shared (:attr:`VerticalMLPRegressor.shares_`
holds each party's part); prediction runs on shares and only the result owner (the label party by
default) reconstructs the outputs.

The in-process run (:meth:`~VerticalMLPRegressor.fit`) drives the three party programs in one
thread over an :class:`~dtxfast.transport.channel.InMemoryNetwork`; the per-party programs it
drives (:func:`~dtxfast.protocols.mpc.mlp.train_program`,
:func:`~dtxfast.protocols.mpc.mlp.predict_program`) live in :mod:`dtxfast.protocols.mpc.mlp`, to
run one party per process with :func:`dtxfast.protocols.mpc.run_blocking` over any other channel.

``secure=False`` trains the same network in plaintext numpy with the same initialisation,
batches and learning-rate schedule (exact logistic function instead of the piecewise-linear one);
it is the reference the secure training is measured against.

Examples
--------
>>> import numpy as np
>>> from dtxfast.vfl.dnn import VerticalMLPRegressor
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(64, 3)); y = X @ [1.0, -2.0, 0.5] + 3
>>> parts = [X[:, :1], X[:, 1:2], X[:, 2:]]
>>> m = VerticalMLPRegressor(hidden_layer_sizes=(8,), epochs=100, batch_size=16)
>>> rmse = float(np.sqrt(np.mean((m.fit(parts, y).predict(parts) - y) ** 2)))
>>> bool(rmse < 0.3 * y.std())
True
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import MalformedInput, ParameterError, StateError
from ..protocols.mpc import MPCParty, decode, run_local
from ..protocols.mpc.fixedpoint import DEFAULT_FRAC_BITS, check_frac_bits
from ..protocols.mpc.mlp import MLPSchedule, init_params, plain_forward, plain_train_mlp, predict_program, train_program
from ..transport.channel import InMemoryNetwork

__all__ = [
    "PaddleDTXDNNData",
    "VerticalMLPClassifier",
    "VerticalMLPRegressor",
    "read_paddledtx_dnn",
]

PARTY_NAMES = ("A", "B", "C")

_FIXED_SEED: ContextVar[int | None] = ContextVar("dtxfast_dnn_fixed_seed", default=None)


@contextmanager
def _insecure_fixed_seeds(seed: int) -> Iterator[None]:
    """Tests only: derive the pairwise PRF seeds of every estimator run inside from ``seed``.

    Whoever knows ``seed`` can recompute every pairwise seed and hence every share of every
    party: it removes all privacy. It is private, named for what it does, and refused outside a
    pytest test (``PYTEST_CURRENT_TEST`` unset), so no production run can be made deterministic
    with it; the estimators have no seed parameter for their secret randomness.
    """
    if "PYTEST_CURRENT_TEST" not in os.environ:
        raise ParameterError("fixed MPC seeds make every share public; they exist only for tests")
    token = _FIXED_SEED.set(int(seed))
    try:
        yield
    finally:
        _FIXED_SEED.reset(token)


# -- PaddleDTX's three-party sample files -----------------------------------------------------
@dataclass
class PaddleDTXDNNData:
    """The three parties' blocks of a PaddleDTX ``dnn_paddlefl`` folder, rows aligned by ``id``."""

    train_parts: list[np.ndarray]
    train_y: np.ndarray
    predict_parts: list[np.ndarray]
    predict_y: np.ndarray | None
    columns: list[list[str]]


def _read_csv(path: Any) -> tuple[list[str], np.ndarray]:
    import warnings

    try:
        with open(path, encoding="utf-8") as fh:
            header = fh.readline().strip().split(",")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data": refused below
            data = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    except ValueError as exc:
        raise MalformedInput(f"{path}: not a numeric CSV file ({exc})") from None
    if data.size == 0:
        raise MalformedInput(f"{path}: no data rows after the header")
    if data.shape[1] != len(header):
        raise MalformedInput(f"{path}: {len(header)} column names but {data.shape[1]} columns")
    bad = np.argwhere(~np.isfinite(data))
    if bad.size:
        r, c = (int(v) for v in bad[0])
        raise MalformedInput(f"{path}, data row {r + 1}: column {header[c]!r} is not a finite number ({data[r, c]})")
    return header, data


def read_paddledtx_dnn(folder: Any, label: str = "MEDV") -> PaddleDTXDNNData:
    """Read ``train_data{A,B,C}.csv``, ``predict_data{A,B,C}.csv`` and ``targetValues.csv``.

    Rows of the three parties are matched on ``id`` (they must hold the same ids, as after
    PSI); the label column ``label`` may be in any party's training file. ``targetValues.csv``
    (optional) is matched on ``originId``.
    """
    from pathlib import Path

    root = Path(folder)
    out: dict[str, Any] = {}
    columns: list[list[str]] = []
    y = None
    for kind in ("train", "predict"):
        parts, ids = [], None
        for party in "ABC":
            header, data = _read_csv(root / f"{kind}_data{party}.csv")
            if "id" not in header:
                raise MalformedInput(f"{kind}_data{party}.csv has no id column")
            data = data[np.argsort(data[:, header.index("id")], kind="stable")]
            if ids is None:
                ids = data[:, header.index("id")]
            elif not np.array_equal(ids, data[:, header.index("id")]):
                raise MalformedInput(f"{kind}_data{party}.csv holds other ids than {kind}_dataA.csv")
            keep = [i for i, h in enumerate(header) if h not in ("id", label)]
            if kind == "train" and label in header:
                y = data[:, header.index(label)]
            if kind == "train":
                columns.append([header[i] for i in keep])
            parts.append(data[:, keep])
        out[kind] = (parts, ids)
    if y is None:
        raise MalformedInput(f"no training file has the label column {label!r}")
    target = None
    if (root / "targetValues.csv").exists():
        header, data = _read_csv(root / "targetValues.csv")
        key = "originId" if "originId" in header else "id"
        data = data[np.argsort(data[:, header.index(key)], kind="stable")]
        if not np.array_equal(data[:, header.index(key)], out["predict"][1]):
            raise MalformedInput("targetValues.csv does not cover exactly the prediction rows")
        target = data[:, header.index(label)]
    return PaddleDTXDNNData(out["train"][0], y, out["predict"][0], target, columns)


# -- the estimators ---------------------------------------------------------------------------
class _VerticalMLP:
    _task = "regression"

    def __init__(
        self,
        hidden_layer_sizes: Sequence[int] = (30, 15),
        *,
        learning_rate: float = 0.1,
        batch_size: int = 32,
        epochs: int = 100,
        alpha: float = 1e-2,
        lr_decay: float = 0.02,
        label_party: int = 2,
        secure: bool = True,
        frac_bits: int = DEFAULT_FRAC_BITS,
        random_state: int = 0,
        standardize: bool = True,
    ) -> None:
        self.hidden_layer_sizes = tuple(int(h) for h in hidden_layer_sizes)
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.epochs = epochs
        self.alpha = alpha
        self.lr_decay = lr_decay
        self.label_party = label_party
        self.secure = secure
        self.frac_bits = frac_bits
        self.random_state = random_state
        self.standardize = standardize

    # sklearn-style parameter access
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        keys = ("hidden_layer_sizes", "learning_rate", "batch_size", "epochs", "alpha", "lr_decay",
                "label_party", "secure", "frac_bits", "random_state", "standardize")
        return {k: getattr(self, k) for k in keys}

    def set_params(self, **params: Any) -> _VerticalMLP:
        for k, v in params.items():
            if k not in self.get_params():
                raise ParameterError(f"unknown parameter {k!r}")
            setattr(self, k, v)
        return self

    def _check(self, parts: Sequence[np.ndarray]) -> tuple[list[np.ndarray], list[int], int]:
        """Validate the three blocks as :meth:`fit` and every prediction need them (one-line errors)."""
        if isinstance(parts, np.ndarray) or len(parts) != 3:
            raise ParameterError("vertical training needs the feature blocks of exactly three parties")
        arrs = []
        for k, x in enumerate(parts):
            try:
                a = np.asarray(x, dtype=np.float64)
            except (TypeError, ValueError):
                raise ParameterError(f"party {k}'s features are not numeric") from None
            arrs.append(a.reshape(-1, 1) if a.ndim == 1 else a)
        n = arrs[0].shape[0]
        if any(a.ndim != 2 or a.shape[0] != n for a in arrs) or n == 0:
            raise ParameterError("every party's block must be a 2-D array with the same number of rows")
        cols = [a.shape[1] for a in arrs]
        if sum(cols) == 0:
            raise ParameterError("no feature columns")
        if hasattr(self, "cols_") and cols != self.cols_:
            k = next(i for i in range(3) if cols[i] != self.cols_[i])
            raise ParameterError(f"party {k} has {cols[k]} feature columns, the model was fitted on {self.cols_[k]}")
        for k, a in enumerate(arrs):
            bad = int(np.count_nonzero(~np.isfinite(a)))
            if bad:
                raise ParameterError(f"party {k}'s features hold {bad} NaN or infinite value(s)")
        return arrs, cols, n

    def _scale(self, arrs: list[np.ndarray], fit: bool) -> list[np.ndarray]:
        """Each party's own standardisation of its columns (its training mean and deviation).

        Every party computes it locally on its own block and keeps it: nothing of it is sent.
        The scaled features must fit the fixed-point format (``|x| < 2^(40 - frac_bits)``).
        """
        if fit:
            self.scalers_: list[tuple[np.ndarray, np.ndarray]] | None = None
            if self.standardize:
                self.scalers_ = []
                for a in arrs:
                    sd = a.std(axis=0)
                    sd[sd == 0] = 1.0
                    self.scalers_.append((a.mean(axis=0), sd))
        if self.scalers_ is not None:
            arrs = [(a - mu) / sd for a, (mu, sd) in zip(arrs, self.scalers_)]
        limit = 2.0 ** (40 - self.frac_bits)
        for k, a in enumerate(arrs):
            if a.size and np.abs(a).max() >= limit:
                what = "standardised features" if self.scalers_ is not None else "features"
                raise ParameterError(f"party {k}'s {what} reach {np.abs(a).max():.3g}; "
                                     f"the fixed-point format holds |x| < 2^{40 - self.frac_bits}")
        return arrs

    def _seed(self, tag: str, party: int) -> bytes | None:
        seed = _FIXED_SEED.get()
        if seed is None:
            return None
        return hashlib.sha256(f"{seed}/{tag}/{party}".encode()).digest()[:16]

    def _validate(self) -> None:
        if self.label_party not in (0, 1, 2):
            raise ParameterError("label_party must be 0, 1 or 2")
        if not (self.batch_size >= 1 and self.epochs >= 0 and self.learning_rate > 0 and self.alpha >= 0):
            raise ParameterError("batch_size >= 1, epochs >= 0, learning_rate > 0 and alpha >= 0 are required")
        if any(h < 1 for h in self.hidden_layer_sizes):
            raise ParameterError("hidden layer sizes must be positive")
        check_frac_bits(self.frac_bits)

    def _fit(self, parts: Sequence[np.ndarray], Y: np.ndarray) -> _VerticalMLP:
        self._validate()
        for attr in ("cols_",):
            if hasattr(self, attr):
                delattr(self, attr)
        arrs, cols, n = self._check(parts)
        if Y.shape[0] != n:
            raise ParameterError("targets and features have different numbers of rows")
        if not np.all(np.isfinite(Y)):
            raise ParameterError("the targets hold NaN or infinite values")
        arrs = self._scale(arrs, fit=True)
        sizes = (sum(cols), *self.hidden_layer_sizes, Y.shape[1])
        sched = MLPSchedule(sizes, self._task, float(self.learning_rate), int(self.batch_size),
                            int(self.epochs), float(self.alpha), float(self.lr_decay),
                            int(self.random_state), init_params(sizes, int(self.random_state)))
        self.cols_ = cols
        self.schedule_ = sched
        if not self.secure:
            self.params_: Any = plain_train_mlp(np.concatenate(arrs, axis=1), Y, sched)
            self.shares_: Any = None
            return self
        net = InMemoryNetwork(PARTY_NAMES)
        parties = [MPCParty(i, net.channel(nm), PARTY_NAMES, frac_bits=self.frac_bits)
                   for i, nm in enumerate(PARTY_NAMES)]
        progs = [train_program(p, arrs[p.index], cols, n, self.label_party,
                               Y if p.index == self.label_party else None, sched, self._seed("fit", p.index))
                 for p in parties]
        self.shares_ = run_local(progs, [p.channel for p in parties])
        self.params_ = None
        epochs = max(1, sched.epochs)
        self.bytes_per_party_ = {nm: net.bytes_sent(nm) for nm in PARTY_NAMES}
        self.bytes_per_epoch_ = {nm: v / epochs for nm, v in self.bytes_per_party_.items()}
        self.rounds_ = max(p.rounds for p in parties)
        return self

    def _decision(self, parts: Sequence[np.ndarray]) -> np.ndarray:
        if not hasattr(self, "schedule_"):
            raise StateError("the model is not fitted yet")
        arrs, cols, n = self._check(parts)
        arrs = self._scale(arrs, fit=False)
        if not self.secure:
            return plain_forward(np.concatenate(arrs, axis=1), self.params_)
        net = InMemoryNetwork(PARTY_NAMES)
        parties = [MPCParty(i, net.channel(nm), PARTY_NAMES, frac_bits=self.frac_bits)
                   for i, nm in enumerate(PARTY_NAMES)]
        shares: list[Any] = self.shares_
        progs = [predict_program(p, arrs[p.index], cols, n, shares[p.index][0], shares[p.index][1],
                                 self.label_party, self._seed("predict", p.index))
                 for p in parties]
        return run_local(progs, [p.channel for p in parties])[self.label_party]

    def reveal_params(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Reconstruct the weights from the three parties' shares (reveals the model!)."""
        if not hasattr(self, "schedule_"):
            raise StateError("the model is not fitted yet")
        if not self.secure:
            return [(w.copy(), b.copy()) for w, b in self.params_]
        out = []
        shares: list[Any] = self.shares_
        for layer in range(len(self.schedule_.init)):
            w = shares[0][0][layer]
            b = shares[0][1][layer]
            w3 = shares[1][0][layer].b  # component 2 sits in party 1's second slot
            b3 = shares[1][1][layer].b
            out.append((decode(w.a + w.b + w3, self.frac_bits), decode(b.a + b.b + b3, self.frac_bits)))
        return out


class VerticalMLPRegressor(_VerticalMLP):
    """Three-party vertical MLP regression (squared error) on secret shares.

    Parameters
    ----------
    hidden_layer_sizes : sequence of int, default (30, 15)
        Widths of the ReLU hidden layers (PaddleDTX's network: fc30-ReLU, fc15-ReLU, fc1).
    learning_rate : float, default 0.1
        SGD step at epoch 0; epoch ``e`` uses ``learning_rate / (1 + lr_decay * e)``.
    batch_size : int, default 32
    epochs : int, default 100
    alpha : float, default 0.01
        L2 weight decay on the weights (not the biases).
    lr_decay : float, default 0.02
    label_party : {0, 1, 2}, default 2
        Which party holds the targets; it is also the one that gets the predictions.
    secure : bool, default True
        ``False`` trains the same network in plaintext numpy (the reference).
    frac_bits : int, default 16
        Fixed-point fractional bits.
    random_state : int, default 0
        Seed of the public schedule: initial weights and batch order. The secret randomness
        (pairwise PRF seeds, hence shares and stochastic rounding) is always fresh
        (``os.urandom``); no parameter makes it reproducible.
    standardize : bool, default True
        Each party standardises its own columns locally (mean 0 and deviation 1 on its training
        rows; the same transform on the rows it predicts); the mean and deviation stay with that
        party (:attr:`scalers_`, one pair per party). ``False`` uses the blocks as given.

    Raises
    ------
    ParameterError
        From :meth:`fit` and :meth:`predict` alike: not three blocks, blocks of different
        lengths, a column split other than the fitted one, NaN or infinite values, or (scaled)
        features outside the fixed-point range ``|x| < 2^(40 - frac_bits)``.

    Notes
    -----
    The defaults were chosen by 5-fold cross-validation of the plaintext network on the 404
    training rows of PaddleDTX's three-party Boston sample (not on its prediction rows).
    The label party standardises the targets locally before sharing them and undoes it on the
    predictions it receives.

    Truncation cannot fail: the secure truncation (:meth:`MPCParty.trunc`) is exact, up to
    the stochastic rounding of the last bit, for every value below ``2^62`` at the doubled
    scale, i.e. every real product below ``2^(62 - 2 * frac_bits)`` (``2^30`` at 16 bits). The
    probabilistic truncation it replaced failed with probability ``|x| / 2^64`` per element:
    about ``2^-32`` for a product near 1 at 16 bits, and one training in three on unscaled
    Boston features. What remains is the range of the ring itself: a training that diverges
    past ``2^(62 - 2 * frac_bits)`` (its plaintext twin diverges too) overflows; standardised
    inputs and the default steps stay many orders of magnitude below it.
    """

    _task = "regression"

    def fit(self, parts: Sequence[np.ndarray], y: np.ndarray) -> VerticalMLPRegressor:
        """Train on the three parties' feature blocks ``parts`` and the label party's ``y``."""
        try:
            Y = np.asarray(y, dtype=np.float64)
        except (TypeError, ValueError):
            raise ParameterError("the targets are not numeric") from None
        Y = Y.reshape(-1, 1) if Y.ndim == 1 else Y
        if Y.size and not np.all(np.isfinite(Y)):
            raise ParameterError("the targets hold NaN or infinite values")
        self.y_mean_ = Y.mean(axis=0)
        self.y_scale_ = Y.std(axis=0)
        self.y_scale_[self.y_scale_ == 0] = 1.0
        self._y_1d = np.asarray(y).ndim == 1
        return self._fit(parts, (Y - self.y_mean_) / self.y_scale_)  # type: ignore[return-value]

    def predict(self, parts: Sequence[np.ndarray]) -> np.ndarray:
        """Predictions for the rows of ``parts``, as the label party reconstructs them."""
        out = self._decision(parts) * self.y_scale_ + self.y_mean_
        return out[:, 0] if self._y_1d else out


class VerticalMLPClassifier(_VerticalMLP):
    """Three-party vertical MLP classifier (sigmoid cross-entropy) on secret shares.

    Binary problems use one sigmoid output; ``k > 2`` classes use ``k`` one-vs-rest sigmoid
    outputs (secure softmax would need a secure division). The secure training uses the
    piecewise-linear sigmoid of :meth:`MPCParty.sigmoid`; the plaintext reference the exact one.
    Parameters as :class:`VerticalMLPRegressor` (default ``hidden_layer_sizes=(32,)``).
    """

    _task = "classification"

    def __init__(self, hidden_layer_sizes: Sequence[int] = (32,), **kwargs: Any) -> None:
        kwargs.setdefault("lr_decay", 0.0)
        kwargs.setdefault("alpha", 1e-4)
        kwargs.setdefault("epochs", 20)
        kwargs.setdefault("learning_rate", 0.1)
        super().__init__(hidden_layer_sizes, **kwargs)

    def fit(self, parts: Sequence[np.ndarray], y: np.ndarray) -> VerticalMLPClassifier:
        """Train on the three parties' feature blocks ``parts`` and the label party's ``y``."""
        y = np.asarray(y)
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise ParameterError("need at least two classes")
        if len(self.classes_) == 2:
            Y = (y == self.classes_[1]).astype(np.float64).reshape(-1, 1)
        else:
            Y = (y[:, None] == self.classes_[None, :]).astype(np.float64)
        return self._fit(parts, Y)  # type: ignore[return-value]

    def decision_function(self, parts: Sequence[np.ndarray]) -> np.ndarray:
        """Output logits as the label party reconstructs them."""
        return self._decision(parts)

    def predict(self, parts: Sequence[np.ndarray]) -> np.ndarray:
        """Predicted class labels (computed by the label party from the logits)."""
        z = self._decision(parts)
        if z.shape[1] == 1:
            return self.classes_[(z[:, 0] > 0).astype(int)]
        return self.classes_[np.argmax(z, axis=1)]
