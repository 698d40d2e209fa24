"""Why the secret-shared logistic model misses scikit-learn's breast-cancer AUC (issue 13), in plaintext.

The secret-shared run scores exactly as the same training in floats does
(``test_vfl_shared.py::test_breast_cancer_gap_is_the_taylor_models_not_the_protocols``), so the
gap is the model's, and this study runs the candidate models in numpy: full-batch gradient descent
from zero on the standardized columns with an intercept, the residual ``f(z) - t`` for a sigmoid
approximation ``f``, on the five splits of ``test_breast_cancer_auc_within_0_005_on_every_split``
(the oracle: scikit-learn's ``LogisticRegression`` and ``roc_auc_score``). What it shows:

* the Taylor model ``f(z) = 1/2 + z/4`` is a least-squares fit (its fixed point is
  ``w = 4 lstsq(X, t - 1/2)``): more epochs or another learning rate do not reach the target, the
  limit itself misses it;
* odd least-squares polynomial fits of the sigmoid (degree 3 to 9, over ``[-R, R]``), which shares
  could evaluate with Paillier products, do not either: the scores of this nearly separable data
  leave any such range within a few epochs and the polynomial then pushes the wrong way
  (divergence) or the model stalls;
* a saturating approximation does: the piecewise-linear ``clip(1/2 + z/4, 0, 1)`` (as the exact
  sigmoid) is within 0.005 on every split after 30 epochs; 10 epochs are too few even for the
  exact sigmoid. On shares it needs a secure comparison per row and bound: secret-shared mode
  trains with it by default (``sigmoid="clip"``, :mod:`dtxfast.protocols.compare`), and
  ``test_vfl_shared.py::test_breast_cancer_auc_within_0_005_on_every_split`` checks the target.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

TARGET = 0.005


@pytest.fixture(scope="module")
def splits():
    X, y = load_breast_cancer(return_X_y=True)
    out = []
    for seed in range(5):
        perm = np.random.default_rng(seed).permutation(len(y))
        te, tr = perm[:171], perm[171:]
        ss = StandardScaler().fit(X[tr])
        clf = LogisticRegression(max_iter=5000).fit(ss.transform(X[tr]), y[tr])
        central = roc_auc_score(y[te], clf.predict_proba(ss.transform(X[te]))[:, 1])
        one = lambda idx: np.hstack([ss.transform(X[idx]), np.ones((len(idx), 1))])
        out.append((one(tr), y[tr].astype(float), one(te), y[te], central))
    return out


def _gaps(splits, f, epochs: int, alpha: float = 0.5) -> list[float]:
    """sklearn's AUC minus the model's per split; 1.0 where the training diverged."""
    gaps = []
    for A, t, Ate, yte, central in splits:
        w = np.zeros(A.shape[1])
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            for _ in range(epochs):
                w = w - alpha * (A.T @ (f(A @ w) - t)) / len(t)
        ok = np.all(np.isfinite(w)) and np.abs(w).max() < 1e6
        gaps.append(central - roc_auc_score(yte, Ate @ w) if ok else 1.0)
    return gaps


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _taylor(z):
    return 0.5 + 0.25 * z


def _odd_fit(degree: int, bound: float):
    zs = np.linspace(-bound, bound, 2001)
    V = np.vstack([zs**k for k in range(1, degree + 1, 2)]).T
    c, *_ = np.linalg.lstsq(V, _sigmoid(zs) - 0.5, rcond=None)
    return lambda z: 0.5 + sum(ci * z ** (2 * i + 1) for i, ci in enumerate(c))


def test_taylor_model_misses_at_any_budget_its_least_squares_limit_too(splits):
    assert max(_gaps(splits, _taylor, 10)) > TARGET  # the secret-shared test's budget
    assert max(_gaps(splits, _taylor, 300)) > TARGET
    limit = []
    for A, t, Ate, yte, central in splits:
        w = 4 * np.linalg.lstsq(A, t - 0.5, rcond=None)[0]  # where X^T (Xw/4 + 1/2 - t) = 0
        limit.append(central - roc_auc_score(yte, Ate @ w))
    assert max(limit) > TARGET, limit


@pytest.mark.parametrize("degree,bound", [(3, 4), (3, 8), (5, 8), (5, 16), (7, 16), (7, 32), (9, 16)])
def test_odd_polynomial_sigmoids_miss_or_diverge(splits, degree, bound):
    f = _odd_fit(degree, bound)
    assert max(_gaps(splits, f, 10)) > TARGET
    assert max(_gaps(splits, f, 30)) > TARGET


@pytest.mark.parametrize("name,f", [("sigmoid", _sigmoid), ("piecewise-linear", lambda z: np.clip(0.5 + 0.25 * z, 0, 1))])
def test_a_saturating_sigmoid_reaches_the_target_given_30_epochs(splits, name, f):
    assert max(_gaps(splits, f, 30)) <= TARGET
    if name == "sigmoid":
        assert max(_gaps(splits, f, 10)) > TARGET  # 10 epochs are too few even for the exact sigmoid
