"""VFL model quality against centralized scikit-learn, on sklearn's datasets and PaddleDTX's samples.

The estimators run their default mode: secret-shared (``mode="ss"``).
"""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import r2_score, roc_auc_score
from sklearn.preprocessing import StandardScaler
from vfl_helpers import keypairs, paddledtx

from dtxfast.vfl import VerticalLinearRegression, VerticalLogisticRegression
from dtxfast.vfl.evaluation import evaluate, kfold_splits, random_split, seed_from_task


def test_linear_diabetes_r2_reaches_sklearn():
    X, y = load_diabetes(return_X_y=True)
    tr, te = random_split(len(y), 0.3, seed=seed_from_task("diabetes"))
    parts = lambda idx: [X[idx, :5], X[idx, 5:]]
    est = VerticalLinearRegression(alpha=0.3, max_epochs=50, batch_size=0, amplitude=0, key_bits=1024)
    est.fit(parts(tr), y[tr], keypairs=keypairs())
    r2_fed = est.score(parts(te), y[te])
    r2_sk = r2_score(y[te], LinearRegression().fit(X[tr], y[tr]).predict(X[te]))
    assert r2_fed >= r2_sk - 0.01, (r2_fed, r2_sk)
    assert est.bytes_per_epoch_ > 0 and est.n_epochs_ == 50
    # the coefficients are the plaintext run's (the same algorithm, under encryption; fixed-point
    # encoding of the masked gradients moves them by about 1e-4 relative) ...
    plain = VerticalLinearRegression(alpha=0.3, max_epochs=50, batch_size=0, amplitude=0, secure=False)
    plain.fit(parts(tr), y[tr])
    np.testing.assert_allclose(est.coef_, plain.coef_, rtol=1e-3, atol=1e-3)
    # ... and head for the least-squares ones (not yet converged: s1/s2 are nearly collinear):
    # much closer to them than the starting point (zero), and pointing the same way
    ls = LinearRegression().fit(X[tr], y[tr]).coef_
    assert np.linalg.norm(est.coef_ - ls) < 0.7 * np.linalg.norm(ls)
    assert est.coef_ @ ls / (np.linalg.norm(est.coef_) * np.linalg.norm(ls)) > 0.75


def test_logistic_breast_cancer_auc_reaches_sklearn_cross_validated():
    X, y = load_breast_cancer(return_X_y=True)
    parts = [X[:, :15], X[:, 15:]]
    est = VerticalLogisticRegression(alpha=0.3, max_epochs=10, batch_size=0, amplitude=0, key_bits=1024)
    report = evaluate(est, parts, y, method="kfold", k=5, shuffle=True, task_id="breast-cancer",
                      keypairs=keypairs())
    seed = seed_from_task("breast-cancer")
    sk = []
    for tr, te in kfold_splits(len(y), 5, shuffle=True, seed=seed):
        ss = StandardScaler().fit(X[tr])
        clf = LogisticRegression(max_iter=5000).fit(ss.transform(X[tr]), y[tr])
        sk.append(roc_auc_score(y[te], clf.predict_proba(ss.transform(X[te]))[:, 1]))
    assert len(report.folds) == 5 and len(report.roc) == 5
    assert report.mean["auc"] >= np.mean(sk) - 0.005, (report.mean["auc"], np.mean(sk))
    assert report.mean["accuracy"] > 0.93


def test_paddledtx_boston_rmse():
    XA, XB, y, PA, PB, yt = paddledtx("linear_boston_housing", "MEDV")
    y, yt = y.astype(float), yt.astype(float)
    est = VerticalLinearRegression(alpha=0.2, max_epochs=40, batch_size=0, amplitude=0, key_bits=1024)
    est.fit([XA, XB], y, keypairs=keypairs())
    rmse = float(np.sqrt(np.mean((est.predict([PA, PB]) - yt) ** 2)))
    assert rmse <= 4.40, rmse  # PaddleDTX publishes 4.568; central least squares 4.392


def test_paddledtx_iris_accuracy():
    XA, XB, y, PA, PB, yt = paddledtx("logic_iris_plants", "Label")
    est = VerticalLogisticRegression(alpha=0.1, max_epochs=20, batch_size=0, positive_class="Iris-setosa",
                                     key_bits=1024)
    est.fit([XA, XB], y, keypairs=keypairs())
    pred = est.predict([PA, PB])  # three classes in the data: booleans "is Iris-setosa"
    assert pred.dtype == bool
    assert np.mean(pred == (yt == "Iris-setosa")) == 1.0
    assert est.score([PA, PB], yt) == 1.0
